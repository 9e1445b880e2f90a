"""The one way runc-ckpt handles SIGINT, SIGTERM and SIGHUP: defer, forward, report.

Engines stop their runtime with SIGTERM on a timeout, people press ^C. Dying
at an arbitrary point could leave a container frozen, a rootfs half merged
or finished images in a temp dir, so every flow wraps its work in
`deferred()`:

  * By default a signal is only remembered; the flow runs its critical
    section to the end (or rolls it back) and then ends with ONE line that
    says what state things are in, using `Deferral.signame`.
  * `interrupt=True` makes the first signal raise `Interrupted` at once
    (a long export that nothing depends on yet stops early), except inside
    `with d.critical():`, where it is held and raised when the block ends.
  * `d.forwarding(proc)`: while runc runs, each signal is also sent to it,
    exactly as it would reach an unwrapped runc (runc restore in the
    foreground passes it on to the container).

Handlers can only be installed from the main thread; elsewhere the helper
defers nothing and reports nothing. Stdlib only.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

TYPE_CHECKING = False  # typing's flag, without importing typing (base/record.py says why)
if TYPE_CHECKING:
    from typing import Protocol

    class Child(Protocol):
        """What forwarding needs of a child process (a subprocess.Popen, text or bytes)."""

        def poll(self) -> int | None: ...

        def send_signal(self, sig: int) -> None: ...


class Interrupted(BaseException):
    """The first signal, raised where it arrived; a BaseException so no `except Exception` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.signame = signal.Signals(signum).name


class Deferral:
    """What arrived while deferred: the first signal, and the knobs of the critical section."""

    def __init__(self, interrupt: bool) -> None:
        self.signum: int | None = None
        self._interrupt = interrupt
        self._held = 0
        self._raised = False
        self._child: Child | None = None

    @property
    def signame(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by the signal (128 + number)."""
        return 128 + (self.signum or 0)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        child = self._child
        if child is not None and child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)
        if self._interrupt and not self._held and not self._raised:
            self._raised = True
            raise Interrupted(signum)

    def stop_interrupting(self) -> None:
        """From now on only defer: past this point (e.g. runc restore started) stopping early helps nobody."""
        self._interrupt = False

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """Hold an interrupting signal until the block ends (then raise it, if it came)."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if self._interrupt and not self._held and self.signum is not None and not self._raised:
            self._raised = True
            raise Interrupted(self.signum)

    @contextlib.contextmanager
    def forwarding(self, proc: Child) -> Iterator[None]:
        """Send every signal to proc as well while the block runs."""
        self._child = proc
        try:
            yield
        finally:
            self._child = None


@contextlib.contextmanager
def deferred(interrupt: bool = False) -> Iterator[Deferral]:
    """Install the deferring handlers for the block; the old ones are back afterwards."""
    d = Deferral(interrupt)
    if threading.current_thread() is not threading.main_thread():
        yield d
        return
    old = {s: signal.signal(s, d._handle) for s in SIGNALS}
    try:
        yield d
    finally:
        for s, h in old.items():
            signal.signal(s, h)
