"""The README and the pages in docs/ stay true to the repository they describe.

- The README stays short (under 200 lines) and its index links every page in ``docs/``.
- Every relative link resolves: the file exists, and a ``#anchor`` names a heading of it (GitHub's slugs).
- Every repository path the text names exists: ``optimizer/jobs/queue.py``, ``web/dashboard/``, ``testkit/fakellm.py``
  and bare module files such as ``coalesce.py``; so does every dotted name of ours, ``optimizer.jobs.queue`` or
  ``optimizer.learning.procedure.optimize`` down to the attribute.

Paths in the docs are written relative to the repository root (links are relative to their page, as Markdown
wants). What the detector leaves alone, on purpose: URLs, HTTP routes (``/projects/<id>``), paths outside the repo
(``../shared/...``), placeholders and patterns (``DIR/NAME/labels.json``, ``labels-first-D[-sS].json``), words
with a slash that name no file (``text/plain``, ``train/validation/test``), and files the software writes, which git
ignores (``var/``, ``out/``, ``.venv/``). A path that is none of these and does not exist is reported with its file
and line.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
CHECKED = [README, *PAGES, ROOT / "bench" / "README.md"]

# Named in the docs on purpose, but not in this repository (and not written by it into an ignored place).
NOT_IN_REPO = {
    "ml/models.py": "Label Studio's own source, where predict_tasks lives (docs/tags.md)",
    "bench/results/optimize.json": "bench.optimize's default --out, a scratch file (committed runs used their own)",
}
OUR_PACKAGES = ("optimizer", "web", "ls_protocol", "testkit", "tests", "bench", "scripts")
FILE_EXTENSIONS = {
    ".py", ".md", ".sh", ".json", ".jsonl", ".txt", ".yml", ".yaml", ".toml", ".png", ".html", ".css", ".js",
    ".svg", ".xml", ".lua", ".cfg",
}  # fmt: skip
BARE_CHECKED = {".py", ".md"}  # a bare `coalesce.py` must be some file's name; a bare `labels.json` is the user's

FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\]\n]|\][^(])*\]\(([^)\s]+)\)")
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s`'\")\]>]*")
TOKEN = re.compile(r"[\w./-]+")
DOTTED = re.compile(rf"(?<![\w./:-])(?:{'|'.join(OUR_PACKAGES)})(?:\.\w+)+")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)


def lines_of(text: str, start: int) -> int:
    return text.count("\n", 0, start) + 1


# Links and anchors


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercased, punctuation removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for match in HEADING.finditer(FENCE.sub("", text)):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> list[tuple[int, str]]:
    """Link targets outside code, with their line numbers (code blocks and spans are blanked, not removed)."""
    blank = FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)
    blank = CODE_SPAN.sub(lambda m: " " * len(m.group()), blank)
    return [(lines_of(blank, m.start()), m.group(1)) for m in LINK.finditer(blank)]


def broken_links(page: Path, text: str, root: Path = ROOT) -> list[str]:
    bad = []
    for line, target in links(text):
        if URL.match(target) or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(root)}:{line}: {target}"
        if not resolved.exists():
            bad.append(f"{where}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text(encoding="utf-8")):
            bad.append(f"{where}: no heading with this anchor in {resolved.name}")
    return bad


# Paths and dotted names


def prose_and_code(text: str) -> str:
    """The text with URLs and link targets blanked (links are checked by the link test, relative to their page)."""
    text = URL.sub(lambda m: " " * len(m.group()), text)
    return LINK.sub(lambda m: m.group().replace(m.group(1), " " * len(m.group(1))), text)


@cache
def file_names(root: Path) -> frozenset[str]:
    names = set()
    for _, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in {".git", "var", "__pycache__"} and not d.startswith(".venv")]
        names.update(files)
    return frozenset(names)


def path_candidates(text: str, root: Path = ROOT) -> list[tuple[int, str]]:
    """Every repository path ``text`` names, with its line: see the module docstring for what is left out."""
    top = {p.name for p in root.iterdir()}
    found = []
    for match in TOKEN.finditer(prose_and_code(text)):
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end()] if match.end() < len(text) else " "
        token = match.group().rstrip(".")
        if before in ":<>~$" or after in "[{<*" or not token or token.startswith(("/", "../", "-")):
            continue  # a URL's or route's tail, a home path, or a pattern such as labels-first-D[-sS].json
        token = token.removeprefix("./")
        segments = [s for s in token.split("/") if s]
        if not segments or any(PLACEHOLDER.match(s) for s in segments):
            continue
        suffix = Path(segments[-1]).suffix
        if "/" in token:
            if segments[0] in top or suffix in FILE_EXTENSIONS:
                found.append((lines_of(text, match.start()), token))
        elif suffix in BARE_CHECKED:
            found.append((lines_of(text, match.start()), token))
    return found


def ignored(paths: Iterable[str], root: Path = ROOT) -> set[str]:
    """The paths git ignores (what the software writes: var/, out/, .venv/, bench/results.json...)."""
    paths = list(paths)
    if not paths:
        return set()
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"], cwd=root, input="\n".join(paths), capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode in (0, 1), f"git check-ignore failed: {done.stderr}"
    return set(done.stdout.split())


def missing_paths(text: str, root: Path = ROOT) -> list[tuple[int, str]]:
    candidates = path_candidates(text, root)
    absent = []
    for line, token in candidates:
        if token in NOT_IN_REPO:
            continue
        if "/" not in token:
            if token not in file_names(root):
                absent.append((line, token))
            continue
        path = root / token
        if not (path.is_dir() if token.endswith("/") else path.exists()):
            absent.append((line, token))
    skip = ignored({token for _, token in absent if "/" in token}, root)
    return [(line, token) for line, token in absent if token not in skip]


def _defines(body: list[ast.stmt], name: str) -> ast.AST | None:
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return node
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            return node
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
            (alias.asname or alias.name.split(".")[0]) == name for alias in node.names
        ):
            return node
    return None


def resolves(dotted: str, root: Path = ROOT) -> bool:
    """``optimizer.jobs.queue`` is a module; ``optimizer.learning.procedure.optimize`` a name defined in one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:cut])
        if base.with_suffix(".py").is_file():
            source, rest = base.with_suffix(".py"), parts[cut:]
            break
        if base.is_dir():
            source, rest = base / "__init__.py", parts[cut:]
            break
    else:
        return False
    if not rest:
        return True
    if not source.is_file():
        return False
    body: list[ast.stmt] | None = ast.parse(source.read_text(encoding="utf-8")).body
    for name in rest:
        node = _defines(body or [], name)
        if node is None:
            return False
        body = node.body if isinstance(node, ast.ClassDef) else None
    return True


def unknown_names(text: str, root: Path = ROOT) -> list[tuple[int, str]]:
    blank = prose_and_code(text)
    return [(lines_of(text, m.start()), m.group()) for m in DOTTED.finditer(blank) if not resolves(m.group(), root)]


# The tests


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_readme_links_every_docs_page_and_each_exists():
    linked = {
        (ROOT / target.partition("#")[0]).resolve()
        for _, target in links(README.read_text(encoding="utf-8"))
        if target.startswith("docs/")
    }
    assert linked, "README.md links no docs/ page"
    assert sorted(str(p.relative_to(ROOT)) for p in linked if not p.exists()) == []
    unlinked = [p.name for p in PAGES if p.suffix == ".md" and p.resolve() not in linked]
    assert unlinked == [], f"README.md's index does not link {unlinked}"


@pytest.mark.parametrize("page", CHECKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    bad = broken_links(page, page.read_text(encoding="utf-8"))
    assert bad == [], "\n".join(bad)


@pytest.mark.parametrize("page", CHECKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_named_exists(page):
    text = page.read_text(encoding="utf-8")
    bad = [f"{page.relative_to(ROOT)}:{line}: {token}" for line, token in missing_paths(text)]
    assert bad == [], "no such path in the repository:\n" + "\n".join(bad)


@pytest.mark.parametrize("page", CHECKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_dotted_name_of_ours_exists(page):
    text = page.read_text(encoding="utf-8")
    bad = [f"{page.relative_to(ROOT)}:{line}: {name}" for line, name in unknown_names(text)]
    assert bad == [], "no such module or name:\n" + "\n".join(bad)


def test_the_checks_can_fail():
    """Stale names of the kind this repository had (files moved or gone) are reported, with their lines."""
    text = (
        "The worker runs `optimizer/training/run.py` and `lsclient.py`.\n"
        "See optimizer/jobs/queue.py, web/policy_api.py and `tests/support/fakellm.py`.\n"
        "```\npython -m optimizer.training.worker\n.venv/bin/python scripts/nothing.sh\n```\n"
        "It calls `optimizer.learning.procedure.optimise` and `optimizer.jobs.queue.TrainingQueue`.\n"
    )
    assert missing_paths(text) == [
        (1, "optimizer/training/run.py"),
        (1, "lsclient.py"),
        (2, "web/policy_api.py"),
        (2, "tests/support/fakellm.py"),
        (5, "scripts/nothing.sh"),
    ]
    assert unknown_names(text) == [
        (4, "optimizer.training.worker"),
        (7, "optimizer.learning.procedure.optimise"),
        (7, "optimizer.jobs.queue.TrainingQueue"),
    ]
    page = ROOT / "docs" / "scratch.md"
    assert broken_links(page, "[a](nowhere.md) [b](tags.md#no-such-heading) [c](tags.md#the-span-rule)") == [
        "docs/scratch.md:1: nowhere.md: no such file",
        "docs/scratch.md:1: tags.md#no-such-heading: no heading with this anchor in tags.md",
    ]


def test_the_checks_leave_urls_routes_env_vars_and_examples_alone():
    text = (
        "Open http://localhost:9090/dashboard/projects/12 or `curl -X POST localhost:9090/projects/12/predict`.\n"
        "`GET /projects/<id>/policies/<version>`, `redis://redis:6379/0`, `LLM_BASE_URL=http://llm:8081/v1`.\n"
        '```json\n{"base_url": "https://api.openai.com/v1", "model": "gpt-4.1-mini", "topic": ["Animal > Cat"]}\n```\n'
        "A `text/plain` form, a train/validation/test split, `DIR/NAME/labels.json`, `../shared/data/banking77`,\n"
        "`var/test-artifacts/dashboard`, `.venv/bin/python`, `out/optimized_prompt.txt`, `labels.json`, `ml.train`.\n"
        "`--out bench/results/labels-first-D[-sS].json`, `~/.cache/x.py`, `$HOME/x.py`.\n"
    )
    assert missing_paths(text) == [] and unknown_names(text) == []
    # ...while the real paths in the same kind of text are seen and found.
    real = "`optimizer/jobs/queue.py`, `web/dashboard/`, coalesce.py, `optimizer.jobs.kinds.JobKind.TRAIN`"
    assert [token for _, token in path_candidates(real)] == ["optimizer/jobs/queue.py", "web/dashboard/", "coalesce.py"]
    assert missing_paths(real) == [] and unknown_names(real) == []


def test_github_slugs():
    assert slug("Why not PyPI's `label-studio-ml`") == "why-not-pypis-label-studio-ml"
    assert slug("Answers that cannot be cut in half (truncation salvage)") == (
        "answers-that-cannot-be-cut-in-half-truncation-salvage"
    )
    assert anchors("# A\n```\n# not a heading\n```\n## A\n") == {"a", "a-1"}
