"""scripts/pip_settings.py: the host's pip index settings as a build's pip.conf, and the local paths to mount.

``make image-test`` builds with them; these tests pin the two things that would make such a build quietly use
another index: pip's precedence (the environment over every section, command sections over ``[global]``) and the
files a local ``file://`` index links to, which live beside it rather than inside it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from testkit.constants import ROOT

spec = importlib.util.spec_from_file_location("pip_settings", ROOT / "scripts" / "pip_settings.py")
pip_settings = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pip_settings)

LISTED = """global.cert='/etc/ssl/certs/ca-certificates.crt'
global.index-url='https://mirror.example.org/simple'
global.cache-dir='/var/cache/pip'
install.extra-index-url='https://install-only.example.org/simple'
:env:.index-url='https://env.example.org/simple'
:env:.disable-pip-version-check='1'
not a config line
"""


def test_the_environment_wins_over_every_section_and_only_index_settings_are_kept():
    sections = pip_settings.merged(pip_settings.parse_config_list(LISTED))
    assert sections == {
        "global": {"cert": "/etc/ssl/certs/ca-certificates.crt", "index-url": "https://env.example.org/simple"},
        "install": {
            "extra-index-url": "https://install-only.example.org/simple",
            "index-url": "https://env.example.org/simple",
        },
    }
    text = pip_settings.render(sections)
    assert text.startswith("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n") and "cache-dir" not in text


def test_a_local_index_is_mounted_with_the_files_its_pages_link(tmp_path):
    index, files, wheels = tmp_path / "pypi" / "simple", tmp_path / "pypi" / "files", tmp_path / "wheels"
    (index / "flask").mkdir(parents=True)
    files.mkdir()
    wheels.mkdir()
    (index / "index.html").write_text('<a href="flask/">flask</a>')
    (index / "flask" / "index.html").write_text('<a href="../../files/flask-3.1.3-py3-none-any.whl#sha256=ab">f</a>')
    sections = {
        "global": {
            "extra-index-url": f"https://pypi.org/simple {index.as_uri()}",
            "find-links": str(wheels),
            "constraint": str(tmp_path / "absent.txt"),  # not on disk: nothing to mount
        }
    }
    assert pip_settings.local_paths(sections) == [str(tmp_path / "pypi"), str(wheels)]


def test_the_script_writes_a_private_conf_and_prints_the_paths(tmp_path):
    conf = tmp_path / "out" / "pip.conf"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "pip_settings.py"), "--conf", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert conf.stat().st_mode & 0o077 == 0  # an index URL may carry a token
    assert conf.read_text().startswith("[global]")
    assert "pip_settings: mirroring" in done.stderr
    assert all(line.startswith("/") for line in done.stdout.splitlines())
