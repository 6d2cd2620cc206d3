"""Regenerate ``optimizer/learning/model_prices.json``, the default prices per model, from LiteLLM's model cost map.

Why a vendored snapshot and not the package: ``litellm`` is a 43 MB wheel that pulls 60 packages (boto3,
tokenizers, huggingface-hub...), and both it and ``tokencost`` (31 packages, tiktoken and anthropic among them)
fetch the cost map from GitHub when imported, which an offline machine cannot do. The backend needs only two
numbers per model, so this script reads the map LiteLLM ships inside its wheel (``pip download --no-deps``, nothing
installed or imported) and keeps the chat models priced per input and output token, as prices per 1M tokens.

    python scripts/price_table.py                  # the newest litellm on the index
    python scripts/price_table.py --version 1.110.2
    python scripts/price_table.py --wheel litellm-1.110.2-....whl

The output is deterministic for one wheel (sorted keys, rounded prices), so a regenerated table diffs cleanly.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "optimizer" / "learning" / "model_prices.json"
MAP = "litellm/model_prices_and_context_window_backup.json"
MODES = ("chat", "completion", "responses")  # what a chat-completions call can be billed as


def download(version: str | None, into: Path) -> Path:
    spec = f"litellm=={version}" if version else "litellm"
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(into), spec]
    subprocess.run(argv, check=True)
    wheels = sorted(into.glob("litellm-*.whl"))
    if not wheels:
        raise SystemExit(f"pip downloaded no litellm wheel into {into}")
    return wheels[-1]


def per_million(value: float) -> float:
    return float(f"{value * 1_000_000:.6g}")


def table(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as archive:
        cost_map = json.loads(archive.read(MAP))
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        version = next(
            line.split(":", 1)[1].strip()
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Version:")
        )
    models = {}
    for name, entry in cost_map.items():
        if not isinstance(entry, dict) or entry.get("mode") not in MODES:
            continue
        prices = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
        if all(isinstance(p, int | float) and not isinstance(p, bool) and p >= 0 for p in prices):
            models[name] = [per_million(prices[0]), per_million(prices[1])]
    return {
        "source": f"litellm {version} ({MAP}), MIT licence, BerriAI/litellm",
        "generated_by": "scripts/price_table.py",
        "currency": "USD",
        "unit": "per 1M tokens: [input (prompt), output (completion)]",
        "models": dict(sorted(models.items())),
    }


def write(data: dict, path: Path) -> None:
    """One model per line, so a refreshed table shows which prices changed."""
    head = {k: v for k, v in data.items() if k != "models"}
    lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()] + ['  "models": {']
    items = list(data["models"].items())
    lines += [f"    {json.dumps(k)}: {json.dumps(v)}," for k, v in items]
    if items:
        lines[-1] = lines[-1].removesuffix(",")
    lines += ["  }", "}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", help="litellm release to read (default: the newest on the index)")
    parser.add_argument("--wheel", type=Path, help="a litellm wheel already downloaded")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        wheel = args.wheel or download(args.version, Path(scratch))
        data = table(wheel)
    write(data, args.out)
    print(f"{args.out}: {len(data['models'])} models from {data['source']}")


if __name__ == "__main__":
    main()
