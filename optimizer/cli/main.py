"""``python -m optimizer <command>``: a thin shell over the library, one subcommand per registered module.

Each module named in :data:`COMMAND_MODULES` exposes ``register(subparsers)``, which adds its subcommands and sets
``func`` (``args -> exit status``) on each. Adding a command is adding a module name here; nothing else changes.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES: list[str] = [
    "optimizer.cli.goldfile",
    "optimizer.cli.training",
    "optimizer.cli.export",
    "optimizer.cli.predict",
    "optimizer.cli.jobs",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m optimizer", description="Prompt-policy tools for the backend.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
