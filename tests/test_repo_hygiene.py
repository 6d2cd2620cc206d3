"""Nothing in the repository names a path of one machine: shared data is found relative to the repository."""

from __future__ import annotations

import re
import subprocess

from testkit.constants import ROOT

# A workspace or home directory of a particular machine. /tmp and /opt inside the Dockerfile are the image's own.
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|home/\w+|Users/\w+|root)/[\w.-]")


def test_no_absolute_machine_paths_in_tracked_files():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    found = []
    for name in files:
        path = ROOT / name
        if path.suffix in {".png", ".gguf"} or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        found += [f"{name}:{n}" for n, line in enumerate(text.splitlines(), 1) if MACHINE_PATH.search(line)]
    assert found == [], found


def test_the_pattern_catches_a_machine_path():
    # Built from parts, so this file does not name a machine path itself.
    workspace, home = "/" + "work/shared/data", "/" + "home/alice/x"
    assert MACHINE_PATH.search(f'default="{workspace}"') and MACHINE_PATH.search(f"see {home}")
    assert not MACHINE_PATH.search("../shared/data") and not MACHINE_PATH.search("https://example.org/work/x")


def test_no_run_artefacts_are_tracked():
    """prometheus multiprocess files once got committed: a bench had started workers with an empty metrics dir."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert [name for name in files if name.endswith(".db")] == []


def test_an_empty_metrics_dir_does_not_write_into_the_working_directory(tmp_path):
    import os
    import sys

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": "", "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-c", "import optimizer.runtime.telemetry"], cwd=tmp_path, env=env, check=True, timeout=60
    )
    assert list(tmp_path.iterdir()) == []
