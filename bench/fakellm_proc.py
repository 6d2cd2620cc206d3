"""The scripted fake LLM (testkit/fakellm.py) as its own process, so benchmarks do not share a GIL with it.

``python -m bench.fakellm_proc --delay 0.2`` prints its base URL on the first line of stdout, then serves until
its stdin closes or it is terminated.
"""

from __future__ import annotations

import argparse
import sys

from testkit.fakellm import FakeLLM


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    args = parser.parse_args()
    with FakeLLM(delay=args.delay) as fake:
        print(fake.base_url, flush=True)
        sys.stdin.read()  # until the parent closes the pipe (or kills us)


if __name__ == "__main__":
    main()
