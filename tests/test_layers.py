"""The layers point one way: each module imports only its own layer and the layers below it.

The order is the architecture (README "Development"): Label Studio formats at the bottom, then serving, learning,
configuration, Redis state, process wiring, the RQ side, the CLI, and the web root (``model.py``, ``_wsgi.py``, the
HTTP API modules) on top. The protocol layer (``ls_protocol``) sits beside the root and knows nothing of prompts, so it
may import nothing of ours. Imports are read from the source with :mod:`ast`, so a lazy import inside a function
counts the same as one at the top.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module may import any module whose layer index is <= its own.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("labelstudio", ("optimizer.labelstudio",)),
    ("serving", ("optimizer.serving",)),
    ("learning", ("optimizer.learning",)),
    ("config", ("optimizer.settings", "optimizer.logconfig", "optimizer.project_settings", "optimizer.exposure")),
    ("state", ("optimizer.state",)),
    ("runtime", ("optimizer.runtime",)),
    ("training", ("optimizer.training",)),
    ("cli", ("optimizer.cli", "optimizer.__main__")),
    ("web", ("model", "_wsgi", "policy_api", "export_api", "observability", "dashboard")),
]
PROTOCOL = "ls_protocol"
# optimizer/__init__.py is the public face: it re-exports lazily from every layer and is not itself a layer.
PUBLIC_FACE = "optimizer"


def layer_of(module: str) -> int | None:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Absolute names of every module ``path`` imports, one per import statement and name, with line numbers.

    Relative imports are resolved. ``from optimizer import telemetry`` names a module, not a symbol, so for a
    ``from`` import the most specific of ``base`` and ``base.name`` that is one of our modules is the target.
    """
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            for alias in node.names:
                qualified = f"{base}.{alias.name}"
                is_module = (ROOT / Path(*qualified.split("."))).with_suffix(".py").exists() or (
                    ROOT / Path(*qualified.split("."))
                ).is_dir()
                found.append((node.lineno, qualified if is_module else base))
    return found


def our_sources() -> list[Path]:
    files = sorted((ROOT / "optimizer").rglob("*.py")) + sorted((ROOT / PROTOCOL).rglob("*.py"))
    web = [ROOT / f"{name}.py" for name in LAYERS[-1][1] if (ROOT / f"{name}.py").exists()]
    packages = [p for name in LAYERS[-1][1] if (ROOT / name).is_dir() for p in sorted((ROOT / name).rglob("*.py"))]
    return files + web + packages


def violations(files: list[Path]) -> list[str]:
    bad: list[str] = []
    for path in files:
        me = module_name(path)
        if me == PUBLIC_FACE:
            continue
        mine = layer_of(me)
        for line, target in dict.fromkeys(imports_of(path)):
            where = f"{path.relative_to(ROOT)}:{line} imports {target}"
            if me.startswith(PROTOCOL):
                if layer_of(target) is not None or target == PUBLIC_FACE:
                    bad.append(f"{where}: the protocol layer imports nothing of ours")
                continue
            theirs = layer_of(target)
            if target.startswith(PROTOCOL) and mine is not None and mine < len(LAYERS) - 1:
                bad.append(f"{where}: only the web root may import the protocol layer")
            if theirs is not None and mine is not None and theirs > mine:
                bad.append(f"{where}: {LAYERS[mine][0]} may not import {LAYERS[theirs][0]}")
    return bad


def test_every_module_belongs_to_a_layer():
    unplaced = [module_name(p) for p in our_sources()]
    unplaced = [m for m in unplaced if m != PUBLIC_FACE and not m.startswith(PROTOCOL) and layer_of(m) is None]
    assert unplaced == [], f"add these to a layer in tests/test_layers.py: {unplaced}"


def test_imports_point_one_way():
    assert violations(our_sources()) == []


def test_an_upward_import_is_caught(tmp_path):
    """The check itself can fail: a learning module importing the Redis store is reported."""
    bad = ROOT / "optimizer" / "learning" / "_layer_probe.py"
    bad.write_text("from optimizer.state.store import PolicyStore\nfrom ..runtime import services\n")
    try:
        found = violations([bad])
    finally:
        bad.unlink()
    assert len(found) == 2 and all("learning may not import" in v for v in found), found


def test_top_level_of_optimizer_stays_small():
    flat = sorted(p.name for p in (ROOT / "optimizer").glob("*.py"))
    assert len(flat) <= 10, flat


@pytest.mark.parametrize("blocked", [("redis", "rq")])
def test_learning_imports_without_redis_or_rq(blocked):
    """The optimiser runs from the CLI with nothing else running: its modules must not need Redis or RQ."""
    modules = sorted(module_name(p) for p in (ROOT / "optimizer" / "learning").glob("*.py"))
    script = f"""
import importlib, importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
for m in {modules!r}:
    importlib.import_module(m)
import optimizer
print('ok', len({modules!r}))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")
