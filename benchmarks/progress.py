"""A progress bar on stderr, without a dependency.

On a terminal one line is redrawn in place (log lines scroll above it); elsewhere (CI, a pipe)
only the log lines are written, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, width: int = 28) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream or sys.stderr
        self.width = width
        self.label = ""
        self.t0 = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn = False

    def log(self, msg: str) -> None:
        self._clear()
        print(msg, file=self.stream, flush=True)
        self._draw()

    def step(self, label: str = "", n: int = 1) -> None:
        """``n`` units finished; ``label`` says what runs next."""
        self.done = min(self.total, self.done + n)
        self.set(label)

    def set(self, label: str) -> None:
        self.label = label
        self._clear()
        self._draw()

    def add(self, n: int) -> None:
        """More work than first thought (or less, with a negative ``n``)."""
        self.total = max(self.done + 1, self.total + n)

    def close(self) -> None:
        self._clear()

    def render(self) -> str:
        frac = self.done / self.total
        filled = int(frac * self.width)
        elapsed = time.monotonic() - self.t0
        eta = ""
        if self.done and self.done < self.total:
            left = elapsed / self.done * (self.total - self.done)
            eta = f" ~{_clock(left)} left"
        bar = "#" * filled + "." * (self.width - filled)
        return f"[{bar}] {frac * 100:3.0f}% {_clock(elapsed)}{eta}  {self.label}"

    def _draw(self) -> None:
        if self.tty:
            self.stream.write("\r" + self.render()[:200])
            self.stream.flush()
            self._drawn = True

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn = False


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"
