"""The optional back channel of a stream: the receiver's replies, one JSON line each.

With a one-way pipe (`checkpoint -e - | ssh B restore -i -`) the sender
learns nothing from the receiver: a receiver that refuses the hello can
only close the pipe, which the sender sees as a broken pipe, before the
freeze if it is still sending phase 1 but not otherwise. Given
--handshake on both sides, the transport must be two-way (a socket, or
`socat EXEC:... EXEC:...`): the sender's stdin reads what the receiver's
stdout writes:

  1. after the hello:   {"go": true} or {"go": false, "reason": "..."}
     -- the sender waits for it before freezing anything;
  2. with --pre-copy, once phase 1 is staged: {"phase1": true} -- the sender
     freezes only then, so the receiver's backlog of phase 1 is not downtime;
  3. after runc restore: {"restored": true} or {"restored": false, "reason": "..."}
     -- the sender tidies its images only on true and restores the
     container locally on false; with no reply it keeps the images and
     says the outcome is unknown (restoring then could run it twice).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import time

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.migrate import stream

GO, PHASE1, RESTORED = "go", "phase1", "restored"


class Replies:
    """The sender's side: read the receiver's replies from a private copy of stdin."""

    def __init__(self) -> None:
        self._fd = os.dup(0)
        os.set_inheritable(self._fd, False)
        self._buf = b""

    def expect(self, key: str, timeout: float | None) -> tuple[bool | None, str]:
        """(verdict, reason) of the next reply naming `key`; (None, why) if none came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._fd], [], [], left)
            if not ready:
                return None, f"no reply from the receiver within {timeout:g} s"
            try:
                data = os.read(self._fd, 4096)
            except OSError as e:
                return None, f"reading the receiver's reply failed: {e.strerror}"
            if not data:
                return None, "the receiver closed the back channel without a reply"
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            doc = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None, f"the receiver's reply is not JSON: {line[:80]!r}"
        if not isinstance(doc, dict) or not isinstance(doc.get(key), bool):
            return None, f"the receiver's reply has no {key!r}: {line[:80]!r}"
        return doc[key], str(doc.get("reason", ""))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class Replier:
    """The receiver's side: write replies on a private copy of stdout (fd 1 then points at stderr)."""

    def __init__(self) -> None:
        self._fd = stream.redirect_stdout_to_stderr()

    def send(self, key: str, ok: bool, reason: str = "") -> None:
        """Best effort: a sender that has gone away cannot be told anything."""
        doc: dict[str, object] = {key: ok}
        if reason:
            doc["reason"] = reason
        with contextlib.suppress(OSError):
            os.write(self._fd, json.dumps(doc).encode() + b"\n")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def require_go(replies: Replies, timeout: float | None) -> None:
    verdict, reason = replies.expect(GO, timeout)
    if verdict is None:
        raise RuncCkptError(f"--handshake: {reason}; the container was not touched")
    if not verdict:
        raise RuncCkptError(f"the receiver refused the migration: {reason}; the container was not touched")


