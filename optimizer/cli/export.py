"""``python -m optimizer export``: a reward-scoring project's grades as JSON Lines for RLVR or DPO.

    python -m optimizer export --project 12 --format rlvr --out rewards.jsonl [--include-judged]
    python -m optimizer export --project 12 --format preference --out pairs.jsonl

It reads the project from Label Studio with ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY`` (the worker's
settings); the line format is described in ``optimizer.learning.rlvr`` and docs/reward-scoring.md. Any failure
prints one line naming what is wrong and exits non-zero; nothing is written then.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from optimizer.labelstudio.client import LabelStudioError
from optimizer.learning.rlvr import ExportError, Format, export_project, to_jsonl
from optimizer.runtime.services import Services
from optimizer.settings import load_settings
from web.refs import ProjectRef, RefError


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help="export a reward-scoring project as RLVR or preference JSON Lines")
    parser.add_argument("--project", required=True, help="Label Studio project id (or its <id>.<created> uid)")
    parser.add_argument("--format", choices=[f.value for f in Format], default=Format.RLVR.value)
    parser.add_argument("--out", required=True, help="file to write (JSON Lines); - for standard output")
    parser.add_argument(
        "--include-judged", action="store_true", help="also export tasks without a human grade, with the judge's"
    )
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    try:
        number = ProjectRef.parse(args.project, "--project").require_number("--project")
    except RefError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    try:
        lines = export_project(Services(load_settings()).label_studio, number, Format(args.format), args.include_judged)
    except (LabelStudioError, ExportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = to_jsonl(lines)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
    sources = Counter(line.get("reward_source", "pair") for line in lines)
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(sources.items())) or "nothing to export"
    print(f"{len(lines)} lines ({summary}) → {args.out}", file=sys.stderr)
    return 0
