"""An incremental CRIU image from two full dumps: pages that did not change point into the parent.

Real pre-dump needs the kernel's soft-dirty bit, which many hosts lack
(criu#1859). Two full dumps and a content comparison give the same result:
given a parent dump P0 and a later full dump P1 of the same container, the
builder writes P1' whose pagemaps mark every page with the same content at
the same address (same pagemap image: same pid, or same shmem id) as being in
the parent (PE_PARENT), whose pages-*.img hold only the changed pages, and
whose `parent` symlink (relative, as CRIU's --prev-images-dir leaves it)
leads to P0. That is exactly the shape of a dump on top of a pre-dump, so
plain `runc restore`/CRIU restores it (criu/pagemap.c read_parent_page)
and crit reads it.

Pages are compared by their xxh3-128 digests, so the parent is read once
and kept as 16 bytes a page (`index_parent`): a sender can hash P0 while it
streams it and drop it. Both dumps are untrusted: pagemaps that overlap,
go backwards, list more pages than the pages file holds, or carry unknown
flags are refused with one error before anything is written. All pages
move through one fixed buffer, so memory does not grow with the dump. The
result appears whole (a temp directory renamed into place) or not at all.

A migration's freeze cannot wait for a second read of P1: `PageHasher`
hashes the pages files while CRIU writes them, and the build then reads
only the pages that changed. CRIU writes each pages-<id>.img front to
back and never rewrites it (criu/page-xfer.c appends every batch), and the
kernel extends a file's size only after the data below it is in place, so
a whole page below the size is final. The hasher keeps each file open and
its digests are used only for the same file (device and inode) the build
opens, and only up to the length it hashed; the rest is read as before.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import itertools
import os
import shutil
import stat
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import xxhash

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.record import Record
from runc_ckpt.runtime import atomicfile, safe_remove
from runc_ckpt.runtime.criu import PARENT_LINK, images

# criu/include/pagemap.h
PE_PARENT = 1 << 0
PE_LAZY = 1 << 1
PE_PRESENT = 1 << 2
PE_KNOWN = PE_PARENT | PE_LAZY | PE_PRESENT

PAGE = os.sysconf("SC_PAGE_SIZE")   # CRIU's PAGE_SIZE: dumps restore on the architecture that made them
DIGEST = 16                         # xxh3-128
CHUNK_PAGES = 256                   # pages read and hashed at a time: the builder's fixed buffer
PAGEMAP_MAGIC = "PAGEMAP"
MAX_PAGEMAP_BYTES = 64 << 20        # ~5M entries; a real pagemap is one entry per dumped range
VADDR_END = 1 << 64
MAX_CHAIN = 64                      # parent links index_parent follows (archive.chain bounds its chains lower)


def _pagemap_name(name: str) -> bool:
    """pagemap-<pid>.img and pagemap-shmem-<id>.img (criu/image-desc.c)."""
    return name.startswith("pagemap-") and name.endswith(".img")


def _pages_name(pages_id: int) -> str:
    return f"pages-{pages_id}.img"


class Entry(Record):
    """One pagemap entry, with CRIU's compatibility rules applied (pagemap.c init_compat_pagemap_entry)."""

    vaddr: int
    nr_pages: int
    flags: int

    @property
    def end(self) -> int:
        return self.vaddr + self.nr_pages * PAGE

    @property
    def present(self) -> bool:
        return bool(self.flags & PE_PRESENT)


class Pagemap(Record):
    pages_id: int
    entries: list[Entry]

    def present_pages(self) -> int:
        return sum(e.nr_pages for e in self.entries if e.present)


class PagemapDigests:
    """The digests of one parent pagemap's pages, by present range, sorted by address (filled by _index)."""

    __slots__ = ("digests", "ends", "firsts", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []      # vaddr of each present range
        self.ends: list[int] = []
        self.firsts: list[int] = []      # index of its first page in digests
        self.digests = bytearray()

    def covered(self, vaddr: int, end: int) -> Iterator[tuple[int, int, int]]:
        """(start, stop, first digest index) of each present parent range overlapping [vaddr, end)."""
        i = max(bisect.bisect_right(self.starts, vaddr) - 1, 0)
        while i < len(self.starts) and self.starts[i] < end:
            lo, hi = max(self.starts[i], vaddr), min(self.ends[i], end)
            if lo < hi:
                yield lo, hi, self.firsts[i] + (lo - self.starts[i]) // PAGE
            i += 1


class ParentIndex(Record):
    """What the builder needs of a parent dump: its path and the digests of its pages, per pagemap image."""

    path: str
    pagemaps: dict[str, PagemapDigests]


class Result(Record):
    """What one build did: pages in the later dump, and how many of them had to be kept."""

    pages: int
    kept: int
    bytes_read: int         # of pages read by the build (not those hashed while the dump was written)

    @property
    def in_parent(self) -> int:
        return self.pages - self.kept


def _bad(where: str, why: str) -> RuncCkptError:
    return RuncCkptError(f"CRIU image {where}: {why}: not an image runc-ckpt can build on")


def _int(entry: dict[str, Any], key: str, where: str) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(where, f"{key} is {value!r}")
    return value


def _entry(raw: dict[str, Any], where: str) -> Entry:
    vaddr = _int(raw, "vaddr", where)
    if vaddr is None:
        raise _bad(where, "a pagemap entry without vaddr")
    nr = _int(raw, "nr_pages", where)
    if nr is None:
        nr = _int(raw, "compat_nr_pages", where)
    flags = _int(raw, "flags", where)
    if flags is None:
        flags = PE_PARENT if raw.get("in_parent") is True else PE_PRESENT
    if not nr or vaddr % PAGE or vaddr + nr * PAGE > VADDR_END:
        raise _bad(where, f"a pagemap entry of {nr} pages at {vaddr:#x}: empty, unaligned or past the address space")
    if flags & ~PE_KNOWN or (flags & PE_PARENT and flags & PE_PRESENT):
        raise _bad(where, f"pagemap flags {flags:#x} at {vaddr:#x}")
    return Entry(vaddr, nr, flags)


def read_pagemap(directory: str, name: str) -> Pagemap:
    """One pagemap image, checked: sorted, not overlapping, no more present pages than its pages file holds."""
    where = os.path.join(directory, name)
    try:
        with open(where, "rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_PAGEMAP_BYTES:
                raise _bad(where, f"larger than {MAX_PAGEMAP_BYTES >> 20} MiB")
            magic, raw = images.load_image(f, where)
    except images.ImageError as e:
        raise RuncCkptError(str(e)) from None
    except OSError as e:
        raise _bad(where, e.strerror or str(e)) from None
    if magic != PAGEMAP_MAGIC or not raw:
        raise _bad(where, f"magic {magic}, not a pagemap")
    pages_id = _int(raw[0], "pages_id", where)
    if pages_id is None or pages_id >= 1 << 32:
        raise _bad(where, "no pagemap head")
    entries = [_entry(r, where) for r in raw[1:]]
    for before, after in itertools.pairwise(entries):
        if after.vaddr < before.end:
            raise _bad(where, f"pagemap entries overlap or go backwards at {after.vaddr:#x}")
    pagemap = Pagemap(pages_id, entries)
    pages = os.path.join(directory, _pages_name(pages_id))
    try:
        size = os.stat(pages, follow_symlinks=False).st_size if pagemap.present_pages() else 0
    except OSError as e:
        raise _bad(pages, e.strerror or str(e)) from None
    if pagemap.present_pages() * PAGE > size:
        raise _bad(where, f"lists {pagemap.present_pages()} pages, {os.path.basename(pages)} holds {size // PAGE}")
    return pagemap


def _dump_files(directory: str) -> dict[str, os.stat_result]:
    """The regular files of a dump directory; anything else in it is refused."""
    try:
        names = os.listdir(directory)
    except OSError as e:
        raise _bad(directory, e.strerror or str(e)) from None
    files: dict[str, os.stat_result] = {}
    for name in names:
        try:
            st = os.stat(os.path.join(directory, name), follow_symlinks=False)
        except OSError as e:
            raise _bad(directory, f"{name}: {e.strerror or e}") from None
        if name == PARENT_LINK and stat.S_ISLNK(st.st_mode):
            continue
        if not stat.S_ISREG(st.st_mode):
            raise _bad(directory, f"{name} is not a regular file")
        files[name] = st
    if "inventory.img" not in files:
        raise _bad(directory, "no inventory.img: not a CRIU dump")
    return files


def _pagemaps(directory: str, files: dict[str, os.stat_result]) -> dict[str, Pagemap]:
    maps = {name: read_pagemap(directory, name) for name in sorted(files) if _pagemap_name(name)}
    ids = [m.pages_id for m in maps.values()]
    if len(set(ids)) != len(ids):
        raise _bad(directory, "two pagemaps share one pages file")
    return maps


def _read_exact(f: io.BufferedReader, view: memoryview, where: str) -> None:
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            raise _bad(where, "shorter than its pagemap says (changed while read?)")
        got += n


def _chunk_spans(entry: Entry) -> Iterator[tuple[int, int]]:
    """(vaddr, pages) of an entry, CHUNK_PAGES at a time: what one buffer holds."""
    vaddr = entry.vaddr
    while vaddr < entry.end:
        n = min(CHUNK_PAGES, (entry.end - vaddr) // PAGE)
        yield vaddr, n
        vaddr += n * PAGE


def _chunks(f: io.BufferedReader, entry: Entry, buf: memoryview, where: str) -> Iterator[tuple[int, memoryview]]:
    """(vaddr, pages) of a present entry, CHUNK_PAGES at a time, read in order from its pages file."""
    for vaddr, n in _chunk_spans(entry):
        view = buf[:n * PAGE]
        _read_exact(f, view, where)
        yield vaddr, view


class Hashed(Record):
    """The digests of a pages file's first len(digests) // DIGEST pages, and which file it was."""

    identity: tuple[int, int]         # st_dev, st_ino
    digests: bytes


class PageHasher:
    """Hash a dump's pages files while CRIU writes them (see the module docstring), in one thread.

    finish() after the dump: one last pass over what was written since, then the digests by file name.
    close() on any other path: the thread stops, nothing is returned. Any error (the directory not made
    yet, a file gone) only leaves a file unhashed: the build reads what is not covered.
    """

    POLL = 0.005                      # seconds between passes while CRIU writes nothing new

    def __init__(self, directory: str) -> None:
        self._dir = directory
        self._stop = threading.Event()
        self._files: dict[str, tuple[int, tuple[int, int], bytearray]] = {}   # name -> fd, identity, digests
        self._thread = threading.Thread(target=self._run, name="page-hasher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = memoryview(bytearray(CHUNK_PAGES * PAGE))
        while not self._stop.is_set():
            if not self._pass(buf):
                self._stop.wait(self.POLL)

    def _pass(self, buf: memoryview) -> bool:
        """Hash every whole page the pages files have grown by; whether any had."""
        grew = False
        try:
            names = [n for n in os.listdir(self._dir) if n.startswith("pages-") and n.endswith(".img")]
        except OSError:
            return False
        for name in names:
            try:
                grew = self._follow(name, buf) or grew
            except OSError:
                self._drop(name)
        return grew

    def _follow(self, name: str, buf: memoryview) -> bool:
        if name not in self._files:
            fd = os.open(os.path.join(self._dir, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            st = os.fstat(fd)
            self._files[name] = (fd, (st.st_dev, st.st_ino), bytearray())
        fd, _, digests = self._files[name]
        if fd < 0:
            return False
        done = len(digests) // DIGEST * PAGE
        size = os.fstat(fd).st_size // PAGE * PAGE
        if size < done:               # not the append-only file it should be: never trusted again
            digests.clear()
            raise OSError("pages file shrank")
        grew = size > done
        while done < size:
            n = os.preadv(fd, [buf[:min(len(buf), size - done)]], done)
            if n < PAGE:
                break
            n -= n % PAGE
            digests += _digest(buf[:n])
            done += n
        return grew

    def _drop(self, name: str) -> None:
        entry = self._files.pop(name, None)
        if entry is not None:
            os.close(entry[0])
        self._files[name] = (-1, (-1, -1), bytearray())   # a placeholder: not followed again

    def _end(self) -> None:
        self._stop.set()
        self._thread.join()

    def finish(self) -> dict[str, Hashed]:
        """After the dump: hash what is left, stop, and hand over the digests."""
        self._end()
        self._pass(memoryview(bytearray(CHUNK_PAGES * PAGE)))
        done = {name: Hashed(identity, bytes(digests)) for name, (fd, identity, digests) in self._files.items()
                if fd >= 0}
        self.close()
        return done

    def close(self) -> None:
        self._end()
        for fd, _, _ in self._files.values():
            if fd >= 0:
                os.close(fd)
        self._files.clear()


def _digest(view: memoryview) -> bytes:
    return b"".join([xxhash.xxh3_128_digest(view[o:o + PAGE]) for o in range(0, len(view), PAGE)])


def index_parent(parent: str) -> ParentIndex:
    """Hash every page the parent dump holds, as CRIU's restore would read it.

    Its own pages, and those its PE_PARENT entries find through its own `parent` link (a chain of
    incremental images: a periodic checkpoint on top of the last one must match the pages the last
    one left in its parents, or it would store them again); without a link they are never matched.
    """
    return ParentIndex(os.path.realpath(parent), _index(parent, MAX_CHAIN))


def index_over(parent: ParentIndex, directory: str) -> ParentIndex:
    """The index of `directory`, an image build_from_index wrote on top of `parent`, without reading the parent.

    Its PE_PARENT pages' digests come from `parent`; only the pages it holds itself (the changed ones) are
    read: a migration's next pre-copy round is compared with all the target holds, after P0 was deleted.
    """
    return ParentIndex(os.path.realpath(directory), _index(directory, MAX_CHAIN, parent.pagemaps))


def _index(directory: str, links_left: int, below: dict[str, PagemapDigests] | None = None) -> dict[str, PagemapDigests]:
    """below: the parent's digests when already known, else read through the `parent` link when needed."""
    files = _dump_files(directory)
    link = os.path.join(directory, PARENT_LINK)
    buf = memoryview(bytearray(CHUNK_PAGES * PAGE))
    index: dict[str, PagemapDigests] = {}
    for name, pagemap in _pagemaps(directory, files).items():
        digests = PagemapDigests()
        with contextlib.ExitStack() as stack:
            where = os.path.join(directory, _pages_name(pagemap.pages_id))
            f = stack.enter_context(open(where, "rb")) if pagemap.present_pages() else None
            for e in pagemap.entries:
                if e.present:
                    assert f is not None
                    digests.starts.append(e.vaddr)
                    digests.ends.append(e.end)
                    digests.firsts.append(len(digests.digests) // DIGEST)
                    for _, view in _chunks(f, e, buf, where):
                        digests.digests += _digest(view)
                elif e.flags & PE_PARENT and (below is not None or os.path.lexists(link)):
                    if below is None:
                        if not links_left:
                            raise _bad(directory, f"a chain of more than {MAX_CHAIN} parent images")
                        below = _index(link, links_left - 1)
                    theirs = below.get(name) or PagemapDigests()
                    for lo, hi, first in theirs.covered(e.vaddr, e.end):
                        digests.starts.append(lo)
                        digests.ends.append(hi)
                        digests.firsts.append(len(digests.digests) // DIGEST)
                        digests.digests += theirs.digests[first * DIGEST:(first + (hi - lo) // PAGE) * DIGEST]
        index[name] = digests
    return index


def _same(digests: PagemapDigests | None, vaddr: int, current: bytes) -> list[bool]:
    """Per page of a chunk at vaddr (current: its digests): does the parent hold the same content there?"""
    n = len(current) // DIGEST
    same = [False] * n
    if digests is None:
        return same
    for lo, hi, first in digests.covered(vaddr, vaddr + n * PAGE):
        i, k = (lo - vaddr) // PAGE, (hi - lo) // PAGE
        theirs = digests.digests[first * DIGEST:(first + k) * DIGEST]
        if current[i * DIGEST:(i + k) * DIGEST] == theirs:
            same[i:i + k] = [True] * k
            continue
        for j in range(k):
            same[i + j] = current[(i + j) * DIGEST:(i + j + 1) * DIGEST] == theirs[j * DIGEST:(j + 1) * DIGEST]
    return same


def _add_run(out: list[Entry], vaddr: int, nr: int, flags: int) -> None:
    """Append a run of pages to a pagemap being written, merging it into the last entry when it continues it."""
    last = out[-1] if out else None
    if last is not None and last.flags == flags and last.end == vaddr:
        out[-1] = Entry(last.vaddr, last.nr_pages + nr, flags)
    else:
        out.append(Entry(vaddr, nr, flags))


def _hashed_for(src: io.BufferedReader, hashed: Hashed | None) -> bytes:
    """The digests hashed while the dump was written, if they are of this very file; else none."""
    if hashed is None:
        return b""
    st = os.fstat(src.fileno())
    return hashed.digests if (st.st_dev, st.st_ino) == hashed.identity else b""


def _build_pagemap(dump: str, name: str, pagemap: Pagemap, digests: PagemapDigests | None,
                   staging: str, buf: memoryview, hashed: Hashed | None = None) -> Result:
    """Write one pagemap and its pages file into staging; returns the pages seen and kept.

    Pages `hashed` covers are not read unless they changed; the others are read and hashed here.
    """
    pages_in = os.path.join(dump, _pages_name(pagemap.pages_id))
    entries: list[Entry] = []
    pages = kept = read = 0
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open(pages_in, "rb")) if pagemap.present_pages() else None
        dst = stack.enter_context(open(os.path.join(staging, _pages_name(pagemap.pages_id)), "xb"))
        known = _hashed_for(src, hashed) if src is not None else b""
        for e in pagemap.entries:
            if not e.present:
                entries.append(e)
                continue
            assert src is not None
            out: list[Entry] = []
            for vaddr, n in _chunk_spans(e):
                at = pages + n
                if at * DIGEST <= len(known):
                    current, view = known[pages * DIGEST:at * DIGEST], None
                else:
                    view = buf[:n * PAGE]
                    src.seek(pages * PAGE)
                    _read_exact(src, view, pages_in)
                    current, read = _digest(view), read + n
                i = 0
                for in_parent, group in itertools.groupby(_same(digests, vaddr, current)):
                    k = len(list(group))
                    _add_run(out, vaddr + i * PAGE, k, PE_PARENT if in_parent else e.flags)
                    if not in_parent:
                        if view is None:
                            src.seek((pages + i) * PAGE)
                            _read_exact(src, buf[:k * PAGE], pages_in)
                            dst.write(buf[:k * PAGE])
                        else:
                            dst.write(view[i * PAGE:(i + k) * PAGE])
                        kept += k
                    i += k
                pages += i
            entries.extend(out)
    with open(os.path.join(staging, name), "xb") as f:
        images.dump_image(PAGEMAP_MAGIC, [{"pages_id": pagemap.pages_id}] + [
            {"vaddr": e.vaddr, "compat_nr_pages": 0, "flags": e.flags, "nr_pages": e.nr_pages} for e in entries], f)
    return Result(pages, kept, read * PAGE)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def build_from_index(parent: ParentIndex, dump: str, out: str, hashed: Mapping[str, Hashed] | None = None) -> Result:
    """Write `out` (which must not exist) from the full dump `dump`, on top of the indexed parent.

    hashed: PageHasher.finish()'s digests of the dump's pages files, so that what did not change is not read.
    """
    files = _dump_files(dump)
    if PARENT_LINK in files or os.path.lexists(os.path.join(dump, PARENT_LINK)):
        raise _bad(dump, "it has a parent itself: build from a full dump")
    pagemaps = _pagemaps(dump, files)
    for name, pagemap in pagemaps.items():
        if any(e.flags & PE_PARENT for e in pagemap.entries):
            raise _bad(os.path.join(dump, name), "pages in a parent: build from a full dump")
    out = os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(out))), os.path.basename(out))
    if os.path.lexists(out):
        raise RuncCkptError(f"{out} already exists: the incremental image needs a new directory")
    rewritten = {_pages_name(m.pages_id) for m in pagemaps.values()} | set(pagemaps)
    fd, staging = atomicfile.locked_dir(os.path.dirname(out), atomicfile.temp_prefix(os.path.basename(out)))
    try:
        buf = memoryview(bytearray(CHUNK_PAGES * PAGE))
        pages = kept = read = 0
        for name, pagemap in pagemaps.items():
            r = _build_pagemap(dump, name, pagemap, parent.pagemaps.get(name), staging, buf,
                               (hashed or {}).get(_pages_name(pagemap.pages_id)))
            pages, kept, read = pages + r.pages, kept + r.kept, read + r.bytes_read
        for name in files:
            if name not in rewritten:
                _link_or_copy(os.path.join(dump, name), os.path.join(staging, name))
        os.symlink(os.path.relpath(parent.path, out), os.path.join(staging, PARENT_LINK))
        for name in os.listdir(staging):
            if name != PARENT_LINK:
                atomicfile.fsync_path(os.path.join(staging, name))
        atomicfile.fsync_dir(staging)
        os.rename(staging, out)
        atomicfile.fsync_dir(os.path.dirname(out))
    except OSError as e:
        safe_remove.remove_tree(staging, ignore_errors=True)
        raise RuncCkptError(f"cannot write the incremental image {out}: {e.strerror or e}") from None
    except BaseException:
        safe_remove.remove_tree(staging, ignore_errors=True)
        raise
    finally:
        os.close(fd)
    return Result(pages, kept, read)


def check_parent(dump: str) -> None:
    """Refuse a dump whose `parent` does not hold every page its pagemaps say is there (PE_PARENT).

    CRIU finds out only while it restores (read_parent_page: "Missing ... in
    parent pagemap"), with the tasks half made; a restore calls this first, so
    a missing, corrupt or mismatched parent (another container's, an older
    dump's) is refused before CRIU runs. Every dump of the chain gets
    read_pagemap's checks; a parent holds a page if it carries it itself or,
    through its own PE_PARENT entry, its parent holds it (a periodic chain).
    """
    parent = os.path.join(dump, PARENT_LINK)
    if not os.path.islink(parent):
        raise _bad(dump, "no parent link")
    maps = _pagemaps(dump, _dump_files(dump))
    if not os.path.isdir(parent):
        raise _bad(dump, f"its parent {os.readlink(parent)!r} is missing")
    held = _held(parent, MAX_CHAIN)
    for name, pagemap in maps.items():
        ranges = held.get(name, [])
        starts = [lo for lo, _ in ranges]
        for e in pagemap.entries:
            if not e.flags & PE_PARENT:
                continue
            vaddr = e.vaddr
            i = bisect.bisect_right(starts, vaddr) - 1
            while vaddr < e.end and 0 <= i < len(ranges) and ranges[i][0] <= vaddr < ranges[i][1]:
                vaddr = ranges[i][1]
                i += 1
            if vaddr < e.end:
                raise _bad(os.path.join(dump, name), f"the page at {vaddr:#x} is in the parent, which does not "
                                                     f"hold it: a missing or mismatched parent")


def _held(directory: str, links_left: int) -> dict[str, list[tuple[int, int]]]:
    """Per pagemap image: the address ranges whose pages a restore from `directory` finds, sorted, merged."""
    link = os.path.join(directory, PARENT_LINK)
    below: dict[str, list[tuple[int, int]]] | None = None
    held: dict[str, list[tuple[int, int]]] = {}
    for name, pagemap in _pagemaps(directory, _dump_files(directory)).items():
        ranges: list[tuple[int, int]] = []
        for e in pagemap.entries:
            if e.present:
                ranges.append((e.vaddr, e.end))
            elif e.flags & PE_PARENT and os.path.lexists(link):
                if below is None:
                    if not links_left:
                        raise _bad(directory, f"a chain of more than {MAX_CHAIN} parent images")
                    below = _held(link, links_left - 1)
                ranges += [(max(lo, e.vaddr), min(hi, e.end)) for lo, hi in below.get(name, [])
                           if lo < e.end and hi > e.vaddr]
        ranges.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in ranges:
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        held[name] = merged
    return held


def build(parent: str, dump: str, out: str) -> Result:
    """P1' at `out` from the parent dump P0 and the later full dump P1 (see the module docstring)."""
    return build_from_index(index_parent(parent), dump, out)
