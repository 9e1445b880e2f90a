"""stdout and stdin as the archive: `checkpoint --export -` and `restore --import -`.

The sender's stdout carries the compressed archive, so nothing else may
write to it: take_stdout() moves the stream to a private descriptor and
points fd 1 at stderr, so runc, CRIU, hooks and any stray print land on
stderr, never inside the stream. A terminal is refused (an archive is
binary). Every write is bounded by a stall timeout: a receiver that stops
reading would otherwise keep a frozen container down for ever, so after
`timeout` seconds without progress the write fails with a clear error and
the sender restores the container locally. A broken pipe is an OSError
(EPIPE; Python ignores SIGPIPE). finish() ends the stream with a
half-close when stdout is a socket, so the receiver sees end-of-file while
the back channel (the same socket, read as stdin) stays open.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import stat
import threading

from runc_ckpt.base.errors import RuncCkptError

STDIN_LABEL = "<stdin>"


class StreamStalled(RuncCkptError):
    """The receiver read nothing for the stall timeout."""


def _refuse_terminal(fd: int, what: str) -> None:
    if os.isatty(fd):
        raise RuncCkptError(f"{what}: is a terminal; pipe it to (or from) the other side, e.g. "
                            "`runc-ckpt checkpoint -e - ID | ssh B runc-ckpt restore -i - --bundle DIR ID`")


class StdinReader:
    """A private copy of stdin whose read(n) returns what has arrived (one read(2)), and peek().

    A BufferedReader's read(n) waits for n bytes; the decompressor above
    would then sit on a stream's hello until a whole buffer had come in.
    """

    def __init__(self) -> None:
        self._fd = os.dup(0)
        os.set_inheritable(self._fd, False)
        self._head = b""

    def fileno(self) -> int:
        return self._fd

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            data = os.read(self._fd, n - len(self._head))
            if not data:
                break
            self._head += data
        return self._head

    def read(self, n: int = -1) -> bytes:
        if self._head:
            data, self._head = (self._head, b"") if n < 0 else (self._head[:n], self._head[n:])
            return data
        n = n if n > 0 else 1 << 20
        data = os.read(self._fd, n)
        # Gather what else has already arrived (a socket hands over a segment at a time),
        # so the decompressor above gets pieces worth its while; never wait for more.
        parts = [data]
        got = len(data)
        while data and got < n and select.select([self._fd], [], [], 0)[0]:
            data = os.read(self._fd, n - got)
            parts.append(data)
            got += len(data)
        return b"".join(parts) if len(parts) > 1 else parts[0]

    read1 = read

    def readinto(self, b: bytearray | memoryview) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def open_stdin() -> StdinReader:
    _refuse_terminal(0, "--import -: stdin")
    return StdinReader()


def redirect_stdout_to_stderr() -> int:
    """Move whatever fd 1 is to a new private fd (returned); fd 1 becomes stderr."""
    private = os.dup(1)
    os.set_inheritable(private, False)
    os.dup2(2, 1)
    return private


class StreamOut:
    """The archive's sink on the sender: a private copy of stdout, writes bounded by a stall timeout."""

    def __init__(self, fd: int, timeout: float) -> None:
        self.fd = fd
        self.timeout = timeout
        self.written = 0
        self._is_socket = stat.S_ISSOCK(os.fstat(fd).st_mode)

    @classmethod
    def take_stdout(cls, timeout: float) -> StreamOut:
        _refuse_terminal(1, "--export -: stdout")
        return cls(redirect_stdout_to_stderr(), timeout)

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        with _stall_alarm(self.timeout):
            while view:
                n = os.write(self.fd, view)
                self.written += n
                view = view[n:]
        return len(data)

    def flush(self) -> None:
        """Writes are unbuffered; nothing to do."""

    def finish(self) -> None:
        """End of the archive: the receiver sees EOF (a socket is half-closed, so its back channel lives on)."""
        if self._is_socket:
            with contextlib.suppress(OSError):
                socket.socket(fileno=os.dup(self.fd)).shutdown(socket.SHUT_WR)
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


@contextlib.contextmanager
def _stall_alarm(timeout: float):
    """Turn a write blocked for `timeout` seconds into StreamStalled (SIGALRM; main thread only)."""
    if timeout <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(_signum: int, _frame: object) -> None:
        raise StreamStalled(f"the receiver read nothing for {timeout:g} s (--stream-timeout)")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def describe_write_error(e: OSError) -> str:
    """One line for a failed stream write."""
    if e.errno == errno.EPIPE:
        return "the receiver closed the stream (broken pipe)"
    if e.errno == errno.ECONNRESET:
        return "the receiver reset the connection"
    return f"writing the stream failed: {e.strerror or e}"
