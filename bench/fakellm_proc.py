"""The scripted fake LLM (testkit/fakellm.py) as its own process, so benchmarks do not share a GIL with it.

``python -m bench.fakellm_proc --delay 0.2`` prints its base URL on the first line of stdout, then serves until
its stdin closes or it is terminated. ``--responder magic`` answers as ``testkit.training_stack``'s scripted model
does (the labeller is right only under the proposer's instruction), so a training run has something to promote.
"""

from __future__ import annotations

import argparse
import sys

from testkit.fakellm import FakeLLM, keyword_responder
from testkit.training_stack import magic_responder

RESPONDERS = {"keyword": keyword_responder, "magic": magic_responder}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--responder", choices=sorted(RESPONDERS), default="keyword")
    args = parser.parse_args()
    with FakeLLM(RESPONDERS[args.responder], delay=args.delay) as fake:
        fake.requests, fake.headers = _Forgetful(), _Forgetful()  # a long run (the soak) must not keep them all
        print(fake.base_url, flush=True)
        sys.stdin.read()  # until the parent closes the pipe (or kills us)


class _Forgetful(list):
    """A list that drops what is appended: the fake records requests for tests, a benchmark process needs none."""

    def append(self, item) -> None:
        pass


if __name__ == "__main__":
    main()
