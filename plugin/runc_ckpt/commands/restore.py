"""`runc-ckpt restore`: --import goes to the import flow, anything else to runc's own restore."""

from __future__ import annotations

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.commands import cmdflags, options

NAME = "runc restore - restore a container from a previous checkpoint"
USAGE = """runc restore [command options] <container-id>

Where "<container-id>" is the name for the instance of the container to be
restored."""
DESCRIPTION = ("Restores the saved state of the container instance that was previously saved\n"
               "using the runc checkpoint command. runc-ckpt also restores from an archive (--import).")


def run(inv: Invocation) -> int:
    parsed = cmdflags.parse_or_help(options.RESTORE, inv.args, "restore", NAME, USAGE, DESCRIPTION)
    if parsed is None:
        return 0
    if parsed.values["import"] == "-" or parsed.handshake:
        from runc_ckpt.migrate import receiver
        return receiver.restore(inv, parsed)
    if parsed.values["import"]:
        from runc_ckpt.restore import importer
        return importer.restore(inv, parsed)
    from runc_ckpt.restore import runc_restore
    for opt in options.RESTORE:
        if opt.key in parsed.given and not opt.runc and opt.names[0] not in runc_restore.NOT_FOR_RUNC:
            raise RuncCkptError(f"restore: --{opt.names[0]} needs --import")
    return runc_restore.restore(inv, parsed)
