"""A one-line progress display for long exports and imports, for people only.

Shown only to a person at a terminal: on stderr, redrawn in place with \\r at
most five times a second. Nothing is shown when stderr is not a terminal
(podman, conmon, containerd and CRI-O all run the runtime without one, so
engines never see it) or with --log-format json (a program reads the log;
runc-ckpt stays as silent as runc). Callers never test these conditions
themselves: Progress.create returns a do-nothing object when disabled, so
they just call update() and close().
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Self, TextIO

from runc_ckpt.base.globalflags import GlobalFlags

MIN_INTERVAL = 0.2  # seconds between redraws: at most 5 a second
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human(nbytes: float) -> str:
    """1536 -> '1.5 KiB': short enough for a line that is redrawn."""
    if nbytes < 1024:
        return f"{nbytes:.0f} B"
    unit = 0
    while nbytes >= 1024 and unit < len(_UNITS) - 1:
        nbytes /= 1024
        unit += 1
    return f"{nbytes:.1f} {_UNITS[unit]}"


def enabled(flags: GlobalFlags, stream: TextIO) -> bool:
    """The rule: a terminal on stderr, and text logs."""
    if flags.log_format == "json":
        return False
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False


class Progress:
    """Bytes done, total when known, and rate, redrawn in place on a terminal."""

    watched = True    # a person sees it: what a display promises (a total) may be worth paying for

    def __init__(self, label: str, total: int | None, stream: TextIO,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._stream = stream
        self._clock = clock
        self._start = clock()
        self._last_draw: float | None = None
        self._width = 0

    @staticmethod
    def create(flags: GlobalFlags, label: str, total: int | None = None,
               stream: TextIO | None = None) -> Progress | NullProgress:
        """A Progress when a person is watching (see enabled()), else a NullProgress."""
        stream = sys.stderr if stream is None else stream
        if not enabled(flags, stream):
            return NullProgress()
        return Progress(label, total, stream)

    def update(self, nbytes: int) -> None:
        """Count nbytes more as done; redraw if the last redraw is old enough."""
        self.done += nbytes
        now = self._clock()
        if self._last_draw is None or now - self._last_draw >= MIN_INTERVAL:
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line, so later log lines start clean."""
        if self._last_draw is not None or self.done:
            self._draw(self._clock())
            self._write("\n")
        self._last_draw = None

    def line(self, now: float) -> str:
        """'export: 12.0 MiB / 48.0 MiB (25%), 6.0 MiB/s'; without a total, no size or percent."""
        elapsed = max(now - self._start, 1e-6)
        text = f"{self.label}: {human(self.done)}"
        if self.total:
            text += f" / {human(self.total)} ({min(100, self.done * 100 // self.total)}%)"
        return text + f", {human(self.done / elapsed)}/s"

    def _draw(self, now: float) -> None:
        text = self.line(now)
        # Pad over the previous, longer line instead of relying on terminal escapes.
        self._write("\r" + text.ljust(self._width))
        self._width = len(text)
        self._last_draw = now

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a display must never fail the export it reports on

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullProgress:
    """The disabled display: same API, does nothing."""

    watched = False
    total: int | None = None

    def update(self, nbytes: int) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
