"""Test-only fault injection at the named phases of a migration ($RUNC_CKPT_FAULT).

RUNC_CKPT_FAULT=PHASE:ACTION (comma-separated for several) makes the call,
on reaching PHASE, SIGKILL itself (kill), SIGSTOP itself until a test sends
SIGCONT (stop), or fail there with an error line (fail). Unset, point()
costs one dict lookup. Phases: sender hello-sent, phase1-sent (before the
freeze), dumped (after the dump, before phase 2), stream-sent; receiver
hello-read, phase1-staged, staged (verified, before apply), applied (before runc restore).
"""

from __future__ import annotations

import os
import signal

from runc_ckpt.frontend.errors import RuncCkptError

ENV_VAR = "RUNC_CKPT_FAULT"


def point(phase: str) -> None:
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    for item in spec.split(","):
        name, _, action = item.partition(":")
        if name != phase:
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
        elif action == "fail":
            raise RuncCkptError(f"injected failure at {phase} ({ENV_VAR})")
