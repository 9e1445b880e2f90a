"""`runc-ckpt checkpoint`: parse the flags, answer --help, hand the rest to the checkpoint flow."""

from __future__ import annotations

from runc_ckpt.base.errors import PassToRunc
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.commands import cmdflags, options

NAME = "runc checkpoint - checkpoint a running container"
USAGE = """runc checkpoint [command options] <container-id>...

Where "<container-id>" is the name for the instance of the container to be
checkpointed (runc-ckpt: several, or --all/--latest instead)."""
DESCRIPTION = ("The checkpoint command saves the state of the container instance. Without --image-path "
               "the images go to ./checkpoint, as with runc; --export, --create-image, --pre-checkpoint and "
               "--with-previous keep theirs in <state_dir>/<container-id>/ (see runc-ckpt.yaml). --export "
               "writes one archive in podman's layout, --create-image an OCI checkpoint image; podman "
               "restores them when the container's image is known (see inspect).")


def run(inv: Invocation) -> int:
    parsed = cmdflags.parse_or_help(options.CHECKPOINT, inv.args, "checkpoint", NAME, USAGE, DESCRIPTION)
    if parsed is None:
        return 0
    if not parsed.positionals and not cmdflags.uses_own_flags(options.CHECKPOINT, inv.args):
        raise PassToRunc()  # no container ID: runc's own "requires exactly 1 argument(s)"
    from runc_ckpt.checkpoint import flow
    return flow.checkpoint(inv, parsed)
