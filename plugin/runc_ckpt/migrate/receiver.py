"""`restore --import -`: receive a stream on stdin and restore it, answering the sender if it listens.

The stream's members are the archive format's (archive.reader stages them,
the pre-copy deltas included); what is the receiver's own is its session:
stdin as the archive (stream), the pre-flight check of the hello (hello),
the --handshake replies (handshake) and the fault points of the migration
tests. The session reaches the importer through restore.request.StreamSession.
"""

from __future__ import annotations

import os

from runc_ckpt.archive.reader import ByteSource
from runc_ckpt.base import realrunc
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.migrate import handshake, hello, stream
from runc_ckpt.migrate.request import MigrateReceive
from runc_ckpt.restore import importer
from runc_ckpt.runtime import faults
from runc_ckpt.runtime.criu import images
from runc_ckpt.settings import config
from runc_ckpt.trust import policy as trustpolicy
from runc_ckpt.trust.policy import NO_POLICY, Policy


class Session:
    """One `restore --import -`: stdin, the pre-flight on the hello, and the replies of --handshake."""

    label = stream.STDIN_LABEL

    def __init__(self, runc: str, criu: str, replier: handshake.Replier | None, skip_preflight: bool,
                 bundle: str | None = None, trust: Policy = NO_POLICY, peer: str = "",
                 container_id: str | None = None) -> None:
        self.bundle = bundle      # issue 21: the hello's needs are checked against this bundle
        self.trust, self.peer, self.container_id = trust, peer, container_id   # issue 20: who may send
        self.runc = runc
        self.criu = criu
        self.skip_preflight = skip_preflight
        self.replier = replier
        self.answered_go = False

    def open_stream(self) -> ByteSource:
        return stream.open_stdin()

    def on_hello(self, doc: dict) -> None:
        faults.point("hello-read")
        untrusted = hello.judge(doc, self.trust, self.peer, self.container_id)
        problems = untrusted or hello.check(doc, self.runc, self.criu, self.skip_preflight, self.bundle)
        why = (f"untrusted sender: {'; '.join(untrusted)}" if untrusted
               else f"incompatible host: {'; '.join(problems)} (--skip-preflight on the receiver restores anyway)")
        if self.replier is not None:
            self.replier.send(handshake.GO, not problems, why if problems else "")
            self.answered_go = True
        if problems:
            raise RuncCkptError(f"the stream comes from an {why}")

    def on_phase1(self) -> None:
        """Phase 1 is in the staging dirs: the sender may freeze now (it waits for this with --handshake)."""
        faults.point("phase1-staged")
        if self.replier is not None:
            self.replier.send(handshake.PHASE1, True)
        # The sender freezes now, and for a CRIU dump's time the stream is quiet: the pycriu the restore
        # reads the images with (check_parent, the pre-flight) is imported meanwhile, not after the freeze.
        images.preload()

    def staged(self) -> None:
        faults.point("staged")

    def applied(self) -> None:
        faults.point("applied")

    def finished(self, ok: bool, reason: str) -> None:
        """Tell the sender (if it listens) how it ended; before the go, a failure is a no-go."""
        if self.replier is None:
            return
        self.replier.send(handshake.RESTORED if self.answered_go else handshake.GO, ok, reason)


def receive(inv: Invocation, req: MigrateReceive) -> int:
    """`restore --import -` (a stream on stdin), optionally answering the sender (--handshake)."""
    cfg = config.load(inv.flags.config)
    runc = realrunc.find(cfg.runc)
    restore = req.restore
    session = Session(runc, inv.flags.criu, handshake.Replier() if req.handshake else None,
                      restore.skip_preflight, os.path.abspath(restore.bundle or "."),
                      trustpolicy.load(restore.signature_policy or cfg.signature_policy), restore.peer or "",
                      restore.containers[0] if restore.containers else restore.name)
    try:
        code = importer.restore(inv, req.restore, session)
    except RuncCkptError as e:
        session.finished(False, str(e))
        raise
    except BaseException as e:
        session.finished(False, f"{type(e).__name__}: {e}")
        raise
    session.finished(code == 0, "" if code == 0 else f"runc restore exited {code}")
    return code
