"""What a checkpoint is asked to do: one frozen, typed request, built by the command layer.

As runc's checkpoint command builds its CriuOpts from the flags
(checkpoint.go, criuOptions()) and libcontainer never sees the command line,
runc_ckpt.commands.checkpoint turns argv into a CheckpointRequest and the flow
(runc_ckpt.checkpoint.flow) never sees a parsed flag. Flags that go to runc as
the caller spelled them arrive here as argv already (runc_argv, runc_flags).
"""

from __future__ import annotations

from runc_ckpt.base.record import Record
from runc_ckpt.settings.policy import Compression, PolicyFlags

__all__ = ["STREAM", "CheckpointRequest", "Compression", "PolicyFlags"]

STREAM = "-"  # --export -: the archive goes to stdout (written by runc_ckpt.migrate.sender)


class CheckpointRequest(Record):
    """One `checkpoint` call: which containers, where the images and the archive go, and runc's argv.

    containers: the names as given (none with all/latest). export: the archive
    file, or STREAM for --export - (then the caller writes the stream and hands
    the flow a callback). runc_argv: the caller's argv minus our own flags, in
    its order (one named container: runc gets exactly this); runc_flags: the
    same without the container names and `--` (several containers: each gets
    these flags and its ID).
    """

    containers: tuple[str, ...] = ()
    all: bool = False
    latest: bool = False
    export: str | None = None
    create_image: str | None = None
    image_path: str | None = None
    work_path: str | None = None
    parent_path: str | None = None
    pre_dump: bool = False
    pre_checkpoint: bool = False
    with_previous: bool = False
    leave_running: bool = False
    ext_unix_sk: bool = False
    shell_job: bool = False
    keep: bool = False
    print_stats: bool = False
    status_fd: int = -1                 # runc's --status-fd; -1 (runc's default): none
    encryption_keys: tuple[str, ...] = ()  # jwe:PUB.pem recipients of the archive (flags, else the node key)
    sign_key: str | None = None         # --sign-by-sigstore-private-key (else the node key of runc-ckpt.yaml)
    sign_passphrase_file: str | None = None
    incremental_from: str | None = None  # --incremental-from: the archive whose pages the export leaves out
    decryption_keys: tuple[str, ...] = ()  # open an encrypted --incremental-from archive (flags, then config)
    policy: PolicyFlags = PolicyFlags()
    runc_argv: tuple[str, ...] = ()
    runc_flags: tuple[str, ...] = ()

    @property
    def streaming(self) -> bool:
        return self.export == STREAM

    def operation(self) -> str:
        """What a waiting caller is told this call is doing."""
        return "checkpoint" + (" --pre-checkpoint" if self.pre_checkpoint else "") \
            + (" --export" if self.export else "") + (" --create-image" if self.create_image else "")

    def why_tracking(self) -> str:
        """The flag that makes this checkpoint need CRIU's memory tracking."""
        for on, flag in ((self.pre_checkpoint, "--pre-checkpoint"), (self.with_previous, "--with-previous"),
                         (self.pre_dump, "--pre-dump"), (bool(self.parent_path), "--parent-path")):
            if on:
                return flag
        return "a pre-dump"
