"""Hand a call to the real runc by exec, so argv, stdio and exit code are runc's own."""

from __future__ import annotations

import os
import sys

from runc_ckpt.frontend.errors import RuncCkptError


def exec_runc(runc: str, args: list[str]) -> None:
    """Replace this process with `runc args...`; returns only by raising."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(runc, [runc, *args])
    except OSError as e:
        raise RuncCkptError(f"exec {runc}: {e.strerror}") from None
