"""A plain progress bar on stderr (redrawn in place on a terminal, a line per quarter otherwise)."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

WIDTH = 30


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self._stream = stream or sys.stderr
        self._started = time.monotonic()
        self._tty = self._stream.isatty()
        self._quarter = -1

    def __enter__(self) -> Progress:
        self._draw()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.done = self.total
            self._draw(final=True)
        elif self._tty:
            self._stream.write("\n")

    def advance(self, amount: int = 1) -> None:
        self.done = min(self.total, self.done + amount)
        self._draw()

    def _draw(self, final: bool = False) -> None:
        fraction = self.done / self.total if self.total else 1.0
        quarter = int(fraction * 4)
        if not self._tty and not final and quarter == self._quarter:
            return
        self._quarter = quarter
        filled = int(fraction * WIDTH)
        seconds = time.monotonic() - self._started
        line = f"  {self.label:<16} [{'#' * filled}{'.' * (WIDTH - filled)}] {self.done}/{self.total}  {seconds:5.1f}s"
        if self._tty:
            self._stream.write("\r" + line + ("\n" if final else ""))
        elif final or quarter < 4:
            self._stream.write(line + "\n")
        self._stream.flush()


class Step:
    """A long step without a count (training): prints its start, then its duration."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self._stream = stream or sys.stderr
        self._started = time.monotonic()

    def __enter__(self) -> Step:
        self._stream.write(f"  {self.label} ...\n")
        self._stream.flush()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        outcome = "done" if kind is None else "failed"
        self._stream.write(f"  {self.label}: {outcome} in {time.monotonic() - self._started:.1f}s\n")
        self._stream.flush()
