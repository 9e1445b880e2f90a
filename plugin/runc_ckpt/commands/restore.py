"""`runc-ckpt restore`: argv -> a typed request; --import goes to the import flow, anything else to runc's
own restore, and a stream on stdin (--import -) to the migration receiver."""

from __future__ import annotations

import os

from runc_ckpt.base import gcpause
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.commands import cmdflags, options
from runc_ckpt.restore.request import ImportRequest, RestoreRequest
from runc_ckpt.runtime.criu import imagereader
from runc_ckpt.settings.policy import PolicyFlags

NAME = "runc restore - restore a container from a previous checkpoint"
USAGE = """runc restore [command options] <container-id>

Where "<container-id>" is the name for the instance of the container to be
restored."""
DESCRIPTION = ("Restores the saved state of the container instance that was previously saved\n"
               "using the runc checkpoint command. runc-ckpt also restores from an archive (--import).")
STDIO = "-"
# Flags restore --import sets itself; the rest of runc's flags are forwarded.
OWN_RUNC_FLAGS = {"bundle", "image_path", "work_path"}


def run(inv: Invocation) -> int:
    try:
        return _run(inv)
    finally:
        imagereader.stop()      # the entry (cli) may have forked it for what looked like --import FILE


def _run(inv: Invocation) -> int:
    parsed = cmdflags.parse_or_help(options.RESTORE, inv.args, "restore", NAME, USAGE, DESCRIPTION)
    if parsed is None:
        return 0
    source = parsed.text("import")
    if not source or source == STDIO or parsed.flag("handshake"):
        imagereader.stop()      # no archive file: nothing for the reader the entry may have forked
    if source == STDIO or parsed.flag("handshake"):
        check_stream_flags(parsed)
        # Imported here, not at the top: runc's own restore (every engine's) skips migrate (test_layering LAZY).
        from runc_ckpt.migrate import receiver
        from runc_ckpt.migrate.request import MigrateReceive
        return receiver.receive(inv, MigrateReceive(import_request(parsed), handshake=parsed.flag("handshake")))
    if source:
        # The pre-flight's CRIU image reader is forked first (by the entry, or here), holding no lock yet: it
        # imports pycriu (~55 ms) on the other core while this process loads the import stack and stages
        # (runtime.criu.imagereader); run() ends it.
        imagereader.start()
        with gcpause.loading():
            # Imported here, not at the top: runc's own restore skips the import stack (~30 ms; test_layering LAZY).
            from runc_ckpt.restore import importer
        return importer.restore(inv, import_request(parsed))
    # Imported here, not at the top: --help and runc's usage errors (exec'd runc) load no flow (test_layering LAZY).
    from runc_ckpt.restore import runc_restore
    for opt in options.RESTORE:
        if opt.key in parsed.given and not opt.runc and opt.names[0] not in runc_restore.NOT_FOR_RUNC:
            raise RuncCkptError(f"restore: --{opt.names[0]} needs --import")
    return runc_restore.restore(inv, restore_request(parsed))


def restore_request(p: cmdflags.Parsed) -> RestoreRequest:
    """runc's own restore: its argv as given, minus the flags runc 1.1.5 lacks."""
    return RestoreRequest(
        containers=tuple(p.positionals), bundle=p.text("bundle"), image_path=p.text("image_path"),
        tcp_close=p.flag("tcp_close"), skip_preflight=p.flag("skip_preflight"), check=p.flag("check"),
        signature_policy=p.text("signature_policy"),
        policy=PolicyFlags(tcp_established=p.given_flag("tcp_established"), file_locks=p.given_flag("file_locks")),
        dropped=tuple(f"--{o.names[0]}" for o in options.RESTORE if o.key in p.given and not o.runc),
        runc_argv=tuple(p.forward))


def import_request(p: cmdflags.Parsed) -> ImportRequest:
    """restore --import: what to restore from and how, and the runc flags it forwards."""
    source = p.text("import")
    assert source is not None
    return ImportRequest(
        source=source, previous=p.text("import_previous") or None, incremental_dir=p.text("incremental_dir"),
        containers=tuple(p.positionals),
        name=p.text("name"), bundle=p.text("bundle"), image_path=p.text("image_path"),
        work_path=p.text("work_path"), pid_file=p.text("pid_file"), detach=p.flag("detach"), keep=p.flag("keep"),
        print_stats=p.flag("print_stats"), skip_preflight=p.flag("skip_preflight"), check=p.flag("check"),
        trust_archive_spec=p.flag("trust_archive_spec"), tcp_close=p.flag("tcp_close"),
        decryption_keys=p.texts("decryption_key"), signature_policy=p.text("signature_policy"),
        peer=os.environ.get("SOCAT_PEERADDR") if p.text("import") == "-" else None,
        policy=PolicyFlags(tcp_established=p.given_flag("tcp_established"), file_locks=p.given_flag("file_locks"),
                           ignore_rootfs=p.given_flag("ignore_rootfs"), ignore_volumes=p.given_flag("ignore_volumes")),
        runc_flags=(*_forwarded_flags(p), *p.unknown))


def check_stream_flags(p: cmdflags.Parsed) -> None:
    """restore --import - [--handshake]: refused before anything is read when the stream cannot be."""
    if p.text("import") != STDIO:
        raise RuncCkptError("--handshake only works with --import - (a stream on stdin)")
    if p.flag("handshake") and p.flag("print_stats"):
        raise RuncCkptError("--print-stats writes to stdout, which carries the replies with --handshake")
    if p.text("import_previous"):
        raise RuncCkptError("--import-previous cannot be used with --import -: a stream carries one full checkpoint")
    if p.text("incremental_dir") is not None:
        raise RuncCkptError("--incremental-dir cannot be used with --import -: a stream carries one full checkpoint")


def _forwarded_flags(p: cmdflags.Parsed) -> list[str]:
    """The caller's runc restore flags (e.g. --detach), minus those --import sets itself."""
    out: list[str] = []
    for opt in options.RESTORE:
        if not opt.runc or opt.key in OWN_RUNC_FLAGS or opt.key not in p.given:
            continue
        flag = f"--{opt.names[0]}"
        if opt.kind == "bool":
            if p.flag(opt.key):
                out.append(flag)
        elif opt.kind == "list":
            for v in p.texts(opt.key):
                out += [flag, v]
        elif (value := p.text(opt.key)) is not None:     # given: always a str
            out += [flag, value]
    return out
