"""What a restore is asked to do: frozen, typed requests, built by the command layer.

runc_ckpt.commands.restore turns argv into a RestoreRequest (runc's own
restore, runc_restore) or an ImportRequest (restore --import, importer); the
flows never see a parsed flag. Flags that go to runc as the caller spelled
them arrive as argv already. A stream on stdin (--import -) is received by
runc_ckpt.migrate.receiver, which hands the importer its session through the
StreamSession protocol below (restore does not import migrate).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from runc_ckpt.base.record import Record
from runc_ckpt.settings.policy import PolicyFlags

if TYPE_CHECKING:   # the reader (and its stack) loads only where an import runs, not for runc's own restore
    from runc_ckpt.archive.reader import ByteSource

__all__ = ["ImportRequest", "PolicyFlags", "RestoreRequest", "StreamSession"]


class RestoreRequest(Record):
    """`restore` without --import: runc's own, with our policy, hooks and --tcp-close.

    runc_argv: the caller's argv minus the flags runc 1.1.5 lacks, in its order;
    dropped: those flags, as spelled in the debug line that says so.
    """

    containers: tuple[str, ...] = ()
    bundle: str | None = None
    image_path: str | None = None       # given (even empty): runc's --image-path, no state-dir lookup
    tcp_close: bool = False
    skip_preflight: bool = False        # restore even when the host pre-flight refuses
    check: bool = False                 # run the host pre-flight only, change nothing
    signature_policy: str | None = None  # --signature-policy (else runc-ckpt.yaml's, else the default file)
    policy: PolicyFlags = PolicyFlags()
    dropped: tuple[str, ...] = ()
    runc_argv: tuple[str, ...] = ()


class ImportRequest(Record):
    """`restore --import SOURCE`: an archive, a checkpoint image, or "-" (a stream, via migrate.receiver).

    runc_flags: the caller's runc restore flags (but --bundle, --image-path and
    --work-path, which --import sets itself), then the flags we do not know.
    image_path is refused (the images come from the archive); containers holds
    the IDs as given (at most one is accepted).
    """

    source: str
    previous: str | None = None         # --import-previous
    incremental_dir: str | None = None  # --incremental-dir: where an incremental archive's chain lies
    containers: tuple[str, ...] = ()
    name: str | None = None
    bundle: str | None = None
    image_path: str | None = None
    work_path: str | None = None
    pid_file: str | None = None
    detach: bool = False
    keep: bool = False
    print_stats: bool = False
    skip_preflight: bool = False
    check: bool = False                 # run the host pre-flight only, change nothing
    trust_archive_spec: bool = False
    tcp_close: bool = False
    decryption_keys: tuple[str, ...] = ()  # private keys for an encrypted archive (flags, then config)
    signature_policy: str | None = None    # --signature-policy (else runc-ckpt.yaml's, else the default file)
    peer: str | None = None                # a stream's sender ($SOCAT_PEERADDR): the policy's stream scope
    policy: PolicyFlags = PolicyFlags()
    runc_flags: tuple[str, ...] = ()

    @property
    def ignore_rootfs(self) -> bool:
        return bool(self.policy.ignore_rootfs)

    @property
    def ignore_volumes(self) -> bool:
        return bool(self.policy.ignore_volumes)


class StreamSession(Protocol):
    """A stream's side of `restore --import -` (runc_ckpt.migrate.receiver.Session implements it)."""

    @property
    def label(self) -> str:
        """How errors name the stream (e.g. "<stdin>")."""
        ...

    def open_stream(self) -> ByteSource:
        """The stream, opened when the importer starts reading it (after its locks and checks)."""
        ...

    def on_hello(self, doc: dict[str, Any]) -> None:
        """The stream's first member: the pre-flight check, and a go/no-go to a sender that listens."""
        ...

    def on_phase1(self) -> None:
        """A pre-copy stream's phase 1 is staged."""
        ...

    def staged(self) -> None:
        """Every member is staged and verified; nothing is applied yet."""
        ...

    def applied(self) -> None:
        """The bundle holds the archive's changes; runc restore is next."""
        ...
