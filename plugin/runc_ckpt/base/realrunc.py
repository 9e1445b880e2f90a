"""Find the real runc, the one runc-ckpt stands in front of, and hand calls to it by exec.

Order: $RUNC_CKPT_RUNC, the config file's `runc` key, then the first `runc`
on PATH that is not runc-ckpt itself (runc-ckpt may be installed under the
name `runc`, e.g. for containerd's BinaryName). The sh front end
(plugin/bin/runc-ckpt) does the same search for the fast path.
"""

from __future__ import annotations

import os
import sys

from runc_ckpt.base.errors import RuncCkptError

ENV_VAR = "RUNC_CKPT_RUNC"
# Both front ends carry this marker near the top, so a `runc` that is really
# runc-ckpt is recognised however it was installed or linked.
MARKER = b"runc-ckpt front end"


def _is_us(path: str) -> bool:
    try:
        if os.path.samefile(path, sys.argv[0]):
            return True
    except OSError:
        pass
    try:
        with open(path, "rb") as f:
            return MARKER in f.read(512)
    except OSError:
        return False


def _usable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK) and not _is_us(path)


def find(configured: str | None = None) -> str:
    """Return the real runc's path, or raise RuncCkptError saying how to set it."""
    explicit = os.environ.get(ENV_VAR) or configured
    if explicit:
        if not _usable(explicit):
            where = ENV_VAR if os.environ.get(ENV_VAR) else "the config file's runc key"
            raise RuncCkptError(f"real runc {explicit!r} (from {where}) is not an executable runc")
        return explicit
    for d in os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(os.pathsep):
        if d and _usable(os.path.join(d, "runc")):
            return os.path.join(d, "runc")
    raise RuncCkptError(f"cannot find the real runc on PATH; install runc or set {ENV_VAR}")


def exec_runc(runc: str, args: list[str]) -> None:
    """Replace this process with `runc args...`, so argv, stdio and exit code are runc's own; returns only by raising."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(runc, [runc, *args])
    except OSError as e:
        raise RuncCkptError(f"exec {runc}: {e.strerror}") from None
