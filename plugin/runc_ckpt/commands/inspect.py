"""`runc-ckpt inspect ARCHIVE|IMAGE`: what a checkpoint holds, without restoring it.

Reports the container, the engine that made it, times, sizes of memory
pages, rootfs diff and volumes, CRIU's dump statistics, the options used,
who can restore it, how this host compares with the checkpointing one, and
whether the checkpoint verifies (restore.inspection). Works on podman's
exports and images too. --log prints CRIU's dump.log instead. Exits
non-zero when verification fails.
"""

from __future__ import annotations

import json
import sys

from runc_ckpt.base import realrunc, runclog
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.commands import cmdflags, options
from runc_ckpt.inspect import report
from runc_ckpt.inspect.request import Format, InspectRequest
from runc_ckpt.settings import config

NAME = "runc-ckpt inspect - show what a checkpoint archive or image holds"
USAGE = "runc-ckpt [global options] inspect [command options] <archive>|<image>"
DESCRIPTION = ("Show what a checkpoint archive (runc-ckpt's, podman's or CRI-O's) or checkpoint image "
               "(oci:, oci-archive:, docker://, containers-storage: or a NAME) holds, without restoring it.")


def run(inv: Invocation) -> int:
    p = cmdflags.parse_or_help(options.INSPECT, inv.args, "inspect", NAME, USAGE, DESCRIPTION,
                               runc_command=False)
    if p is None:
        return 0
    if len(p.positionals) != 1:
        raise RuncCkptError(f"inspect: expected one archive or image, got {len(p.positionals)}")
    req = InspectRequest(p.positionals[0], _format(p.text("format")), p.flag("log"), p.texts("decryption_key"),
                         p.text("signature_policy"))
    cfg = config.load(inv.flags.config)
    runc = realrunc.find(cfg.runc)
    info, problem, dump_log = report.inspect(req.target, runc, inv.flags.criu, inv.flags,
                                             (*req.decryption_keys, *cfg.decryption_key),
                                             req.signature_policy or cfg.signature_policy)
    if req.log:
        if dump_log is None:
            raise RuncCkptError(f"{info['archive']} keeps no CRIU dump.log")
        sys.stdout.buffer.write(dump_log)
        sys.stdout.flush()
    elif req.format == "json":
        print(json.dumps(info, indent=2))
    else:
        print(report.render_text(info), end="")
    if problem:
        raise RuncCkptError(problem)
    runclog.debug(inv.flags, f"inspect: {info['archive']} verified")
    return 0


def _format(text: str | None) -> Format:
    """--format, one of its choices (cmdflags refuses any other value)."""
    return "json" if text == "json" else "text"
