"""A progress line for the commands that take a while (`analytics demo`, `analytics export`)."""

from __future__ import annotations

import time
from typing import TextIO


class Progress:
    """A one-line progress bar on a terminal; on anything else a line at each tenth."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream, self.label = stream, label
        self.tty = stream.isatty()
        self._last = 0.0
        self._tenth = -1

    def update(self, fraction: float, note: str, force: bool = False) -> None:
        fraction = min(1.0, max(0.0, fraction))
        if self.tty:
            now = time.monotonic()
            if not force and now - self._last < 0.1:
                return
            self._last = now
            filled = int(fraction * 30)
            bar = "#" * filled + "-" * (30 - filled)
            self.stream.write(f"\r{self.label} [{bar}] {fraction * 100:3.0f}% {note}\x1b[K")
        elif force or (int(fraction * 10) > self._tenth and fraction < 1.0):
            self._tenth = int(fraction * 10)
            self.stream.write(f"{self.label} {fraction * 100:3.0f}% {note}\n")
        self.stream.flush()

    def done(self, note: str) -> None:
        self.update(1.0, note, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
