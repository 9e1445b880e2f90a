"""`runc-ckpt inspect FILE`: what a checkpoint archive holds, without restoring it.

Reports the container, the engine that made it, times, sizes of memory
pages, rootfs diff and volumes, CRIU's dump statistics, the options used and
whether the archive verifies (archive.summary). Works on podman's exports
too (they carry no manifest, so only the layout is checked). Exits non-zero
when verification fails.
"""

from __future__ import annotations

import json
import os

from runc_ckpt.commands import cmdflags, options
from runc_ckpt.frontend import runclog
from runc_ckpt.frontend.errors import RuncCkptError
from runc_ckpt.frontend.globalflags import Invocation

NAME = "runc-ckpt inspect - show what a checkpoint archive holds"
USAGE = "runc-ckpt [global options] inspect [command options] <archive>"
DESCRIPTION = "Show what a checkpoint archive (runc-ckpt's or podman's) holds, without restoring it."


def run(inv: Invocation) -> int:
    p = cmdflags.parse_or_help(options.INSPECT, inv.args, "inspect", NAME, USAGE, DESCRIPTION,
                               runc_command=False)
    if p is None:
        return 0
    if len(p.positionals) != 1:
        raise RuncCkptError(f"inspect: expected one archive, got {len(p.positionals)}")
    from runc_ckpt.archive import summary
    path = os.path.abspath(p.positionals[0])
    info, problem = summary.inspect(path)
    if p.format == "json":
        print(json.dumps(info, indent=2))
    else:
        print(summary.render_text(info), end="")
    if problem:
        raise RuncCkptError(problem)
    runclog.debug(inv.flags, f"inspect: {path} verified")
    return 0
