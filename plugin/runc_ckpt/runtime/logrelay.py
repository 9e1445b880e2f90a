"""Run the real runc so that the caller's --log file gets at most one error line.

Podman parses a runtime's --log as ONE JSON object and containerd keeps only
the last error, but runc 1.1.5 logs two errors when a checkpoint without
--leave-running fails ("container still running", then the real one). So
when the caller logs to a file, runc writes to a private log of the same
format (a later --log overrides an earlier one), and we append its lines to
the caller's log with only the LAST error line kept: runc's real error,
word for word, plus in parentheses what it lacks when CRIU ran (runc names
CRIU's log relative to a directory it does not name). When the caller logs
to stderr, runc inherits stderr and behaves exactly as it would unwrapped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Sequence

from runc_ckpt.base import runclog, signals
from runc_ckpt.base.globalflags import GlobalFlags
from runc_ckpt.base.record import Record
from runc_ckpt.runtime import faults

TYPE_CHECKING = False  # typing's flag, without importing typing (base/record.py says why)
if TYPE_CHECKING:
    from typing import IO

_TEXT_ERROR = re.compile(r"(?:^|\s)level=(?:error|fatal|panic)(?:\s|$)")
_ERROR_LEVELS = ("error", "fatal", "panic")


class RuncResult(Record):
    returncode: int
    logged_error: bool                  # runc's error reached the caller's log (or stderr)
    dropped: Sequence[str] = ()  # earlier error messages kept out of the log
    signum: int | None = None           # SIGINT/SIGTERM/SIGHUP that arrived while runc ran (runc was let finish)

    @property
    def interrupted(self) -> bool:
        return self.signum is not None


def logs_to_file(flags: GlobalFlags) -> bool:
    """runc's rule: any --log, even /dev/stderr, is a file opened for appending."""
    return flags.log != ""


def error_message(line: str) -> str | None:
    """The message of an error-level runc log line (json or text), else None."""
    line = line.strip()
    if line.startswith("{"):
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            return None
        if isinstance(doc, dict) and doc.get("level") in _ERROR_LEVELS:
            return str(doc.get("msg", ""))
        return None
    if not _TEXT_ERROR.search(line):
        return None
    m = runclog.TEXT_MSG.search(line)
    if m is None:
        return ""
    msg = m.group(1)
    if msg.startswith('"'):
        try:
            return str(json.loads(msg))
        except json.JSONDecodeError:
            return msg[1:-1]
    return msg


def keep_last_error(lines: list[str]) -> tuple[list[str], list[str], bool]:
    """(lines to relay, messages of dropped earlier errors, whether an error line is kept)."""
    errors = [i for i, line in enumerate(lines) if error_message(line) is not None]
    dropped = set(errors[:-1])
    kept = [line for i, line in enumerate(lines) if i not in dropped]
    return kept, [error_message(lines[i]) or "" for i in errors[:-1]], bool(errors)


def _append(path: str, lines: list[str]) -> None:
    if not lines:
        return
    data = "".join(line if line.endswith("\n") else line + "\n" for line in lines).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _wait_through_interrupts(argv: list[str], stdout: IO[str] | int | None, pass_fds: tuple[int, ...],
                             phase: str | None, spawned: Callable[[], None] | None) -> tuple[int, int | None]:
    """Run argv to the end, however we are asked to stop meanwhile.

    Killing runc mid-dump (as subprocess.run does on KeyboardInterrupt) could
    leave the container frozen, and dying ourselves would strand finished
    images in a temporary directory. So SIGINT, SIGTERM and SIGHUP are only
    remembered (base.signals); the caller stops once runc is done.
    """
    with signals.deferred() as deferral:
        proc = subprocess.Popen(argv, stdout=stdout, pass_fds=pass_fds)
        if spawned is not None:
            spawned()
        if phase is not None:
            faults.point(phase)
        return proc.wait(), deferral.signum


def amend_last_error(lines: list[str], context: str) -> list[str]:
    """lines with context appended to the message of the last error line."""
    errors = [i for i, line in enumerate(lines) if error_message(line) is not None]
    if not errors:
        return lines
    i = errors[-1]
    return [*lines[:i], runclog.with_message(lines[i], f"{error_message(lines[i])} ({context})"), *lines[i + 1:]]


def run(runc: str, runc_globals: list[str], args: list[str], flags: GlobalFlags,
        stdout: IO[str] | int | None = None, pass_fds: tuple[int, ...] = (),
        context: Callable[[list[str]], str | None] | None = None, phase: str | None = None,
        spawned: Callable[[], None] | None = None) -> RuncResult:
    """`runc [globals] args...`, relaying its log as described above.

    When runc fails and the log is a file, context(dropped messages) may
    return text to append to runc's one error line (in parentheses), so the
    caller's single error carries what runc's message lacks. phase names a
    fault point (runtime.faults) reached once runc has started; spawned() is called then too (work
    that should overlap runc's, not delay its start).
    """
    if not logs_to_file(flags):
        rc, signum = _wait_through_interrupts([runc, *runc_globals, *args], stdout, pass_fds, phase, spawned)
        return RuncResult(rc, logged_error=rc > 0, signum=signum)
    # Imported here, not at the top: only a call with --log (podman's, containerd's) needs a private log, and
    # tempfile's imports (~3 ms) are on the way to runc's fork for the others (runtime.atomicfile).
    import tempfile
    fd, private = tempfile.mkstemp(prefix="runc-ckpt-runc-log-")
    os.close(fd)
    try:
        rc, signum = _wait_through_interrupts([runc, *runc_globals, "--log", private, *args],
                                              stdout, pass_fds, phase, spawned)
        with open(private, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    finally:
        os.unlink(private)
    kept, dropped, has_error = keep_last_error(lines)
    extra = context(dropped) if context is not None and rc != 0 and has_error else None
    if extra:
        kept = amend_last_error(kept, extra)
    try:
        _append(flags.log, kept)
    except OSError:
        has_error = False  # nothing reached the caller's log: we must report ourselves
    return RuncResult(rc, logged_error=has_error and rc != 0, dropped=dropped, signum=signum)
