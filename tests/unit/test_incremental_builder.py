"""The incremental image builder on synthetic CRIU images written with pycriu: what it keeps, what it refuses."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pycriu.images
import pytest

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.runtime.criu import incremental
from runc_ckpt.runtime.criu.incremental import PAGE, PE_LAZY, PE_PARENT, PE_PRESENT

Pages = dict[int, bytes | None]          # vaddr -> content


def page(tag: str) -> bytes:
    return (tag.encode() * PAGE)[:PAGE]


def write_pagemap(directory: Path, name: str, pages_id: int, entries: list[dict]) -> None:
    with open(directory / name, "wb") as f:
        pycriu.images.dump({"magic": "PAGEMAP", "entries": [{"pages_id": pages_id}, *entries]}, f)


def write_dump(directory: Path, maps: dict[str, tuple[int, list[tuple[int, list[bytes | None], int]]]]) -> None:
    """A dump dir: per pagemap name, (pages_id, [(vaddr, contents, flags)]); None contents are not in the file."""
    directory.mkdir()
    (directory / "inventory.img").write_bytes(b"inventory")
    (directory / "core-1.img").write_bytes(b"core")
    for name, (pages_id, runs) in maps.items():
        entries, data = [], b""
        for vaddr, contents, flags in runs:
            entries.append({"vaddr": vaddr, "compat_nr_pages": 0, "flags": flags, "nr_pages": len(contents)})
            if flags & PE_PRESENT:
                data += b"".join(c for c in contents if c is not None)
        write_pagemap(directory, name, pages_id, entries)
        (directory / f"pages-{pages_id}.img").write_bytes(data)


def read_entries(path: Path) -> list[dict]:
    with open(path, "rb") as f:
        return pycriu.images.load(f)["entries"]


def restored(directory: Path, name: str) -> Pages:
    """What CRIU's restore reads for one pagemap image (criu/pagemap.c): own pages in order, PE_PARENT via parent."""
    raw = read_entries(directory / name)
    data = (directory / f"pages-{raw[0]['pages_id']}.img").read_bytes()
    out: Pages = {}
    off = 0
    parent: Pages | None = None
    for e in raw[1:]:
        for i in range(e["nr_pages"]):
            vaddr = e["vaddr"] + i * PAGE
            if e["flags"] & PE_PRESENT:
                out[vaddr] = data[off:off + PAGE]
                off += PAGE
            elif e["flags"] & PE_PARENT:     # None: no parent to read it from (CRIU fails when it must)
                if parent is None:
                    parent = restored(directory / "parent", name) if (directory / "parent").exists() else {}
                out[vaddr] = parent.get(vaddr)
    assert off == len(data), "pages file longer than the pagemap reads"
    return out


A, B = 0x10000, 0x400000


@pytest.fixture
def dumps(tmp_path: Path) -> tuple[Path, Path, Path]:
    p0, p1 = tmp_path / "p0", tmp_path / "p1"
    write_dump(p0, {
        "pagemap-1.img": (1, [
            (A, [page("a0"), page("a1"), page("a2"), page("a3")], PE_PRESENT),
            (B, [page("b0"), page("b1")], PE_LAZY | PE_PRESENT),          # unmapped by P1
            (B + 0x10000, [None, None], PE_PARENT),                         # P0's own parent: never matched
        ]),
        "pagemap-shmem-7.img": (2, [(0, [page("s0"), page("s1")], PE_PRESENT)]),
    })
    write_dump(p1, {
        "pagemap-1.img": (4, [
            # a1 changed, a3 moved to a new address
            (A, [page("a0"), page("A1"), page("a2")], PE_LAZY | PE_PRESENT),
            (A + 5 * PAGE, [page("a3")], PE_PRESENT),
            (B + 0x10000, [page("p?"), page("p?")], PE_PRESENT),           # P0 had them only through its parent
            (0x900000, [page("new")], PE_PRESENT),                          # a new VMA
            (0xA00000, [None, None, None], PE_LAZY),                        # lazy, not in the pages file
        ]),
        "pagemap-shmem-7.img": (5, [(0, [page("s0"), page("s1")], PE_PRESENT)]),
        "pagemap-2.img": (6, [(A, [page("a0")], PE_PRESENT)]),             # a new process: no parent pagemap
    })
    return p0, p1, tmp_path / "p1x"


def test_unchanged_pages_point_into_the_parent_and_the_rest_is_kept(dumps):
    p0, p1, out = dumps
    result = incremental.build(str(p0), str(p1), str(out))

    assert (result.pages, result.kept, result.in_parent) == (10, 6, 4)
    assert os.readlink(out / "parent") == "../p0"
    for name in ("pagemap-1.img", "pagemap-shmem-7.img", "pagemap-2.img"):
        assert restored(out, name) == restored(p1, name)
    assert [(e["vaddr"], e["nr_pages"], e["flags"]) for e in read_entries(out / "pagemap-1.img")[1:]] == [
        (A, 1, PE_PARENT), (A + PAGE, 1, PE_LAZY | PE_PRESENT), (A + 2 * PAGE, 1, PE_PARENT),
        (A + 5 * PAGE, 1, PE_PRESENT), (B + 0x10000, 2, PE_PRESENT), (0x900000, 1, PE_PRESENT),
        (0xA00000, 3, PE_LAZY)]
    assert read_entries(out / "pagemap-shmem-7.img")[1:] == [
        {"vaddr": 0, "compat_nr_pages": 0, "flags": PE_PARENT, "nr_pages": 2}]
    assert (out / "pages-4.img").read_bytes() == page("A1") + page("a3") + page("p?") * 2 + page("new")
    assert (out / "pages-5.img").read_bytes() == b""
    assert (out / "core-1.img").read_bytes() == b"core"
    assert sorted(os.listdir(out.parent)) == ["p0", "p1", "p1x"]


def test_many_pages_cross_the_fixed_buffer(tmp_path, monkeypatch):
    """Entries longer than the read buffer, a change on each side of a chunk boundary."""
    monkeypatch.setattr(incremental, "CHUNK_PAGES", 4)
    old = [page(f"{i}") for i in range(11)]
    new = list(old)
    new[3], new[4], new[10] = page("x"), page("y"), page("z")
    write_dump(tmp_path / "p0", {"pagemap-1.img": (1, [(A, old, PE_PRESENT)])})
    write_dump(tmp_path / "p1", {"pagemap-1.img": (1, [(A, new, PE_PRESENT)])})
    result = incremental.build(str(tmp_path / "p0"), str(tmp_path / "p1"), str(tmp_path / "out"))
    assert (result.pages, result.kept) == (11, 3)
    assert [(e["vaddr"], e["nr_pages"], e["flags"]) for e in read_entries(tmp_path / "out" / "pagemap-1.img")[1:]] == [
        (A, 3, PE_PARENT), (A + 3 * PAGE, 2, PE_PRESENT), (A + 5 * PAGE, 5, PE_PARENT), (A + 10 * PAGE, 1, PE_PRESENT)]
    assert restored(tmp_path / "out", "pagemap-1.img") == restored(tmp_path / "p1", "pagemap-1.img")


def _entry(vaddr: int, nr: int, flags: int = PE_PRESENT) -> dict:
    return {"vaddr": vaddr, "compat_nr_pages": 0, "flags": flags, "nr_pages": nr}


BAD_PAGEMAPS = {
    "overlap": [_entry(A, 2), _entry(A + PAGE, 1)],
    "backwards": [_entry(B, 1), _entry(A, 1)],
    "beyond-pages-file": [_entry(A, 9)],
    "unaligned": [_entry(A + 1, 1)],
    "absurd-count": [_entry(A, 1 << 60)],
    "zero-pages": [_entry(A, 0)],
    "unknown-flag": [_entry(A, 1, PE_PRESENT | 0x40)],
    "parent-and-present": [_entry(A, 1, PE_PRESENT | PE_PARENT)],
}


@pytest.mark.parametrize("side", ["parent", "dump"])
@pytest.mark.parametrize("bad", list(BAD_PAGEMAPS))
def test_bad_pagemaps_are_refused_before_anything_is_written(dumps, bad, side):
    p0, p1, out = dumps
    victim = p0 if side == "parent" else p1
    write_pagemap(victim, "pagemap-1.img", 1 if side == "parent" else 4, BAD_PAGEMAPS[bad])
    with pytest.raises(RuncCkptError, match="CRIU image"):
        incremental.build(str(p0), str(p1), str(out))
    assert sorted(os.listdir(out.parent)) == ["p0", "p1"]


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"garbage that is no image at all" * 10,
                                     pycriu.images.dumps({"magic": "INVENTORY", "entries": [
                                         {"img_version": 2, "fdinfo_per_id": True}]})])
def test_undecodable_pagemaps_are_refused(dumps, content):
    p0, p1, out = dumps
    (p1 / "pagemap-1.img").write_bytes(content)
    with pytest.raises(RuncCkptError):
        incremental.build(str(p0), str(p1), str(out))
    assert not out.exists()


def test_a_huge_pagemap_is_refused_unread(dumps, monkeypatch):
    p0, p1, out = dumps
    monkeypatch.setattr(incremental, "MAX_PAGEMAP_BYTES", 16)
    with pytest.raises(RuncCkptError, match="larger than"):
        incremental.build(str(p0), str(p1), str(out))


def test_a_dump_that_is_already_incremental_is_refused(dumps, tmp_path):
    p0, p1, out = dumps
    incremental.build(str(p0), str(p1), str(out))
    with pytest.raises(RuncCkptError, match="has a parent itself"):
        incremental.build(str(p0), str(out), str(tmp_path / "again"))
    os.unlink(out / "parent")
    with pytest.raises(RuncCkptError, match="pages in a parent"):
        incremental.build(str(p0), str(out), str(tmp_path / "again"))


def test_two_pagemaps_on_one_pages_file_are_refused(dumps):
    p0, p1, out = dumps
    write_pagemap(p1, "pagemap-2.img", 4, [_entry(A, 1)])
    with pytest.raises(RuncCkptError, match="share one pages file"):
        incremental.build(str(p0), str(p1), str(out))


@pytest.mark.parametrize("what", ["symlink", "directory", "no-inventory"])
def test_a_dump_dir_with_anything_but_files_is_refused(dumps, what):
    p0, p1, out = dumps
    if what == "symlink":
        (p1 / "files.img").symlink_to("/etc/passwd")
    elif what == "directory":
        (p1 / "sub").mkdir()
    else:
        (p1 / "inventory.img").unlink()
    with pytest.raises(RuncCkptError):
        incremental.build(str(p0), str(p1), str(out))
    assert not out.exists()


def test_an_existing_target_is_left_alone(dumps):
    p0, p1, out = dumps
    out.mkdir()
    (out / "mine").write_text("x")
    with pytest.raises(RuncCkptError, match="already exists"):
        incremental.build(str(p0), str(p1), str(out))
    assert os.listdir(out) == ["mine"]


def test_a_pages_file_that_shrinks_while_read_leaves_nothing(dumps, monkeypatch):
    """Checked, then truncated before the copy: a clear error, and the temp directory is gone."""
    p0, p1, out = dumps
    real = incremental.read_pagemap

    def shrink_after_check(directory: str, name: str):
        pagemap = real(directory, name)
        if directory == str(p1) and name == "pagemap-1.img":
            os.truncate(p1 / "pages-4.img", PAGE)
        return pagemap

    monkeypatch.setattr(incremental, "read_pagemap", shrink_after_check)
    with pytest.raises(RuncCkptError, match="shorter than its pagemap"):
        incremental.build(str(p0), str(p1), str(out))
    assert sorted(os.listdir(out.parent)) == ["p0", "p1"]


def test_a_chain_matches_the_pages_its_parents_hold(tmp_path):
    """P2 on top of P1' (incremental on P0): pages P1' left in P0 are matched too, or every link would grow."""
    p0, p1, p2 = tmp_path / "p0", tmp_path / "p1", tmp_path / "p2"
    write_dump(p0, {"pagemap-1.img": (1, [(A, [page("a0"), page("a1"), page("a2")], PE_PRESENT)])})
    write_dump(p1, {"pagemap-1.img": (1, [(A, [page("a0"), page("A1"), page("a2")], PE_PRESENT)])})
    write_dump(p2, {"pagemap-1.img": (1, [(A, [page("a0"), page("A1"), page("b2")], PE_PRESENT)])})
    incremental.build(str(p0), str(p1), str(tmp_path / "p1x"))

    result = incremental.build(str(tmp_path / "p1x"), str(p2), str(tmp_path / "p2x"))

    assert (result.pages, result.kept) == (3, 1)            # a0 lies in p0, A1 in p1x: only b2 is new
    assert restored(tmp_path / "p2x", "pagemap-1.img") == restored(p2, "pagemap-1.img")


def test_a_chain_longer_than_the_bound_is_refused(tmp_path, monkeypatch):
    p0, p1, p2 = tmp_path / "p0", tmp_path / "p1", tmp_path / "p2"
    for d, tag in ((p0, "a"), (p1, "b"), (p2, "c")):
        write_dump(d, {"pagemap-1.img": (1, [(A, [page("x"), page(tag)], PE_PRESENT)])})
    incremental.build(str(p0), str(p1), str(tmp_path / "p1x"))
    monkeypatch.setattr(incremental, "MAX_CHAIN", 0)
    with pytest.raises(RuncCkptError, match="chain of more than 0"):
        incremental.build(str(tmp_path / "p1x"), str(p2), str(tmp_path / "p2x"))


def test_the_parent_check_follows_a_chain(tmp_path):
    """A restore's parent check: pages a chain's middle link left in its own parent are held; others are not."""
    p0, p1, p2 = tmp_path / "p0", tmp_path / "p1", tmp_path / "p2"
    write_dump(p0, {"pagemap-1.img": (1, [(A, [page("a0"), page("a1"), page("a2")], PE_PRESENT)])})
    write_dump(p1, {"pagemap-1.img": (1, [(A, [page("a0"), page("A1"), page("a2")], PE_PRESENT)])})
    write_dump(p2, {"pagemap-1.img": (1, [(A, [page("a0"), page("A1"), page("b2")], PE_PRESENT)])})
    incremental.build(str(p0), str(p1), str(tmp_path / "p1x"))
    incremental.build(str(tmp_path / "p1x"), str(p2), str(tmp_path / "p2x"))

    incremental.check_parent(str(tmp_path / "p2x"))       # a0 is held by p0, through p1x's PE_PARENT entry

    # p0 replaced by a dump that lacks a0: the page p2x needs from two links down is missing
    (tmp_path / "p0").rename(tmp_path / "p0-old")
    write_dump(p0, {"pagemap-1.img": (1, [(A + PAGE, [page("a1"), page("a2")], PE_PRESENT)])})
    with pytest.raises(RuncCkptError, match=f"the page at {A:#x} is in the parent"):
        incremental.check_parent(str(tmp_path / "p2x"))


def _written_while_hashed(src: Path, dst: Path) -> dict[str, incremental.Hashed]:
    """Copy the dump src to dst the way CRIU writes one (pages files growing a page at a time, a torn page
    included) while a PageHasher follows dst; its digests once the copy is done."""
    dst.mkdir()
    hasher = incremental.PageHasher(str(dst))
    try:
        for f in sorted(src.iterdir()):
            data = f.read_bytes()
            with open(dst / f.name, "wb", buffering=0) as out:
                for at in range(0, len(data), PAGE):
                    out.write(data[at:at + PAGE // 2])
                    time.sleep(incremental.PageHasher.POLL)
                    out.write(data[at + PAGE // 2:at + PAGE])
        return hasher.finish()
    finally:
        hasher.close()


def test_pages_hashed_while_the_dump_was_written_are_not_read_again(dumps, tmp_path):
    p0, p1, out = dumps
    hashed = _written_while_hashed(p1, tmp_path / "live")
    assert hashed["pages-4.img"].digests == incremental._digest(memoryview((p1 / "pages-4.img").read_bytes()))
    plain = incremental.build(str(p0), str(p1), str(tmp_path / "plain"))
    result = incremental.build_from_index(incremental.index_parent(str(p0)), str(tmp_path / "live"), str(out), hashed)
    assert (result.pages, result.kept) == (plain.pages, plain.kept)
    assert result.bytes_read == 0 and plain.bytes_read == plain.pages * PAGE
    for name in ("pagemap-1.img", "pagemap-shmem-7.img", "pagemap-2.img", "pages-4.img", "pages-5.img"):
        assert (out / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()


def test_digests_of_another_file_of_the_same_name_are_not_trusted(dumps, tmp_path):
    """The pages file replaced after it was hashed (another inode): read and hashed again, never matched blind."""
    p0, p1, out = dumps
    hashed = _written_while_hashed(p0, tmp_path / "live")       # P0's digests under P1's names
    hashed = {"pages-4.img": incremental.Hashed(hashed["pages-1.img"].identity, hashed["pages-1.img"].digests)}
    result = incremental.build_from_index(incremental.index_parent(str(p0)), str(p1), str(out), hashed)
    assert (result.pages, result.kept) == (10, 6) and result.bytes_read == result.pages * PAGE
    assert restored(out, "pagemap-1.img") == restored(p1, "pagemap-1.img")


def test_a_pages_file_that_shrinks_while_followed_is_dropped(tmp_path):
    d = tmp_path / "live"
    d.mkdir()
    (d / "pages-1.img").write_bytes(page("a") * 3)
    hasher = incremental.PageHasher(str(d))
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not hasher._files:
            time.sleep(0.01)
        os.truncate(d / "pages-1.img", PAGE)
        assert hasher.finish() == {}
    finally:
        hasher.close()


def test_index_over_a_round_matches_the_chain_without_reading_the_parent(tmp_path):
    """Migration rounds: P0 is indexed and deleted; round 1 is built on its digests, and round 2 on
    index_over(round 1) -- the same digests index_parent finds through the chain, with P0 gone."""
    p0, r1, r2 = tmp_path / "p0", tmp_path / "r1", tmp_path / "r2"
    write_dump(p0, {"pagemap-1.img": (1, [(A, [page("a0"), page("a1"), page("a2"), page("a3")], PE_PRESENT)])})
    write_dump(r1, {"pagemap-1.img": (1, [(A, [page("a0"), page("A1"), page("a2"), page("a3")], PE_PRESENT),
                                          (B, [page("n0")], PE_PRESENT)])})       # newly mapped
    write_dump(r2, {"pagemap-1.img": (1, [(A, [page("a0"), page("A1"), page("B2")], PE_PRESENT),  # a3 unmapped
                                          (B, [page("n0")], PE_PRESENT)])})
    first = incremental.index_parent(str(p0))
    incremental.build_from_index(first, str(r1), str(tmp_path / "r1x"))
    on_disk = incremental.index_parent(str(tmp_path / "r1x"))    # through the parent link, P0 still there
    p0.rename(tmp_path / "p0-gone")

    second = incremental.index_over(first, str(tmp_path / "r1x"))

    assert second.pagemaps["pagemap-1.img"].digests == on_disk.pagemaps["pagemap-1.img"].digests
    result = incremental.build_from_index(second, str(r2), str(tmp_path / "r2x"))
    assert (result.pages, result.kept) == (4, 1)               # a0 in p0, A1 and n0 in r1x: only B2 crosses
    (tmp_path / "p0-gone").rename(p0)
    incremental.check_parent(str(tmp_path / "r2x"))
    assert restored(tmp_path / "r2x", "pagemap-1.img") == restored(r2, "pagemap-1.img")
