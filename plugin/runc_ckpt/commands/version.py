"""`runc-ckpt --version`: our version, then the real runc's own version text."""

from __future__ import annotations

import subprocess

from runc_ckpt import __version__
from runc_ckpt.frontend import realrunc
from runc_ckpt.frontend.globalflags import Invocation
from runc_ckpt.settings import config


def run(inv: Invocation) -> int:
    print(f"runc-ckpt version {__version__}")
    runc = realrunc.find(config.load(inv.flags.config).runc)
    out = subprocess.run([runc, "--version"], capture_output=True, text=True, check=False)
    print(f"real runc: {runc}")
    print(out.stdout.rstrip())
    return 0
