"""A dependency-free progress bar for the optimiser's events, on stderr.

On a terminal it redraws one line (calls spent of the budget, step, best validation score); elsewhere (CI logs, a
pipe) it prints one line per step, so logs stay readable.
"""

from __future__ import annotations

import sys
from typing import TextIO

WIDTH = 24


class ProgressBar:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._open = False

    def line(self, event: dict) -> str:
        budget = max(1, int(event.get("budget") or 1))
        calls = int(event.get("calls") or 0)
        filled = min(WIDTH, WIDTH * calls // budget)
        parts = ["[" + "#" * filled + "." * (WIDTH - filled) + "]", f"{calls}/{budget} calls"]
        if event.get("run"):
            parts.append(str(event["run"]))
        if event.get("step"):
            parts.append(f"step {event['step']}")
        if event.get("best") is not None:
            parts.append(f"best val {event['best']:.3f}")
        return " ".join(parts)

    def __call__(self, event: dict) -> None:
        text = self.line(event)
        if self.tty:
            self.stream.write("\r" + text.ljust(79))
            self._open = event.get("phase") != "done"
            if not self._open:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False
