"""Read a checkpoint archive ONCE, as a stream, and stage every member where it will be used.

Podman decompresses an import twice and writes the rootfs diff to disk before
applying it. Here the compressed file is read a single time: CRIU images and
metadata go to an import directory beside the bundle; the rootfs diff is
extracted straight from the stream into a staging directory inside the
rootfs, and each volume into a staging directory inside its volume, so that
applying them later is a rename on the same filesystem. Every member is
hashed on the way for the manifest check. Nothing outside the staging
directories is written here; the caller applies only after verify().
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import tarfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import BinaryIO, Protocol

from runc_ckpt.archive import compression, layout, manifest, safeextract
from runc_ckpt.archive.hashpipe import HashPipe
from runc_ckpt.archive.manifest import MemberDigest
from runc_ckpt.archive.tarstream import TarStream, ViewReader
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import GlobalFlags
from runc_ckpt.base.jsondoc import JSONObject
from runc_ckpt.base.progress import NullProgress, Progress
from runc_ckpt.base.record import Record
from runc_ckpt.runtime.criu import PARENT_LINK
from runc_ckpt.trust import seal, sealkeys

# Members read into memory are small JSON files; a bigger one is hostile.
MAX_SMALL_MEMBER = 16 << 20
TAR_BUFSIZE = 1 << 20  # largest view handed out at once
SMALL_MEMBERS = {layout.SPEC_DUMP, layout.CONFIG_DUMP, layout.NETWORK_STATUS, layout.DELETED_FILES,
                 layout.MANIFEST, layout.MANIFEST_SIG, layout.STATS_DUMP, layout.HELLO, layout.ROOTFS_REMOVED,
                 layout.PHASE1_END, layout.PARENT}
FILE_MEMBERS = {layout.DEVSHM, layout.CTR_LOG}


class CorruptStream(RuncCkptError):
    """The compressed stream itself could not be read or decoded."""


class ByteSource(Protocol):
    """An opened stream to stage from instead of a file (restore --import -: runc_ckpt.migrate opens stdin).

    read1() hands on what has arrived, so a stream's first members are staged
    (and its hello answered) before the rest comes in.
    """

    def peek(self, n: int, /) -> bytes: ...

    def read(self, n: int = -1, /) -> bytes: ...

    def read1(self, n: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class ReadAhead(ViewReader):
    """Decompress in a background thread so decompression overlaps hashing and writing.

    zstandard and zlib release the GIL while they work, so this uses the
    second core; the bounded queue keeps memory at a few MiB. `inline`
    (a file of at most INLINE_MAX bytes): no thread, each chunk is
    decompressed when the caller needs it, with the same errors.
    """

    CHUNK = 1 << 20
    # A file at most this big (compressed) is decompressed in the caller's thread: a thread's start
    # and hand-offs cost more than the overlap gains on a tiny restore's few KiB.
    INLINE_MAX = 256 << 10

    def __init__(self, raw: BinaryIO, what: str, depth: int = 8, partial: bool = False,
                 inline: bool = False) -> None:
        self._q: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self._view = memoryview(b"")
        self._eof = False
        self._what = what
        self.delivered = 0
        self._stop = threading.Event()
        # A stream (stdin) hands on what has arrived: read1 does one read of the input, where
        # read() would wait for a whole chunk -- and a stream's hello would wait for phase 1.
        self._read = raw.read1 if partial else raw.read  # type: ignore[attr-defined]  # partial: a stream's reader has read1
        self._partial = partial
        self._thread: threading.Thread | None = None
        if not inline or partial:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _next(self) -> bytes | BaseException:
        """The next chunk (b"" at the end), or the error to raise in the reading thread."""
        try:
            return self._read(self.CHUNK)
        except OSError as e:  # handed to the reading thread
            return CorruptStream(f"reading {self._what}: {e.strerror or e}")
        except seal.SealError as e:  # says itself what is wrong with the encrypted file
            return e
        except Exception as e:  # noqa: BLE001  # zstd/gzip: corrupt or truncated data, whatever its type
            return CorruptStream(f"archive {self._what} is truncated or corrupt: {e}")

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._next()
            self._put(item)
            if not isinstance(item, bytes) or not item:
                return

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _fill(self) -> bool:
        if self._view:
            return True
        if self._eof:
            return False
        item = self._q.get() if self._thread is not None else self._next()
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        if not item:
            self._eof = True
            return False
        self._view = memoryview(item)
        return True

    def read_view(self, n: int) -> memoryview:
        """Up to n bytes, as a view of the decompressed chunk (no copy)."""
        if n <= 0 or not self._fill():
            return memoryview(b"")
        v = self._view[:n]
        self._view = self._view[len(v):]
        self.delivered += len(v)
        return v

    def close(self) -> None:
        """Stop the reader thread: unblock its put() by emptying the queue, then join.

        A stream's reader may be blocked reading input that never comes (a
        sender waiting for our reply): it is a daemon thread that stops once
        its read returns, so give up waiting for it after a second."""
        self._stop.set()
        if self._thread is None:
            return
        give_up = time.monotonic() + 1.0 if self._partial else None
        while self._thread.is_alive() and (give_up is None or time.monotonic() < give_up):
            try:
                while True:
                    self._q.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)


class CountedFile:
    """The archive file, counting the compressed bytes read on a progress display.

    The decompressor reads it in pieces of ~128 KiB (1 MiB uncompressed), so
    update() runs per piece; all reads happen in ReadAhead's thread, the only
    one that touches the display until it is joined.
    """

    def __init__(self, raw: io.BufferedReader, progress: Progress | NullProgress, sha: hashlib._Hash | None = None) -> None:
        self._raw = raw
        self._progress = progress
        self._sha = sha  # an image layer's digest, checked as the bytes go by

    def peek(self, n: int) -> bytes:
        return self._raw.peek(n)

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._progress.update(len(data))
        if self._sha is not None:
            self._sha.update(data)
        return data

    read1 = read  # an uncompressed stream is read as it arrives (ReadAhead partial)


class MemberSource(ViewReader):
    """The current member's bytes as a Source, hashed and counted for the manifest check."""

    HASH_BATCH = 256 << 10

    def __init__(self, tar: TarStream, size: int, hasher: HashPipe) -> None:
        self._tar = tar
        self._hasher = hasher
        self.size = size
        self.left = size
        self.sha = hashlib.sha256()
        self._pending: list[memoryview] = []
        self._pending_bytes = 0
        self._handed = False    # some of this member's bytes went to the HashPipe

    def read_view(self, n: int) -> memoryview:
        v = self._tar.read_view(min(n, self.left))
        if v:
            self._pending.append(v)
            self._pending_bytes += len(v)
            if self._pending_bytes >= self.HASH_BATCH:
                self._hand_over()
        self.left -= len(v)
        return v

    def _hand_over(self) -> None:
        self._hasher.update(self.sha, self._pending)
        self._handed = True
        self._pending = []
        self._pending_bytes = 0

    def hexdigest(self) -> str:
        if not self._handed:
            # Under HASH_BATCH in all: the caller would only wait for the thread to hash it, so it is
            # hashed here, without the hand-off (and no thread starts for an archive of small members).
            for view in self._pending:
                self.sha.update(view)
            self._pending = []
            self._pending_bytes = 0
            return self.sha.hexdigest()
        if self._pending:
            self._hand_over()
        return self._hasher.digest(self.sha)

    def drain(self) -> None:
        while self.left > 0:
            self.read_view(TAR_BUFSIZE)


class StagedTree(Record):
    """A tar extracted into a staging directory inside its target directory."""

    member: str
    target: safeextract.Root
    staging: safeextract.Root
    remove_staging: Callable[[], None]
    extracted: safeextract.Extracted

    def discard(self) -> None:
        self.staging.close()
        self.remove_staging()
        self.target.close()


class Targets(Record):
    """Where staged data goes; None reads and hashes without writing (inspect).

    volume_dir(name, staged) -> the volume's directory, or None to skip it.
    """

    import_dir: str | None
    rootfs: str | None
    volume_dir: Callable[[str, Staged], str | None] | None
    on_hello: Callable[[JSONObject], None] | None = None  # a stream's hello, as soon as it is read (pre-flight)
    on_phase1: Callable[[], None] | None = None     # a pre-copy stream's phase 1 is staged
    # Where trees are staged when it is on their filesystem (restore: the import dir, which the
    # container never sees); otherwise, and when None, a staging dir inside each target.
    staging_home: str | None = None
    # Called with the member dir before each CRIU image member of an encrypted archive is staged into
    # import_dir: restore makes that dir a link into tmpfs, so decrypted memory never reaches the disk.
    sealed_images: Callable[[str], None] | None = None


class Staged:
    """Everything read from one archive, staged and hashed, not yet applied (filled in as stage() reads).

    A plain slotted class, not a dataclass: the dataclasses import and generated methods are
    start-up every restore --import would pay.
    """

    __slots__ = ("checkpoint_dirs", "compression", "config_dump", "deleted", "dump_log", "files", "hello", "ignored",
                 "inventory_mtime", "manifest", "manifest_raw", "manifest_sig", "members", "network_status",
                 "parent_raw", "path", "rootfs", "sealed_for", "spec", "stats_dump", "volume_sizes", "volumes")

    def __init__(self, path: str) -> None:
        self.path = path
        self.compression: str = "none"
        self.spec: JSONObject | None = None
        self.config_dump: JSONObject | None = None
        self.network_status: object = None
        self.deleted: list[str] = []
        self.stats_dump: bytes | None = None
        self.dump_log: bytes | None = None  # CRIU's dump.log, its first MAX_SMALL_MEMBER bytes
        self.manifest_raw: bytes | None = None
        self.manifest_sig: bytes | None = None  # its signature member, checked by trust.verdict
        self.manifest: JSONObject | None = None
        self.parent_raw: bytes | None = None  # an incremental archive's parent (archive.chain)
        self.members: dict[str, MemberDigest] = {}
        self.checkpoint_dirs: set[str] = set()
        self.rootfs: StagedTree | None = None
        self.volumes: dict[str, StagedTree] = {}
        self.volume_sizes: dict[str, int] = {}
        self.files: dict[str, str] = {}  # member -> path in the import dir
        self.ignored: list[str] = []
        self.inventory_mtime: float | None = None
        self.hello: JSONObject | None = None  # a stream's first member (layout.HELLO)
        self.sealed_for: list[str] = []  # encrypted: its recipients' key fingerprints
    def discard(self) -> None:
        """Remove every staging directory this read created (not the import dir itself)."""
        if self.rootfs is not None:
            self.rootfs.discard()
            self.rootfs = None
        for tree in self.volumes.values():
            tree.discard()
        self.volumes = {}

    def has_inventory(self) -> bool:
        return f"{layout.CHECKPOINT_DIR}/{layout.INVENTORY}" in self.members

    def verify(self) -> None:
        """Refuse the archive unless its layout (and our manifest, if any) holds."""
        if self.manifest_raw is not None:
            self.manifest = manifest.parse(self.manifest_raw)
            problems = manifest.verify(self.manifest, self.members)
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise RuncCkptError(f"archive {self.path} does not match its manifest: {problems[0]}{more}")


def stage(path: str, targets: Targets, what_is_required: str = layout.CHECKPOINT_DIR,
          flags: GlobalFlags | None = None, sha256: str | None = None,
          source: ByteSource | None = None, decryption_keys: Sequence[str] = ()) -> Staged:
    """Read the archive at path once and stage it; on any error remove what was staged and raise.

    `flags` decide whether a progress display (compressed bytes of the file) is shown; None: never.
    `sha256`: the file's expected digest (an image layer's), checked once the stream is read.
    `source`: a stream the caller opened (stdin), read instead of a file and closed here; `path`
    then only names it in errors. `decryption_keys`: private key files, read only if the archive
    is encrypted (trust.seal); each record is verified before a byte of it is staged.
    """
    raw: ByteSource | io.BufferedReader
    if source is not None:
        raw = source
        size = None
    else:
        try:
            raw = open(path, "rb")  # noqa: SIM115  # closed in stage()'s finally, as a stream source is
        except OSError as e:
            raise RuncCkptError(f"cannot open archive {path}: {e.strerror}") from None
        size = os.fstat(raw.fileno()).st_size
    staged = Staged(path=path)
    shown = Progress.create(flags, "import", size) if flags else NullProgress()
    reader: ReadAhead | None = None
    hasher = HashPipe()
    try:
        file_sha = hashlib.sha256() if sha256 else None
        counted = CountedFile(raw, shown, file_sha)  # type: ignore[arg-type]  # a stream source has its peek and read too
        plain: CountedFile | seal.SealReader = counted
        if seal.is_sealed(raw.peek(len(seal.MAGIC))):
            plain = seal.SealReader(counted, sealkeys.load_privates(decryption_keys), path)
            staged.sealed_for = plain.header.fingerprints
        staged.compression = compression.detect(plain.peek(4)[:4])
        # CountedFile and SealReader have the peek and read the decompressor uses (it types its input BinaryIO).
        stream = compression.decompressing_reader(plain)  # type: ignore[arg-type]
        reader = ReadAhead(stream, path, partial=size is None,
                           inline=size is not None and size <= ReadAhead.INLINE_MAX)
        tar = TarStream(reader, f"archive {path}")
        count = 0
        try:
            for member in tar:
                count += 1
                _stage_member(tar, member, staged, targets, hasher)
        except RuncCkptError as e:
            if count == 0 and not isinstance(e, (CorruptStream, safeextract.UnsafeArchive, seal.SealError)):
                raise RuncCkptError(f"{path} is not a checkpoint archive (no tar stream inside, "
                                    f"compression: {staged.compression})") from None
            raise
        if count == 0:
            raise RuncCkptError(f"{path} is not a checkpoint archive (empty, compression: {staged.compression})")
        # A stream cut at a member boundary looks like a shorter archive (and
        # zstd reports no error for a cut frame): insist on the end marker.
        if not tar.ended:
            raise RuncCkptError(f"archive {path} is truncated (no end-of-archive marker)")
        if file_sha is not None or isinstance(plain, seal.SealReader):
            # The digest covers the whole file, and encrypted data is verified up to its last
            # record: let the decompressor run to its end, stop its thread, then read what it left
            # unread (padding after the tar).
            while reader.read_view(TAR_BUFSIZE):
                pass
            reader.close()
            while plain.read(TAR_BUFSIZE):
                pass
        if file_sha is not None and file_sha.hexdigest() != sha256:
            raise RuncCkptError(f"image layer {path} does not match its digest sha256:{sha256}")
        if what_is_required == layout.CHECKPOINT_DIR and not staged.has_inventory():
            raise RuncCkptError(f"archive {path} has no {layout.CHECKPOINT_DIR}/{layout.INVENTORY}: "
                                f"not a checkpoint archive, or an incomplete one")
        return staged
    except BaseException as e:
        staged.discard()
        if isinstance(e, RuncCkptError):
            raise
        if isinstance(e, OSError):
            where = f" ({e.filename})" if e.filename else ""
            raise RuncCkptError(f"staging archive {path}: {e.strerror or e}{where}") from None
        raise
    finally:
        hasher.close()
        if reader is not None:
            reader.close()
        raw.close()
        shown.close()


def _stage_member(tar: TarStream, m: tarfile.TarInfo, staged: Staged, targets: Targets, hasher: HashPipe) -> None:
    parts = safeextract.split_name(m.name, f"archive {staged.path}")
    name = "/".join(parts)
    if m.isdir():
        return
    if staged.sealed_for and targets.sealed_images is not None and len(parts) == 2 \
            and (parts[0] in (layout.CHECKPOINT_DIR, layout.PRE_CHECKPOINT_DIR) or _round_of(parts[0]) is not None):
        targets.sealed_images(parts[0])
    if m.issym() and len(parts) == 2 and parts[1] == PARENT_LINK and _parent_targets(parts[0]):
        # CRIU's link from a dump to its pre-dump (or a pre-copy round to the round before); the only
        # links an archive may carry, each to one of its siblings named in advance.
        allowed = _parent_targets(parts[0])
        if m.linkname.rstrip("/") not in allowed:
            raise safeextract.UnsafeArchive(f"archive {staged.path}: {name} must point to "
                                            f"{' or '.join(allowed)}, not {m.linkname!r}")
        if targets.import_dir is not None:
            d = _subdir(targets.import_dir, parts[0])
            os.symlink(m.linkname.rstrip("/"), os.path.join(d, PARENT_LINK))
        return
    if not m.isreg():
        raise safeextract.UnsafeArchive(f"archive {staged.path}: member {name!r} is not a regular file")
    if name in staged.members:
        raise safeextract.UnsafeArchive(f"archive {staged.path}: member {name!r} appears twice")
    reader = MemberSource(tar, m.size, hasher)
    if name in SMALL_MEMBERS or _is_volume_removed(parts):
        if m.size > MAX_SMALL_MEMBER:
            raise safeextract.UnsafeArchive(f"archive {staged.path}: member {name} is oversized ({m.size} bytes)")
        data = reader.read(m.size)
        if len(data) != m.size:
            raise RuncCkptError(f"archive {staged.path} is truncated in {name}")
        if parts[0] == layout.MIGRATE_DIR:
            _stream_small_member(staged, targets, name, data)
        else:
            _keep_small(staged, name, data)
    elif len(parts) == 2 and (parts[0] in (layout.CHECKPOINT_DIR, layout.PRE_CHECKPOINT_DIR)
                              or _round_of(parts[0]) is not None):
        staged.checkpoint_dirs.add(parts[0])
        if parts[1] == layout.INVENTORY:
            staged.inventory_mtime = m.mtime
        if targets.import_dir is not None:
            d = _subdir(targets.import_dir, parts[0])
            _write_file(reader, os.path.join(d, parts[1]), m.size, staged.path, name)
    elif name == layout.DUMP_LOG:
        staged.dump_log = reader.read(min(m.size, MAX_SMALL_MEMBER))
    elif name in FILE_MEMBERS:
        if targets.import_dir is not None:
            dest = os.path.join(targets.import_dir, name)
            _write_file(reader, dest, m.size, staged.path, name)
            staged.files[name] = dest
    elif name == layout.ROOTFS_DIFF:
        if targets.rootfs is not None:
            staged.rootfs = _stage_tree(reader, name, targets.rootfs, f"rootfs diff of {staged.path}",
                                        allow_devices=True, home=targets.staging_home)
    elif len(parts) == 2 and parts[0] == layout.VOLUMES_DIR and parts[1].endswith(".tar") and len(parts[1]) > 4:
        vname = parts[1][:-4]
        staged.volume_sizes[vname] = m.size
        directory = targets.volume_dir(vname, staged) if targets.volume_dir is not None else None
        if directory is not None:
            staged.volumes[vname] = _stage_tree(reader, name, directory, f"volume {vname} of {staged.path}",
                                                allow_devices=False, home=targets.staging_home)
    elif parts[0] == layout.MIGRATE_DIR and name.endswith(".tar"):
        _stream_delta_member(staged, name, reader)
    else:
        staged.ignored.append(name)
    reader.drain()
    staged.members[name] = MemberDigest(m.size, reader.hexdigest())


def _is_volume_removed(parts: tuple[str, ...]) -> bool:
    return len(parts) == 3 and parts[:2] == (layout.MIGRATE_DIR, layout.VOLUMES_DIR) and \
        parts[2].endswith(".removed.json")


# ---- the members a live-migration stream adds (runc_ckpt.migrate.sender writes them)
#
# A two-phase (pre-copy) stream carries rootfs-diff.tar and the volumes first,
# sent while the container still ran, and after the freeze only what changed:
# per tree a list of paths gone since phase 1 (removed from the staging dir)
# and a delta tar (extracted over the staging dir, replacing what it names).
# Both land in the staging dirs the phase-1 trees were extracted into, so
# nothing is applied before the manifest (the stream's last member) has
# verified every member, phase 1 included. They are part of the format: a
# stream saved to a file restores (and inspects) like any archive. What the
# receiver does on the hello and at the end of phase 1 (pre-flight, replies)
# comes in through Targets.on_hello and Targets.on_phase1.


def _member_json(staged: Staged, name: str, data: bytes) -> object:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RuncCkptError(f"archive {staged.path}: {name} is not valid JSON: {e}") from None


def _stream_small_member(staged: Staged, targets: Targets, name: str, data: bytes) -> None:
    """The hello (handed to targets.on_hello), the end of phase 1, or a list of paths removed since phase 1."""
    doc = _member_json(staged, name, data)
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
    tree = _delta_tree(staged, name)
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


def _stream_delta_member(staged: Staged, name: str, reader: MemberSource) -> None:
    """A delta tar: extracted over its tree's staging dir (a member it names replaces the staged one)."""
    tree = _delta_tree(staged, name)
    if tree is None or not reader.left:
        return
    allow_devices = name == layout.ROOTFS_DELTA
    inner = TarStream(reader, f"{tree.staging.what}: {name}")
    safeextract.extract(inner, tree.staging, tree.staging.what, allow_devices, tree.extracted)


def _delta_tree(staged: Staged, name: str) -> StagedTree | None:
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


def _keep_small(staged: Staged, name: str, data: bytes) -> None:
    if name == layout.MANIFEST:
        staged.manifest_raw = data
    elif name == layout.MANIFEST_SIG:
        staged.manifest_sig = data
    elif name == layout.STATS_DUMP:
        staged.stats_dump = data
    elif name == layout.PARENT:
        staged.parent_raw = data
    else:
        try:
            value = json.loads(data) if data.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RuncCkptError(f"archive {staged.path}: {name} is not valid JSON: {e}") from None
        if name == layout.SPEC_DUMP:
            if not isinstance(value, dict):
                raise RuncCkptError(f"archive {staged.path}: {name} is not an OCI config object")
            staged.spec = value
        elif name == layout.CONFIG_DUMP:
            staged.config_dump = value if isinstance(value, dict) else None
        elif name == layout.NETWORK_STATUS:
            staged.network_status = value
        elif name == layout.DELETED_FILES:
            if value is None:
                value = []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise RuncCkptError(f"archive {staged.path}: {name} is not a JSON array of paths")
            staged.deleted = value


def _round_of(part: str) -> int | None:
    """N of a stream's memory pre-copy round dir pre-checkpoint.N (1 <= N <= layout.PRE_COPY_ROUNDS), else None."""
    for n in range(1, layout.PRE_COPY_ROUNDS + 1):
        if part == layout.pre_copy_round(n):
            return n
    return None


def _parent_targets(part: str) -> list[str]:
    """Where the `parent` link of member dir `part` may point; []: it may carry none.

    checkpoint/ builds on pre-checkpoint/ or on a stream's last round (the importer checks it is the
    last: restore.importer._check_parent); round N on round N-1 exactly, so a chain cannot loop.
    """
    if part == layout.CHECKPOINT_DIR:
        return [f"../{layout.pre_copy_round(n)}" for n in range(layout.PRE_COPY_ROUNDS + 1)]
    n = _round_of(part)
    return [] if n is None else [f"../{layout.pre_copy_round(n - 1)}"]


def _subdir(base: str, name: str) -> str:
    d = os.path.join(base, name)
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    return d


def _write_file(reader: MemberSource, dest: str, size: int, path: str, name: str) -> None:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        safeextract.copy_data(reader, fd, size, f"archive {path}: {name}")
    finally:
        os.close(fd)


def _stage_tree(reader: MemberSource, member: str, directory: str, what: str,
                allow_devices: bool, home: str | None = None) -> StagedTree:
    target = safeextract.Root(directory, what)
    parent = safeextract.Root(home, what) if home and os.stat(home).st_dev == os.fstat(target.fd).st_dev else None
    try:
        name, remove_dir = safeextract.make_staging(target, layout.ROOTFS_STAGING_PREFIX, parent)
    except BaseException:
        target.close()
        if parent is not None:
            parent.close()
        raise

    def remove() -> None:
        remove_dir()
        if parent is not None:
            parent.close()
    try:
        staging = safeextract.Root.at(parent or target, name, what)
    except BaseException:
        remove()
        target.close()
        raise
    tree = StagedTree(member, target, staging, remove, safeextract.Extracted())
    try:
        if reader.left:
            inner = TarStream(reader, f"{what}: {member}")
            safeextract.extract(inner, staging, what, allow_devices, tree.extracted)
    except BaseException:
        tree.discard()
        raise
    return tree
