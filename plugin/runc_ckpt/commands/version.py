"""`runc-ckpt --version`: the real runc's version text unchanged, then ours as `key: value` lines.

Tools read a runtime's version by matching the FIRST line against
`runc version X.Y.Z` (podman info and its checkpoint annotations, engines
choosing features), and runc's further lines are already `key: value`; so
runc's text comes first, byte for byte, and ours follows in its style.
"""

from __future__ import annotations

import subprocess
import sys

from runc_ckpt import __version__
from runc_ckpt.base import realrunc
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.settings import config


def run(inv: Invocation) -> int:
    runc = realrunc.find(config.load(inv.flags.config).runc)
    out = subprocess.run([runc, "--version"], capture_output=True, check=False)
    sys.stdout.flush()
    sys.stdout.buffer.write(out.stdout)
    sys.stderr.buffer.write(out.stderr)
    if out.returncode != 0:
        return out.returncode
    if out.stdout and not out.stdout.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.buffer.write(f"runc-ckpt: {__version__}\nreal-runc: {runc}\n".encode())
    sys.stdout.flush()
    return 0
