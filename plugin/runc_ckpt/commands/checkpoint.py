"""`runc-ckpt checkpoint`: for now, answers --help and passes the rest to runc."""

from __future__ import annotations

from runc_ckpt import cmdflags, options, passthrough, realrunc
from runc_ckpt.globalflags import Invocation

USAGE = "runc-ckpt [global options] checkpoint [command options] <container-id>..."
DESCRIPTION = "Checkpoint running containers, optionally into one podman-compatible archive."


def run(inv: Invocation) -> int:
    if any(a in ("--help", "-help", "-h", "--h") for a in inv.args):
        print(cmdflags.render_help(USAGE, DESCRIPTION, options.CHECKPOINT), end="")
        return 0
    passthrough.exec_runc(realrunc.find(), inv.runc_argv())
    return 1
