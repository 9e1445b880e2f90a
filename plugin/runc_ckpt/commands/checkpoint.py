"""`runc-ckpt checkpoint`: argv -> a typed request (checkpoint.request), then the checkpoint flow;
`--export -` goes to the migration sender, which runs the flow with the stream."""

from __future__ import annotations

import os
import time

from runc_ckpt.base import gcpause, realrunc
from runc_ckpt.base.errors import PassToRunc, RuncCkptError
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.checkpoint.request import STREAM, CheckpointRequest, Compression
from runc_ckpt.commands import cmdflags, options
from runc_ckpt.runtime import containerid, containerstate
from runc_ckpt.settings import config
from runc_ckpt.settings.policy import PolicyFlags

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
    try:
        return _run(inv)
    finally:
        containerstate.forget()     # a state asked ahead and never taken (the call failed before)


def _run(inv: Invocation) -> int:
    parsed = cmdflags.parse_or_help(options.CHECKPOINT, inv.args, "checkpoint", NAME, USAGE, DESCRIPTION)
    if parsed is None:
        return 0
    if not parsed.positionals and not cmdflags.uses_own_flags(options.CHECKPOINT, inv.args):
        raise PassToRunc()  # no container ID: runc's own "requires exactly 1 argument(s)"
    started = time.monotonic()
    cfg = config.load(inv.flags.config)      # first: a bad config file is reported before bad flags
    config.apply_log_level(cfg, inv.flags)
    check_flags(parsed)
    req = checkpoint_request(parsed)
    if req.streaming:
        # Imported here, not at the top: migrate's stream modules (~10 ms) only --export - needs (test_layering LAZY).
        from runc_ckpt.migrate import sender
        from runc_ckpt.migrate.request import MigrateSend
        return sender.send(inv, cfg, MigrateSend(req, pre_copy=parsed.flag("pre_copy"),
                                                 handshake=parsed.flag("handshake"),
                                                 stream_timeout=stream_timeout(parsed),
                                                 max_pause=max_pause(parsed, cfg)), started)
    if len(req.containers) == 1:
        ask_state_ahead(inv, cfg, req.containers[0])
    # Imported here, not at the top: --help and runc's usage errors (exec'd runc) skip the flow's ~25 ms
    # of imports (test_layering LAZY). No GC pass while they load (base.gcpause).
    with gcpause.loading():
        from runc_ckpt.checkpoint import flow
    return flow.checkpoint(inv, cfg, req, started)


def ask_state_ahead(inv: Invocation, cfg: config.Config, container: str) -> None:
    """The flow's first question to runc, `runc state ID`, asked now: runc answers while the flow's modules
    load (runtime.containerstate.prefetch). Not for a container with a dir in our state dir: the flow settles
    it first, under its lock, and asks after that (a runc that cannot be found is left for the flow too)."""
    if os.path.isdir(containerid.container_dir(cfg.state_dir, container)):
        return
    try:
        runc = realrunc.find(cfg.runc)
    except RuncCkptError:
        return
    containerstate.prefetch(runc, inv, container)


def check_flags(p: cmdflags.Parsed) -> None:
    """Cross-flag rules that need no container."""
    export, create_image = p.text("export"), p.text("create_image")
    if export and create_image:
        raise RuncCkptError("--export and --create-image cannot be used together")
    if p.flag("ignore_rootfs") and not (export or create_image):
        raise RuncCkptError("--ignore-rootfs only works with --export or --create-image")
    if p.text("sign_by_sigstore_private_key") and not (export or create_image):
        raise RuncCkptError("--sign-by-sigstore-private-key only works with --export or --create-image")
    if p.text("sign_passphrase_file") and not p.text("sign_by_sigstore_private_key"):
        raise RuncCkptError("--sign-passphrase-file only works with --sign-by-sigstore-private-key")
    if p.texts("encryption_key") and not (export or create_image):
        raise RuncCkptError("--encryption-key only works with --export or --create-image")
    if p.flag("ignore_volumes") and not (export or create_image):
        raise RuncCkptError("--ignore-volumes only works with --export or --create-image")
    if export == STREAM:
        check_stream_flags(p)
    else:
        for key, flag in (("pre_copy", "--pre-copy"), ("handshake", "--handshake"),
                          ("stream_timeout", "--stream-timeout"), ("pre_copy_max_pause", "--pre-copy-max-pause")):
            if key in p.given:
                raise RuncCkptError(f"{flag} only works with --export - (a stream on stdout)")
    check_incremental_flags(p)
    if p.flag("with_previous") and (p.flag("pre_checkpoint") or p.flag("pre_dump")):
        raise RuncCkptError("--with-previous cannot be used with --pre-checkpoint (or --pre-dump)")
    if p.flag("all") and p.flag("latest"):
        raise RuncCkptError("--all and --latest cannot be used together")
    if (p.flag("all") or p.flag("latest")) and p.positionals:
        raise RuncCkptError("--all and --latest take no container names")
    if not (p.flag("all") or p.flag("latest") or p.positionals):
        raise RuncCkptError('checkpoint: "checkpoint" requires at least 1 container id (or --all, --latest)')


def check_incremental_flags(p: cmdflags.Parsed) -> None:
    """--incremental-from writes one archive file on top of another, from a full dump."""
    if p.texts("decryption_key") and not p.text("incremental_from"):
        raise RuncCkptError("--decryption-key only works with --incremental-from (it opens the parent archive)")
    if p.text("incremental_from") is None:
        return
    if not p.text("incremental_from"):
        raise RuncCkptError("--incremental-from needs the file name of an earlier --export archive")
    export = p.text("export")
    if not export or export == STREAM:
        raise RuncCkptError("--incremental-from only works with --export FILE (an archive file)")
    for key, flag in (("pre_checkpoint", "--pre-checkpoint"), ("with_previous", "--with-previous"),
                      ("pre_dump", "--pre-dump"), ("parent_path", "--parent-path")):
        if key in p.given:
            raise RuncCkptError(f"--incremental-from cannot be used with {flag}: it builds on an archive, "
                                "from a full dump")


def check_stream_flags(p: cmdflags.Parsed) -> None:
    """What --export - cannot do, refused before anything is touched."""
    if p.flag("print_stats"):
        raise RuncCkptError("--print-stats writes to stdout, which carries the archive with --export -")
    for key, flag in (("pre_checkpoint", "--pre-checkpoint"), ("with_previous", "--with-previous"),
                      ("pre_dump", "--pre-dump")):
        if p.flag(key):
            raise RuncCkptError(f"{flag} cannot be used with --export -: a stream carries one full checkpoint")
    stream_timeout(p)
    if "pre_copy_max_pause" in p.given:
        if not p.flag("pre_copy"):
            raise RuncCkptError("--pre-copy-max-pause only works with --pre-copy")
        max_pause(p, None)


def max_pause(p: cmdflags.Parsed, cfg: config.Config | None) -> float | None:
    """--pre-copy-max-pause, else runc-ckpt.yaml's pre_copy_max_pause; None: no bound."""
    if "pre_copy_max_pause" in p.given:
        return _seconds(p, "pre_copy_max_pause", "--pre-copy-max-pause", "0: no memory pre-copy")
    return cfg.pre_copy_max_pause if cfg is not None else None


def _seconds(p: cmdflags.Parsed, key: str, flag: str, zero: str) -> float:
    """A flag's number of seconds; a usage error unless a number >= 0."""
    text = p.text(key)
    try:
        value = float(str(text))
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise RuncCkptError(f"{flag} {text!r}: not a number of seconds ({zero})")
    return value


def stream_timeout(p: cmdflags.Parsed) -> float:
    """--stream-timeout in seconds (0: no limit); a usage error unless a number >= 0."""
    return _seconds(p, "stream_timeout", "--stream-timeout", "0: no limit")


def checkpoint_request(p: cmdflags.Parsed) -> CheckpointRequest:
    """The checked flags as the flow's request; runc's flags stay as the caller spelled them."""
    status_fd = p.text("status_fd")
    fd = cmdflags.go_int(status_fd) if status_fd is not None else None   # checked by cmdflags
    return CheckpointRequest(
        containers=tuple(p.positionals), all=p.flag("all"), latest=p.flag("latest"),
        export=p.text("export"), create_image=p.text("create_image"),
        image_path=p.text("image_path"), work_path=p.text("work_path"), parent_path=p.text("parent_path"),
        pre_dump=p.flag("pre_dump"), pre_checkpoint=p.flag("pre_checkpoint"), with_previous=p.flag("with_previous"),
        leave_running=p.flag("leave_running"), ext_unix_sk=p.flag("ext_unix_sk"), shell_job=p.flag("shell_job"),
        keep=p.flag("keep"), print_stats=p.flag("print_stats"), status_fd=-1 if fd is None else fd,
        encryption_keys=p.texts("encryption_key"),
        sign_key=p.text("sign_by_sigstore_private_key"), sign_passphrase_file=p.text("sign_passphrase_file"),
        incremental_from=p.text("incremental_from"), decryption_keys=p.texts("decryption_key"),
        policy=PolicyFlags(compress=_compression(p.text("compress")) if "compress" in p.given else None,
                           tcp_established=p.given_flag("tcp_established"), file_locks=p.given_flag("file_locks"),
                           ignore_rootfs=p.given_flag("ignore_rootfs"), ignore_volumes=p.given_flag("ignore_volumes")),
        runc_argv=tuple(p.forward), runc_flags=tuple(p.runc_args))


def _compression(text: str | None) -> Compression:
    """--compress, one of its choices (cmdflags refuses any other value)."""
    if text == "zstd":
        return "zstd"
    if text == "gzip":
        return "gzip"
    if text == "none":
        return "none"
    raise RuncCkptError(f"invalid value {text!r} for --compress")
