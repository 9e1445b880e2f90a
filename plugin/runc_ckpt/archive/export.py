"""Write a checkpoint export archive (podman's layout plus our manifest), atomically.

`runc-ckpt checkpoint --export FILE` calls write_archive() once the CRIU
images exist. Everything streams into one compressed tar with no
intermediate files: each volume is an uncompressed inner tar whose size comes
from a stat pre-pass (see archive.writer), and so is the rootfs diff of a
stream, a gzip or plain archive, or one with digests. A zstd archive's
rootfs diff is made by GNU tar (archive.tarstage), compressed as tar runs
into zstd frames of its own, its header put in front afterwards (Frames);
trees only our walker renders, or a host without tar, keep the stat pre-pass.

Atomicity: the archive streams into runtime.atomicfile.writing() -- a
flock-ed temp file beside FILE, fsynced (a helper thread flushes it as it
grows, so the final fsync is short), renamed over FILE, the directory
fsynced. Short writes are completed or reported as a full disk. Any failure
-- a full disk, a runc-ckpt bug, SIGTERM, SIGINT or SIGHUP mid-export
(base.signals, which holds them over the commit) -- removes the temp file
and raises RuncCkptError, so FILE is either the old file (or absent) or
complete. A temp file left by a killed export is swept by the next export
into that directory (its flock is free).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, BinaryIO

from runc_ckpt.archive import compression, layout, manifest, tarstage
from runc_ckpt.archive.exporttarget import check_target
from runc_ckpt.archive.manifest import MemberDigest
from runc_ckpt.archive.scan import RootfsPlan, Scanner, plan_rootfs
from runc_ckpt.archive.writer import DIR, REG, SYM, Entry, EntrySpool, TarWriter, TreePlan
from runc_ckpt.base import runclog, signals
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import GlobalFlags
from runc_ckpt.base.jsondoc import JSONObject
from runc_ckpt.base.progress import NullProgress, Progress
from runc_ckpt.base.record import Record
from runc_ckpt.rootfs import diff
from runc_ckpt.runtime import atomicfile, faults
from runc_ckpt.runtime import volumes as volumes_mod
from runc_ckpt.trust import seal, signature

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from runc_ckpt.trust.sealkeys import SealKey

_ZSTD_LEVELS = range(1, 23)


class ExportRequest(Record):
    archive: str            # target FILE
    compress: str           # "zstd" | "gzip" | "none"
    level: int              # compression level (zstd 1-22, gzip clamps to 1-9)
    threads: int            # zstd worker threads, 0 = one per core
    image_dir: str          # directory holding the CRIU images to store
    image_member: str       # layout.CHECKPOINT_DIR or layout.PRE_CHECKPOINT_DIR
    work_dir: str           # holds stats-dump (and dump.log); may equal image_dir
    bundle: str             # bundle directory
    spec: JSONObject        # the bundle's config.json as parsed (stored as spec.dump)
    rootfs: str             # absolute container root path (runc state's "rootfs")
    config_dump: JSONObject  # podman-style config.dump content (built by the caller)
    include_rootfs: bool    # False with --ignore-rootfs (or for a pre-checkpoint)
    include_volumes: bool   # False with --ignore-volumes
    volume_roots: list[str]  # where named volumes live: <root>/<name>/_data
    manifest_fields: JSONObject  # extra manifest keys from the caller: versions, container, options
    flags: GlobalFlags | None = None  # decide whether a progress display is shown; None: never
    extra_volumes: tuple[str, ...] = ()  # bind-mount destinations also archived as volumes (Policy.extra_volumes)
    digests: bool = False   # also hash the file and the tar stream (an image layer's digest and diff_id)
    previous_dir: str | None = None  # pre-dump images the dump builds on, stored as pre-checkpoint/ too
    rootfs_source: diff.RootfsSource | None = None  # located before the dump (diff.locate); None: locate now
    target_checked: bool = False  # check_target(archive) ran before the dump: the write does not probe again
    seal_for: tuple[SealKey, ...] = ()  # encrypt the whole file for these keys (trust.seal); (): plain
    sign_key: ec.EllipticCurvePrivateKey | None = None  # sign the manifest (trust.signature); None: unsigned
    parent: bytes | None = None  # an incremental checkpoint's layout.PARENT (archive.chain.Link); None: full
    parent_member: str = layout.PRE_CHECKPOINT_DIR  # where the images' `parent` link leads (a stream's last pre-copy round)


class ExportResult(Record):
    archive: str
    size: int                       # bytes of the compressed file
    members: dict[str, MemberDigest]
    rootfs_kind: str                # "overlay-diff" | "full" | "none"
    volumes: list[str]              # names archived
    warnings: Sequence[str] = ()   # files that changed while being read
    sha256: str | None = None       # with digests: of the file as written (compressed)
    diff_id: str | None = None      # with digests: of the uncompressed tar stream
    manifest_sha256: str | None = None  # with digests: of our manifest member (an image annotation names it)


def _check_request(req: ExportRequest) -> str:
    if req.compress not in compression.ALGORITHMS:
        raise RuncCkptError(f"unknown compression {req.compress!r}: choose one of "
                            f"{', '.join(compression.ALGORITHMS)}")
    if req.compress == "zstd" and req.level not in _ZSTD_LEVELS:
        raise RuncCkptError(f"zstd compression level {req.level} is out of range 1-22")
    if req.image_member not in (layout.CHECKPOINT_DIR, layout.PRE_CHECKPOINT_DIR):
        raise RuncCkptError(f"internal error: bad image member {req.image_member!r}")
    target = check_target(req.archive, probe=not req.target_checked)
    if not os.path.isdir(req.image_dir):
        raise RuncCkptError(f"checkpoint image directory {req.image_dir} does not exist")
    return target


def json_member(value: object) -> bytes:
    """A JSON member's content (spec.dump, config.dump, deleted.files, a stream's lists) as the archive holds it."""
    return json.dumps(value).encode()


class Plan(Record):
    """What an export reads, from the stat pre-pass, before a byte is written: the display's total.

    The images (spooled entries), the rootfs diff's tree and each volume's;
    close() drops the spools. plan() makes one; write_members() (or a
    stream's phases, runc_ckpt.migrate.sender) writes it.
    """

    images: EntrySpool
    rootfs: RootfsPlan | None
    volumes: dict[str, TreePlan]     # volume name -> its tree, in bind-mount order
    staged: tarstage.Listing | None = None  # the rootfs diff GNU tar writes (then rootfs is None)

    @property
    def total(self) -> int:
        return (sum(e.size for e in self.images) + (self.rootfs.tree.size if self.rootfs else 0)
                + sum(v.size for v in self.volumes.values()))

    def close(self) -> None:
        """Drop the spooled entries (temp files, unlinked already)."""
        self.images.close()
        for tree in ([self.rootfs.tree] if self.rootfs else []) + list(self.volumes.values()):
            if isinstance(tree.entries, EntrySpool):     # a list (a few entries made by hand) holds no spool
                tree.entries.close()


def plan(req: ExportRequest, spool_dir: str | None = None, stage: bool = False) -> Plan:
    """Stat every tree before the temp file exists: a missing volume fails early, and the display has a total.

    The planned entries spool to spool_dir (an export passes the archive's directory: it has room for
    the archive anyway; None: $TMPDIR, e.g. for a stream). With stage (a zstd archive without digests),
    the rootfs diff is only listed, for GNU tar (archive.tarstage), where the walk can render it and
    the tree is big enough to be worth tar's start.
    """
    images = Scanner(spool_dir=spool_dir)
    if req.previous_dir is not None:    # the pre-dump first, as an archive of a chain lays it out
        images.entries.append(Entry(layout.PRE_CHECKPOINT_DIR, DIR, os.stat(req.previous_dir).st_mode))
        images.walk(req.previous_dir, prefix=layout.PRE_CHECKPOINT_DIR + "/")
    images.walk(req.image_dir, prefix=req.image_member + "/")
    volumes: dict[str, TreePlan] = {}
    if req.include_volumes:
        for bm in volumes_mod.bind_mounts(req.spec, req.volume_roots, req.extra_volumes):
            if bm.volume is None or bm.volume in volumes:
                continue
            if not os.path.isdir(bm.source):
                raise RuncCkptError(f"volume {bm.volume}: data directory {bm.source} does not exist")
            scan = Scanner(spool_dir=spool_dir)
            scan.walk(bm.source)
            volumes[bm.volume] = scan.plan()
    if not req.include_rootfs:
        return Plan(images.entries, None, volumes)
    source = req.rootfs_source or diff.locate(req.rootfs)
    listing = tarstage.list_tree(source) if stage and tarstage.tar_binary() else None
    if listing is not None and listing.walked >= tarstage.MIN_ENTRIES:
        return Plan(images.entries, None, volumes, listing)
    return Plan(images.entries, plan_rootfs(source, spool_dir=spool_dir), volumes)


def add_images(tw: TarWriter, req: ExportRequest, entries: EntrySpool, mtime: int) -> None:
    """Write checkpoint/ (or pre-checkpoint/, req.image_member): every image file of a plan's
    images; CRIU's `parent` link stays a symlink, pointing at the sibling pre-checkpoint/ (or, in a stream
    with several memory pre-copy rounds, at the last round's pre-checkpoint.N/: req.parent_member)."""
    tw.add_entry(Entry(req.image_member, DIR, os.stat(req.image_dir).st_mode, mtime=mtime))
    for e in entries:                 # names (and hardlink targets) already carry the prefix
        if e.kind == SYM and e.name == f"{req.image_member}/parent":
            # Our state dir names parents pre-checkpoint.N; in an archive the pre-dump is
            # always the sibling pre-checkpoint/ (podman's layout, what every reader expects).
            e.linkname = f"../{req.parent_member}"
        if e.kind == REG:
            tw.add_file(e.name, e.source)  # type: ignore[arg-type]  # the scanner sets source on every REG
        else:
            tw.add_entry(e)


class Frames(Record):
    """Where a spliced member goes: through the compressor `out` as frames of its own, into the archive file.

    tar's frame streams into the file behind a slot reserved for the member's header, which is written into
    it (pwrite) once tar is done and the size known: a zstd frame of exactly HEADER_SLOT bytes, and in a
    sealed archive that frame sealed as a record of its own, whose number was kept with the slot
    (trust.seal.SealWriter.reserve). A plan is staged only without digests, so no hash sees the file's bytes
    in order.
    """

    out: BinaryIO
    sink: compression.Sink              # what `out` writes into: the sealer, or the file's writer
    file: BinaryIO                      # the archive's temp file
    spool_dir: str                      # tar's scratch files (archive.tarstage)
    sealer: seal.SealWriter | None = None


# Bytes reserved for the spliced member's header frame: a ustar or PAX header compresses to far less,
# and a skippable frame fills the rest (compression.frame_of_size).
HEADER_SLOT = 4096


def write_members(tw: TarWriter, req: ExportRequest, plan: Plan, now: float,
                  frames: Frames | None = None) -> tuple[JSONObject, list[str]]:
    """Write all members but the manifest, in podman's order, to tw (a file's or a stream's tar);
    returns (the manifest's "rootfs" entry, the volumes archived) for add_manifest().

    A staged plan needs frames: where tar's frames and the header go (see Frames)."""
    mtime = int(now)
    add_images(tw, req, plan.images, mtime)
    if req.parent is not None:
        tw.add_bytes(layout.PARENT, req.parent, mtime=mtime)
    tw.add_bytes(layout.SPEC_DUMP, json_member(req.spec), mtime=mtime)
    tw.add_bytes(layout.CONFIG_DUMP, json_member(req.config_dump), mtime=mtime)
    tw.add_bytes(layout.NETWORK_STATUS, b"null", mtime=mtime)
    stats = os.path.join(req.work_dir, layout.STATS_DUMP)
    if os.path.isfile(stats):
        tw.add_file(layout.STATS_DUMP, stats)
    dump_log = os.path.join(req.work_dir, layout.DUMP_LOG)
    if os.path.isfile(dump_log):      # kept so that `inspect --log` can show why a restore failed
        tw.add_file(layout.DUMP_LOG, dump_log)

    rootfs_info: JSONObject = {"kind": diff.NONE, "root_mode": None}
    if plan.rootfs is not None:
        tw.add_tree(layout.ROOTFS_DIFF, plan.rootfs.tree, mtime)
        tw.add_bytes(layout.DELETED_FILES, json_member(plan.rootfs.deleted), mtime=mtime)
        rootfs_info = {"kind": plan.rootfs.kind, "root_mode": plan.rootfs.root_mode}
    elif plan.staged is not None:
        if frames is None:
            raise RuncCkptError("internal error: a rootfs diff for GNU tar, but nowhere to splice it")
        _add_staged(tw, req, plan.staged, frames, mtime)
        tw.add_bytes(layout.DELETED_FILES, json_member(plan.staged.deleted), mtime=mtime)
        rootfs_info = {"kind": plan.staged.kind, "root_mode": plan.staged.root_mode}
    elif req.rootfs_source is not None:
        rootfs_info["root_mode"] = req.rootfs_source.root_mode
    elif req.rootfs and os.path.isdir(req.rootfs):
        rootfs_info["root_mode"] = os.stat(req.rootfs).st_mode & 0o7777

    if plan.volumes:
        tw.add_entry(Entry(layout.VOLUMES_DIR, DIR, 0o700, mtime=mtime))
    for name, tree in plan.volumes.items():
        tw.add_tree(layout.volume_member(name), tree, mtime)
    return rootfs_info, list(plan.volumes)


def _add_staged(tw: TarWriter, req: ExportRequest, listing: tarstage.Listing, frames: Frames, mtime: int) -> None:
    """rootfs-diff.tar by GNU tar, as zstd frames of its own: see Frames."""
    tar = tarstage.tar_binary()
    if tar is None:
        raise RuncCkptError("GNU tar is gone from this host since the export began")

    def splice(header: Callable[[int], bytes]) -> MemberDigest:
        out, sealer = frames.out, frames.sealer
        compression.end_frame(out)
        frames.sink.flush()
        fd = frames.file.fileno()
        slot = os.lseek(fd, 0, os.SEEK_CUR)
        if sealer is not None:
            record = sealer.reserve(HEADER_SLOT)
        else:
            frames.sink.write(bytes(HEADER_SLOT))
        done = tarstage.run(tar, listing, out, frames.spool_dir)
        compression.end_frame(out)
        head = compression.frame_of_size(header(done.size), HEADER_SLOT, req.level)
        if sealer is not None:
            head = sealer.fill(record, head)
        if os.pwrite(fd, head, slot) != len(head):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        for line in done.warnings:
            tw.on_change(line)
        return MemberDigest(done.size, done.sha256)

    tw.add_spliced(layout.ROOTFS_DIFF, splice, mtime)


def add_manifest(tw: TarWriter, req: ExportRequest, rootfs_info: JSONObject, archived: list[str],
                 now: float) -> tuple[dict[str, MemberDigest], bytes]:
    """The manifest, the last member: every member written so far; returns their digests and the manifest."""
    bind_mounts = [bm.manifest_entry(bm.volume in archived)
                   for bm in volumes_mod.bind_mounts(req.spec, req.volume_roots, req.extra_volumes)]
    fields = {"created": runclog.rfc3339(now, utc=True), **req.manifest_fields,
              "rootfs": rootfs_info, "bind_mounts": bind_mounts}
    members = dict(tw.members)
    doc = manifest.build(members, **fields)
    tw.add_bytes(layout.MANIFEST, doc, mtime=int(now))
    if req.sign_key is not None:
        faults.point("sign")
        # One ECDSA signature over the manifest, which holds every member's SHA-256 hashed as it was written.
        tw.add_bytes(layout.MANIFEST_SIG, signature.sign(doc, req.sign_key), mtime=int(now))
    return members, doc


class _EarlyWriteback:
    """The temp file, flushed to disk by a helper thread while the archive is still being written.

    The final fsync() is required for atomicity, but alone it would make us
    wait at the end for the whole archive to reach the disk. A thread that
    calls fdatasync() every STEP written overlaps that I/O with the
    compression (fdatasync releases the GIL). Its errors are ignored: the
    final fsync() reports them. close() must run before the file is closed.
    The thread starts with the first STEP written: an archive smaller than that
    (a tiny checkpoint's) has nothing to overlap and pays for no thread.

    STEP is one zstd job's output at most (8 MiB), so the final fsync() waits
    for ~7 ms of this disk's writes, not for all of an archive under 64 MiB
    (the step it was): a 65 MB export of 50k x 4 KiB files took a median
    1.06 s instead of 1.13 s (16 interleaved pairs, 12 faster); a 1 GiB
    export measured the same either way (1.437 s, 8 pairs).
    """

    STEP = 8 << 20

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._fd = raw.fileno()
        self._written = 0
        self._kicked = 0
        self._kick = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while True:
            self._kick.wait()
            self._kick.clear()
            if self._closing:
                return
            with contextlib.suppress(OSError):
                os.fdatasync(self._fd)

    def write(self, data: bytes) -> int:
        """Write all of `data`: a raw file may take only part (a nearly full disk), and nobody above checks."""
        view = memoryview(data)
        while view:
            n = self._raw.write(view)
            if not n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            view = view[n:]
        n = len(data)
        self._written += n
        if self._written - self._kicked >= self.STEP:
            self._kicked = self._written
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="runc-ckpt-writeback", daemon=True)
                self._thread.start()
            self._kick.set()
        return n

    def flush(self) -> None:
        self._raw.flush()

    def close(self) -> None:
        if self._thread is not None:
            self._closing = True
            self._kick.set()
            self._thread.join()


class HashingWriter:
    """A writer that hashes (and counts) what passes through it: an image layer needs both
    digests, and hashing on the way costs one pass less than reading the file back."""

    def __init__(self, raw: compression.Sink) -> None:
        self._raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


def write_archive(req: ExportRequest) -> ExportResult:
    """Write req.archive; on any failure raise RuncCkptError and leave no partial file."""
    target = _check_request(req)
    directory = os.path.dirname(target)
    for stale in atomicfile.sweep(directory):
        if req.flags is not None:
            runclog.debug(req.flags, f"export: removed {stale}, left by a killed export")
    warnings: list[str] = []
    ino = -1
    planned: Plan | None = None
    with signals.deferred(interrupt=True) as deferral:
        try:
            shown = Progress.create(req.flags, "export") if req.flags else NullProgress()
            # GNU tar's rootfs diff has no size before it is written: a display's total needs the stat pre-pass.
            planned = plan(req, directory, stage=req.compress == "zstd" and not req.digests and not shown.watched)
            shown.total = planned.total
            # Unbuffered: the compressors hand over big pieces already, and after an
            # error nothing is left in a buffer to be flushed into the temp file.
            with atomicfile.writing(target, 0o600, guard=deferral.critical) as raw:
                ino = os.fstat(raw.fileno()).st_ino
                with contextlib.closing(_EarlyWriteback(raw)) as synced, shown:
                    file_hash = HashingWriter(synced) if req.digests else None
                    # Sealed: the compressed stream is encrypted as it is written, never on disk in the clear.
                    sealer = seal.SealWriter(file_hash or synced, req.seal_for) if req.seal_for else None
                    sink = sealer or file_hash or synced
                    out = compression.compressing_writer(sink, req.compress, req.level, req.threads,
                                                         None if planned.staged else planned.total)
                    tar_hash = HashingWriter(out) if req.digests else None
                    # TarWriter types its sink BinaryIO; HashingWriter has the write and flush it uses.
                    tw = TarWriter(tar_hash or out, on_change=warnings.append, progress=shown)  # type: ignore[arg-type]
                    now = time.time()
                    frames = Frames(out, sink, raw, directory, sealer)
                    rootfs_info, archived = write_members(tw, req, planned, now, frames)
                    faults.point("export-write")
                    members, manifest_doc = add_manifest(tw, req, rootfs_info, archived, now)
                    tw.close()
                    out.close()
                    if sealer is not None:
                        sealer.close()
                size = os.fstat(raw.fileno()).st_size
                faults.point("rename")
        except signals.Interrupted as e:
            if _is_inode(target, ino):
                raise RuncCkptError(f"export to {target} interrupted by {e.signame} after the archive was "
                                    f"complete: {target} is written") from None
            raise RuncCkptError(f"export to {target} interrupted by {e.signame}: no archive written") from None
        except RuncCkptError:
            raise
        except OSError as e:
            where = f" ({e.filename})" if e.filename else ""
            raise RuncCkptError(f"writing archive {target} failed: {e.strerror or e}{where}") from None
        except Exception as e:  # noqa: BLE001  # e.g. a compressor error: still one line, still no partial file
            raise RuncCkptError(f"writing archive {target} failed: {e}") from None
        finally:
            if planned is not None:
                planned.close()
    return ExportResult(target, size, members, rootfs_info["kind"], archived, warnings,
                        file_hash.sha.hexdigest() if file_hash else None,
                        tar_hash.sha.hexdigest() if tar_hash else None,
                        hashlib.sha256(manifest_doc).hexdigest() if req.digests else None)


def _is_inode(path: str, ino: int) -> bool:
    try:
        return os.stat(path).st_ino == ino
    except OSError:
        return False
