"""`runc-ckpt checkpoint`: parse the flags, answer --help, hand the rest to the checkpoint flow."""

from __future__ import annotations

from runc_ckpt.commands import cmdflags, options
from runc_ckpt.frontend.globalflags import Invocation

USAGE = "runc-ckpt [global options] checkpoint [command options] <container-id>..."
DESCRIPTION = ("Checkpoint running containers with runc and CRIU, optionally into one "
               "podman-compatible archive (--export). Without --image-path the images go to "
               "<state_dir>/<container-id>/ (see runc-ckpt.yaml).")


def run(inv: Invocation) -> int:
    parsed = cmdflags.parse_or_help(options.CHECKPOINT, inv.args, "checkpoint", USAGE, DESCRIPTION)
    if parsed is None:
        return 0
    from runc_ckpt.checkpoint import flow
    return flow.checkpoint(inv, parsed)
