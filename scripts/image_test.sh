#!/usr/bin/env bash
# `make image-test`: build the real images from the Dockerfile and start them, on a machine with no container daemon
# and no registry for base images. Two Debian packages are enough:
#
#   1. mmdebstrap makes a Debian bookworm base with Python 3.11 from Debian's packages (a tarball);
#   2. buildah builds on it (`FROM scratch` + `ADD base.tar /`, then the Dockerfile with
#      --build-arg PYTHON_IMAGE=<that base>), in chroot isolation with the vfs storage driver;
#   3. tests/test_image.py starts the web and worker commands from the app image (`buildah run`, host network)
#      against a local redis-server, the scripted LLM and a scripted Label Studio, and checks /health, /predict and
#      a training job.
#
# pip inside the build uses the host's package-index settings (scripts/pip_settings.py reads them from the host's
# pip and passes them as a build secret, with the local paths they name bind-mounted read-only).
#
# Everything lives under IMAGE_TEST_DIR (default /var/tmp/lsml-image-test) and is removed at the end, images and
# containers included (IMAGE_TEST_KEEP=1 keeps them). IMAGE_TARGETS (default "app llm") picks the images to build;
# the app image is always the one started. Prints each image's build time and size. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "image-test: $*" >&2
  exit 1
}

PY=${PY:-.venv/bin/python}
WORK=${IMAGE_TEST_DIR:-/var/tmp/lsml-image-test}
TARGETS=${IMAGE_TARGETS:-app llm}
SUITE=bookworm
BASE_IMAGE=localhost/lsml-base:$SUITE
# The packages the Dockerfile's stages expect of a python:3.11-slim base: python (not only python3), venv, CAs.
BASE_PACKAGES=python3,python3-venv,python-is-python3,ca-certificates

missing=()
for tool in buildah mmdebstrap redis-server; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] || die "${missing[*]} not installed; install with: apt-get install -y buildah mmdebstrap redis-server"
[ "$(id -u)" = 0 ] || die "must run as root (buildah's chroot isolation with vfs storage, as set up here)"
[ -x "$PY" ] || die "$PY is missing; run make setup"
case " $TARGETS " in *" app "*) ;; *) die "IMAGE_TARGETS must include app (the image the test starts); got '$TARGETS'" ;; esac
for target in $TARGETS; do
  case $target in app | llm) ;; *) die "unknown IMAGE_TARGETS entry '$target' (use app and/or llm)" ;; esac
done

mkdir -p "$WORK/logs"
exec 9>"$WORK/lock"
flock -n 9 || die "another image-test is running on $WORK"
run_started=$(date +%s)

# Storage of our own, so nothing touches the host's /var/lib/containers, and cleanup can remove all of it.
cat >"$WORK/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
EOF
export CONTAINERS_STORAGE_CONF="$WORK/storage.conf" BUILDAH_ISOLATION=chroot BUILDAH_FORMAT=docker
# buildah's per-RUN bundles (which hold the bind mounts while a step runs) and mmdebstrap's chroot stay in here too.
export TMPDIR="$WORK/tmp"

mounts_under_work() {
  # Mount points below $WORK (field 5 of mountinfo), deepest first.
  awk -v w="$WORK/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

wipe() {
  buildah rm --all >/dev/null 2>&1 || true
  buildah rmi --all --force >/dev/null 2>&1 || true
  # An interrupted RUN can leave its bind mounts (the host's package index, read-only) inside the storage: unmount
  # them first, and never delete through one.
  mounts_under_work | while read -r mount; do umount -l "$mount" 2>/dev/null || true; done
  if [ -n "$(mounts_under_work)" ]; then
    echo "image-test: mounts remain under $WORK; not deleting it: $(mounts_under_work | tr '\n' ' ')" >&2
    return 1
  fi
  rm -rf "$WORK/storage" "$WORK/run" "$WORK/tmp" "$WORK/base" "$WORK/pip.conf" "$WORK/pip-mounts"
}

finish() {
  local status=$?
  if [ "${IMAGE_TEST_KEEP:-0}" = 1 ]; then
    echo "image-test: kept images and storage in $WORK (CONTAINERS_STORAGE_CONF=$WORK/storage.conf)"
  else
    wipe || status=1
  fi
  [ "$status" = 0 ] || echo "image-test: FAILED (logs in $WORK/logs)" >&2
  exit "$status"
}
trap finish EXIT
wipe # whatever an interrupted run left
mkdir -p "$TMPDIR"

step() { # step <log name> <what> <command...>: run, log, and on failure show the log's tail and stop
  local log="$WORK/logs/$1.log" what=$2
  shift 2
  if ! "$@" >"$log" 2>&1; then
    tail -25 "$log" >&2
    die "$what failed (full log: $log)"
  fi
}

image_size() { buildah images --format '{{.Size}}' "$1" | head -1; }

# 1. The Debian base image.
started=$(date +%s)
mkdir -p "$WORK/base"
step mmdebstrap "mmdebstrap ($SUITE minbase)" \
  mmdebstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$WORK/base/base.tar"
printf 'FROM scratch\nADD base.tar /\nCMD ["python3"]\n' >"$WORK/base/Containerfile"
step base "the base image" buildah bud --pull=never -f "$WORK/base/Containerfile" -t "$BASE_IMAGE" "$WORK/base"
rm -f "$WORK/base/base.tar"
echo "image-test: base $BASE_IMAGE ($(image_size "$BASE_IMAGE")) made in $(($(date +%s) - started)) s"

# 2. The host's pip index settings, for the install steps.
"$PY" scripts/pip_settings.py --conf "$WORK/pip.conf" >"$WORK/pip-mounts" || die "reading the host's pip settings failed"
volumes=()
while IFS= read -r path; do
  [ -n "$path" ] && volumes+=(--volume "$path:$path:ro")
done <"$WORK/pip-mounts"

# 3. The images, from the repository's Dockerfile.
summary=()
for target in $TARGETS; do
  case $target in app) tag=localhost/lsml-backend:image-test ;; llm) tag=localhost/lsml-llm:image-test ;; esac
  started=$(date +%s)
  step "build-$target" "building the $target image" \
    buildah bud --pull=never --build-arg PYTHON_IMAGE="$BASE_IMAGE" --secret id=pipconf,src="$WORK/pip.conf" \
    "${volumes[@]}" --target "$target" -t "$tag" -f Dockerfile .
  line="$target image $tag: built in $(($(date +%s) - started)) s, $(image_size "$tag") (base $(image_size "$BASE_IMAGE"))"
  echo "image-test: $line"
  summary+=("$line")
done

# 4. The images, started and used (the llm test needs both; with IMAGE_TARGETS=app it is deselected).
started=$(date +%s)
export LSML_IMAGE=localhost/lsml-backend:image-test
select=(-m image)
case " $TARGETS " in
  *" llm "*) export LSML_LLM_IMAGE=localhost/lsml-llm:image-test ;;
  *) select+=(-k "not llm_image") ;;
esac
"$PY" -m pytest -q -p no:cacheprovider "${select[@]}" tests/test_image.py ||
  die "the images did not serve (tests/test_image.py failed)"
echo "image-test: the images served /health, /predict and a training job in $(($(date +%s) - started)) s"
for line in "${summary[@]}"; do echo "image-test: $line"; done
echo "image-test: passed in $(($(date +%s) - run_started)) s"
