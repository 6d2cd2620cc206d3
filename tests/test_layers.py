"""The layers point one way: each module imports only its own layer and the layers below it.

The order is the architecture (docs/architecture.md): Label Studio formats at the bottom, then serving, learning,
configuration, Redis state, process wiring, the RQ jobs, the CLI, and the web (``model.py``, ``_wsgi.py`` and the
``web`` package) on top. ``web.refs`` is pure parsing that the CLI uses too, so it sits in the bottom layer. The
protocol layer (``ls_protocol``) sits beside the web and knows nothing of prompts, so it may import nothing of ours.

Imports are read from the source with :mod:`ast`, so a lazy import inside a function counts the same as one at the
top, and a name imported through the public face (``from optimizer import Services``) counts as an import of the
module it comes from. Every check runs on source text in memory: nothing is written into the tree.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module may import any module whose layer index is <= its own.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("labelstudio", ("optimizer.labelstudio", "web.refs")),
    ("serving", ("optimizer.serving",)),
    ("learning", ("optimizer.learning",)),
    ("config", ("optimizer.settings", "optimizer.logconfig", "optimizer.project_settings", "optimizer.exposure")),
    ("state", ("optimizer.state",)),
    ("runtime", ("optimizer.runtime",)),
    ("jobs", ("optimizer.jobs",)),
    ("cli", ("optimizer.cli", "optimizer.__main__")),
    ("web", ("model", "_wsgi", "web")),
]
PROTOCOL = "ls_protocol"
# optimizer/__init__.py is the public face: it re-exports lazily from every layer and is not itself a layer.
PUBLIC_FACE = "optimizer"
WEB_ROOT = ("model", "_wsgi")


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


def _is_module(qualified: str) -> bool:
    path = ROOT / Path(*qualified.split("."))
    return path.with_suffix(".py").exists() or path.is_dir()


def public_names() -> dict[str, str]:
    """Name → defining module of everything ``optimizer/__init__.py`` re-exports (its ``_PUBLIC`` table)."""
    tree = ast.parse((ROOT / "optimizer" / "__init__.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_PUBLIC" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("optimizer/__init__.py has no _PUBLIC table")


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """Absolute names of every module ``source`` (the text of ``module``) imports, with line numbers.

    Relative imports are resolved. ``from optimizer import telemetry`` names a module, not a symbol, so for a
    ``from`` import the most specific of ``base`` and ``base.name`` that is one of our modules is the target; a name
    the public face re-exports resolves to the module that defines it.
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    public = public_names()
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, module)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            for alias in node.names:
                qualified = f"{base}.{alias.name}"
                if base == PUBLIC_FACE and alias.name in public:
                    found.append((node.lineno, public[alias.name]))
                else:
                    found.append((node.lineno, qualified if _is_module(qualified) else base))
    return found


def our_sources() -> list[Path]:
    files = sorted((ROOT / "optimizer").rglob("*.py")) + sorted((ROOT / PROTOCOL).rglob("*.py"))
    files += [ROOT / f"{name}.py" for name in WEB_ROOT]
    return files + sorted((ROOT / "web").rglob("*.py"))


def violations(modules: Iterable[tuple[str, str, bool]]) -> list[str]:
    """Every upward import in ``(module name, source, is package)`` triples."""
    bad: list[str] = []
    for me, source, is_package in modules:
        if me == PUBLIC_FACE:
            continue
        mine = layer_of(me)
        for line, target in dict.fromkeys(imports_of(source, me, is_package)):
            where = f"{me}:{line} imports {target}"
            if me.startswith(PROTOCOL):
                if layer_of(target) is not None or target == PUBLIC_FACE:
                    bad.append(f"{where}: the protocol layer imports nothing of ours")
                continue
            theirs = layer_of(target)
            if target.startswith(PROTOCOL) and mine is not None and mine < len(LAYERS) - 1:
                bad.append(f"{where}: only the web layer may import the protocol layer")
            if theirs is not None and mine is not None and theirs > mine:
                bad.append(f"{where}: {LAYERS[mine][0]} may not import {LAYERS[theirs][0]}")
    return bad


def read(paths: Iterable[Path]) -> list[tuple[str, str, bool]]:
    return [(module_name(p), p.read_text(), p.name == "__init__.py") for p in paths]


def test_every_module_belongs_to_a_layer():
    unplaced = [module_name(p) for p in our_sources()]
    unplaced = [m for m in unplaced if m != PUBLIC_FACE and not m.startswith(PROTOCOL) and layer_of(m) is None]
    assert unplaced == [], f"add these to a layer in tests/test_layers.py: {unplaced}"


def test_imports_point_one_way():
    assert violations(read(our_sources())) == []


def test_an_upward_import_is_caught():
    """The check itself can fail: a learning module importing the Redis store, the runtime (relatively) and the
    services through the public face is reported three times; checked in memory, nothing written to the tree."""
    probe = (
        "optimizer.learning._layer_probe",
        "from optimizer.state.store import PolicyStore\n"
        "from ..runtime import services\n"
        "from optimizer import Services\n",
        False,
    )
    found = violations([probe])
    assert len(found) == 3 and all("learning may not import" in v for v in found), found
    assert "optimizer.runtime.services" in found[2]


def test_names_through_the_public_face_resolve_to_their_modules():
    public = public_names()
    assert public["Services"] == "optimizer.runtime.services" and public["Policy"] == "optimizer.serving.policy"
    assert all(_is_module(module) for module in public.values())


def test_model_py_imports_only_the_protocol_labelstudio_runtime_and_jobs_layers():
    allowed = {layer_of("optimizer.labelstudio"), layer_of("optimizer.runtime"), layer_of("optimizer.jobs")}
    targets = [t for _, t in imports_of((ROOT / "model.py").read_text(), "model")]
    ours = [t for t in targets if layer_of(t) is not None or t.startswith(PROTOCOL)]
    assert ours and all(t.startswith(PROTOCOL) or layer_of(t) in allowed for t in ours), ours
    assert len((ROOT / "model.py").read_text().splitlines()) < 80


def test_only_thin_python_files_at_the_root():
    assert sorted(p.name for p in ROOT.glob("*.py")) == ["_wsgi.py", "gunicorn.conf.py", "model.py"]


@pytest.mark.parametrize("package", ["bench", "testkit"])
def test_bench_and_testkit_import_nothing_from_tests(package):
    """``bench/`` and ``testkit/`` are not tests: they share the fakes and process fixtures in ``testkit``."""
    bad = [
        f"{name}:{line} imports {target}"
        for name, source, is_package in read(sorted((ROOT / package).rglob("*.py")))
        for line, target in imports_of(source, name, is_package)
        if target == "tests" or target.startswith("tests.")
    ]
    assert bad == []


JOB_KINDS = {"train", "bulk", "bulk_chunk"}
_KIND_IN_TEMPLATE = re.compile(r"kind\s*(?:==|===|!=|!==)\s*['\"](?:train|bulk|bulk_chunk)['\"]")


def _kind_strings(source: str) -> list[int]:
    """Lines where code compares something named ``kind`` to a job kind's string, or names a job function."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
            literal = any(isinstance(p, ast.Constant) and p.value in JOB_KINDS for p in parts)
            if literal and "kind" in ast.unparse(node):
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and re.match(r"optimizer\.(jobs|training)\.\w+\.\w+", node.value)
        ):
            lines.append(node.lineno)
    return lines


def test_no_module_outside_jobs_spells_a_job_kind_or_function_as_a_string():
    outside = [p for p in our_sources() if "optimizer/jobs/" not in p.as_posix()]
    bad = [f"{p.relative_to(ROOT)}:{n}" for p in outside for n in _kind_strings(p.read_text())]
    pages = sorted((ROOT / "web").rglob("*.html")) + sorted((ROOT / "web").rglob("*.js"))
    bad += [str(p.relative_to(ROOT)) for p in pages if _KIND_IN_TEMPLATE.search(p.read_text())]
    assert bad == []
    assert _kind_strings('if view["kind"] == "train": pass\nf = "optimizer.jobs.functions.train"\n') == [1, 2]


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


def test_the_cli_reads_references_without_flask():
    """``web.refs`` is in the bottom layer so the CLI can parse ids without loading the web stack."""
    script = "import sys, web.refs; print('flask' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
