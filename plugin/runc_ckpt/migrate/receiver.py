"""`restore --import -`: a stream's own members (archive/reader hands them here) and its session.

A two-phase (pre-copy) stream carries rootfs-diff.tar and the volumes first,
sent while the container still ran, and after the freeze only what changed:
per tree a list of paths gone since phase 1 (removed from the staging dir)
and a delta tar (extracted over the staging dir, replacing what it names).
Both land in the staging dirs the phase-1 trees were extracted into, so
nothing is applied before the manifest (the stream's last member) has
verified every member, phase 1 included.
"""

from __future__ import annotations

import json
import os

from runc_ckpt.archive import layout, safeextract
from runc_ckpt.archive.reader import MemberSource, Staged, StagedTree, Targets
from runc_ckpt.archive.tarstream import TarStream
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.commands import cmdflags
from runc_ckpt.migrate import handshake, hello
from runc_ckpt.runtime import faults


def _json(staged: Staged, name: str, data: bytes) -> object:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RuncCkptError(f"archive {staged.path}: {name} is not valid JSON: {e}") from None


def small_member(staged: Staged, targets: Targets, name: str, data: bytes) -> None:
    """The hello (handed to the pre-flight) or a list of paths removed since phase 1."""
    doc = _json(staged, name, data)
    if name == layout.PHASE1_END:
        if targets.on_phase1 is not None:
            targets.on_phase1()
        return
    if name == layout.HELLO:
        if staged.members:
            raise safeextract.UnsafeArchive(f"archive {staged.path}: {name} must be the first member")
        if not isinstance(doc, dict):
            raise RuncCkptError(f"archive {staged.path}: {name} is not a JSON object")
        staged.hello = doc
        if targets.on_hello is not None:
            targets.on_hello(doc)
        return
    if not isinstance(doc, list) or not all(isinstance(p, str) for p in doc):
        raise RuncCkptError(f"archive {staged.path}: {name} is not a JSON array of paths")
    tree = _tree_for(staged, name)
    if tree is None:
        return
    for path in doc:
        tree.staging.trim()
        parts = safeextract.split_name(path, f"{tree.staging.what}: {name}", allow_absolute=True)
        if not parts:
            raise safeextract.UnsafeArchive(f"{tree.staging.what}: {name} may not name the root")
        tree.staging.remove(parts)
        n = len(parts)
        for key in [k for k in tree.extracted.explicit_dirs if k[:n] == parts]:
            del tree.extracted.explicit_dirs[key]


def delta_member(staged: Staged, name: str, reader: MemberSource) -> None:
    """A delta tar: extracted over its tree's staging dir (a member it names replaces the staged one)."""
    tree = _tree_for(staged, name)
    if tree is None or not reader.left:
        return
    allow_devices = name == layout.ROOTFS_DELTA
    inner = TarStream(reader, f"{tree.staging.what}: {name}")
    safeextract.extract(inner, tree.staging, tree.staging.what, allow_devices, tree.extracted)


def _tree_for(staged: Staged, name: str) -> StagedTree | None:
    """The staged phase-1 tree a delta member belongs to; None when that tree is not being restored."""
    if name in (layout.ROOTFS_DELTA, layout.ROOTFS_REMOVED):
        if layout.ROOTFS_DIFF not in staged.members:
            raise safeextract.UnsafeArchive(f"archive {staged.path}: {name} comes before {layout.ROOTFS_DIFF}")
        return staged.rootfs
    prefix = f"{layout.MIGRATE_DIR}/{layout.VOLUMES_DIR}/"
    if not name.startswith(prefix):
        raise safeextract.UnsafeArchive(f"archive {staged.path}: unknown stream member {name!r}")
    rest = name[len(prefix):]
    vname = rest[:-len(".removed.json")] if rest.endswith(".removed.json") else rest[:-len(".tar")]
    if layout.volume_member(vname) not in staged.members:
        raise safeextract.UnsafeArchive(f"archive {staged.path}: {name} comes before {layout.volume_member(vname)}")
    return staged.volumes.get(vname)


class Session:
    """One `restore --import -`: the pre-flight on the hello, and the replies of --handshake."""

    def __init__(self, runc: str, criu: str, replier: handshake.Replier | None, skip_preflight: bool,
                 bundle: str | None = None) -> None:
        self.bundle = bundle      # issue 21: the hello's needs are checked against this bundle
        self.runc = runc
        self.criu = criu
        self.skip_preflight = skip_preflight
        self.replier = replier
        self.answered_go = False

    def on_hello(self, doc: dict) -> None:
        faults.point("hello-read")
        problems = hello.check(doc, self.runc, self.criu, self.skip_preflight, self.bundle)
        why = f"incompatible host: {'; '.join(problems)} (--skip-preflight on the receiver restores anyway)"
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

    def staged(self) -> None:
        faults.point("staged")

    def applied(self) -> None:
        faults.point("applied")

    def finished(self, ok: bool, reason: str) -> None:
        """Tell the sender (if it listens) how it ended; before the go, a failure is a no-go."""
        if self.replier is None:
            return
        self.replier.send(handshake.RESTORED if self.answered_go else handshake.GO, ok, reason)


def restore(inv: Invocation, p: cmdflags.Parsed) -> int:
    """`restore --import -` (a stream on stdin), optionally answering the sender (--handshake)."""
    if p.values["import"] != layout.STDIO:
        raise RuncCkptError("--handshake only works with --import - (a stream on stdin)")
    if p.handshake and p.print_stats:
        raise RuncCkptError("--print-stats writes to stdout, which carries the replies with --handshake")
    if p.import_previous:
        raise RuncCkptError("--import-previous cannot be used with --import -: a stream carries one full checkpoint")
    from runc_ckpt.base import realrunc
    from runc_ckpt.restore import importer
    from runc_ckpt.settings import config
    runc = realrunc.find(config.load(inv.flags.config).runc)
    session = Session(runc, inv.flags.criu, handshake.Replier() if p.handshake else None, bool(p.skip_preflight),
                      os.path.abspath(str(p.bundle or ".")))
    try:
        code = importer.restore(inv, p, session)
    except RuncCkptError as e:
        session.finished(False, str(e))
        raise
    except BaseException as e:
        session.finished(False, f"{type(e).__name__}: {e}")
        raise
    session.finished(code == 0, "" if code == 0 else f"runc restore exited {code}")
    return code
