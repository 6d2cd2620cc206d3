"""``python -m optimizer <command>``: a thin argparse shell over the library.

Each command module exposes ``register(subparsers)`` and sets ``func`` on its parsers; this file only collects them.
"""

from __future__ import annotations

import argparse

from . import cli_training

COMMAND_MODULES = [cli_training]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m optimizer", description="Prompt-optimising Label Studio backend")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
