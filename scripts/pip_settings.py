"""The host's pip package-index settings, as a pip.conf for an image build, plus the local paths they name.

``make image-test`` builds the images with the same package indexes as the host's own ``pip``, whatever they are
(PyPI, a company mirror, or local ``file://`` indexes and wheel directories). This script asks the host's pip
(``pip config list``: every config file pip reads, then the ``PIP_*`` environment) and writes:

- ``--conf FILE``: a pip.conf holding only the index settings, in pip's own precedence (command sections over
  ``[global]``, the environment over both). The build gets it as a secret mounted at ``/etc/pip.conf`` for the
  install steps only, so nothing of it (an index URL may carry a token) is stored in the image;
- on stdout, one local path per line that those settings name (a ``file://`` index, a find-links directory, a
  constraints file, a CA bundle): the build bind-mounts each, read-only, at the same path.

Nothing of one machine is written into the repository: the settings are discovered when the build runs.

    python scripts/pip_settings.py --conf var/pip.conf > var/pip-mounts
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

# Where packages come from and how they are trusted; nothing about the host's cache, logs or install target.
INDEX_KEYS = frozenset(
    {
        "index-url",
        "extra-index-url",
        "no-index",
        "find-links",
        "trusted-host",
        "cert",
        "client-cert",
        "constraint",
        "proxy",
        "timeout",
        "default-timeout",
        "retries",
        "prefer-binary",
        "only-binary",
        "no-binary",
    }
)
# Keys whose values are paths or URLs that may point at this machine's disk.
PATH_KEYS = frozenset({"index-url", "extra-index-url", "find-links", "cert", "client-cert", "constraint"})
ENV_SECTION = ":env:"
LINE = re.compile(r"^(?P<section>:env:|[^.=]+)\.(?P<key>[^=]+)=(?P<value>.*)$")


def parse_config_list(text: str) -> list[tuple[str, str, str]]:
    """``pip config list`` lines (``global.find-links='/opt/wheels'``) as (section, key, value), in pip's order."""
    entries = []
    for line in text.splitlines():
        match = LINE.match(line.strip())
        if not match:
            continue
        raw = match["value"]
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        entries.append((match["section"], match["key"].strip().replace("_", "-"), str(value)))
    return entries


def merged(entries: list[tuple[str, str, str]]) -> dict[str, dict[str, str]]:
    """Index settings per section; a later entry wins (pip lists files in load order, the environment last), and
    the environment's values apply over every section, as they do in pip."""
    sections: dict[str, dict[str, str]] = {}
    env: dict[str, str] = {}
    for section, key, value in entries:
        if key not in INDEX_KEYS:
            continue
        (env if section == ENV_SECTION else sections.setdefault(section, {}))[key] = value
    sections.setdefault("global", {})
    for values in sections.values():
        values.update(env)
    return {name: values for name, values in sections.items() if values}


def render(sections: dict[str, dict[str, str]]) -> str:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {value}" for key, value in sorted(values.items()))
        lines.append("")
    return "\n".join(lines)


HREF = re.compile(r"""href=["']([^"'#]+)""", re.IGNORECASE)


def _hrefs(page: Path, limit: int) -> list[str]:
    try:
        text = page.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return HREF.findall(text)[:limit]


def index_root(index: Path, samples: int = 5) -> Path:
    """The directory to mount for a ``file://`` simple index: the index and the files its pages link to.

    A PEP 503 index on disk often keeps its files beside it (``simple/flask/index.html`` links
    ``../../files/flask-3.1.3-py3-none-any.whl``), so mounting the index alone would leave every link dangling.
    A few project pages are read and their links resolved; the common directory of all of them is the root.
    """
    paths = [index]
    for project in _hrefs(index / "index.html", samples):
        page_dir = index / unquote(project).strip("/")
        for link in _hrefs(page_dir / "index.html", 2):
            resolved = urlparse(urljoin(page_dir.as_uri() + "/", link))
            if resolved.scheme == "file":
                paths.append(Path(os.path.normpath(unquote(resolved.path))))
    root = Path(os.path.commonpath(paths))
    if root == Path("/"):
        sys.exit(f"pip_settings: the index {index} links files all over the disk; cannot choose what to mount")
    return root


def local_paths(sections: dict[str, dict[str, str]]) -> list[str]:
    """Existing absolute paths the settings name (``file://`` indexes with the files they link), each once."""
    found: dict[str, None] = {}
    for values in sections.values():
        for key, value in values.items():
            if key not in PATH_KEYS:
                continue
            for token in value.split():
                parsed = urlparse(token)
                path = Path(unquote(parsed.path) if parsed.scheme == "file" else token)
                if not path.is_absolute() or not path.exists():
                    continue
                if key.endswith("index-url") and path.is_dir():
                    path = index_root(path)
                found.setdefault(os.path.normpath(path))
    return list(found)


def host_config(python: str) -> str:
    done = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        sys.exit(f"pip_settings: `{python} -m pip config list` failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--conf", required=True, type=Path, help="where to write the pip.conf for the build")
    parser.add_argument("--python", default=sys.executable, help="the Python whose pip's settings to mirror")
    args = parser.parse_args(argv)
    sections = merged(parse_config_list(host_config(args.python)))
    args.conf.parent.mkdir(parents=True, exist_ok=True)
    args.conf.touch(mode=0o600)
    args.conf.write_text(render(sections), encoding="utf-8")
    for path in local_paths(sections):
        print(path)
    keys = sorted({key for values in sections.values() for key in values})
    print(f"pip_settings: mirroring {', '.join(keys) or 'no index settings (PyPI)'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
