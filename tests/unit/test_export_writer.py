"""The streaming tar writer: planned sizes equal what is written, for the tricky entries too."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from runc_ckpt.archive import writer
from runc_ckpt.archive.scan import Scanner
from runc_ckpt.archive.writer import DIR, REG, SYM, Entry, TarWriter, TreePlan
from runc_ckpt.base.errors import RuncCkptError
from tests.export_helpers import capability_blob

LONG_DIR = "d" * 120
LONG_NAME = "n" * 150


def tricky_tree(root: Path) -> None:
    """Long names, unicode, symlinks, hardlinks, xattrs, setuid, empty dirs, zero/sparse files."""
    (root / LONG_DIR).mkdir()
    (root / LONG_DIR / LONG_NAME).write_bytes(b"long" * 100)
    (root / "ünïcødé-名前.txt").write_text("unicode\n")
    (root / "plain").write_bytes(b"plain data")
    with open(os.path.join(os.fsencode(root), b"not-utf8-\xff\xfe"), "wb") as f:   # raw bytes name
        f.write(b"bytes name")
    os.symlink(b"target-\xff", os.path.join(os.fsencode(root), b"link-to-bytes"))
    (root / "hard-a").write_bytes(b"linked twice")
    os.link(root / "hard-a", root / "hard-b")
    os.link(root / "hard-a", root / LONG_DIR / ("h" * 110))     # hardlink with a long name
    (root / "link").symlink_to("plain")
    (root / "long-link").symlink_to("t" * 200)                    # symlink target > 100 chars
    (root / "suid").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "suid", 0o4755)
    (root / "sgid-dir").mkdir()
    os.chmod(root / "sgid-dir", 0o2775)
    (root / "sticky").mkdir()
    os.chmod(root / "sticky", 0o1777)
    (root / "empty-dir").mkdir()
    (root / "empty-file").write_bytes(b"")
    with open(root / "sparse", "wb") as f:
        f.truncate(3 * writer.CHUNK + 17)                         # a hole, bigger than one copy chunk
    (root / "exact-block").write_bytes(b"x" * 512)
    (root / "xattr-file").write_bytes(b"xattrs")
    os.setxattr(root / "xattr-file", "user.comment", b"hello \xff\x00 binary")
    os.setxattr(root / "xattr-file", "security.capability", capability_blob())
    os.mkfifo(root / "fifo")
    os.chown(root / "plain", 1234, 5678)


def stream(plan: TreePlan) -> tuple[bytes, dict]:
    out = io.BytesIO()
    tw = TarWriter(out)
    tw.add_tree("t.tar", plan)
    tw.close()
    return out.getvalue(), tw.members


def outer_member(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return tar.extractfile(name).read()  # type: ignore[union-attr]


def test_planned_size_equals_written_size_for_tricky_tree(tmp_path):
    tricky_tree(tmp_path)
    scan = Scanner()
    scan.walk(str(tmp_path))
    plan = scan.plan()
    data, members = stream(plan)
    inner = outer_member(data, "t.tar")
    assert len(inner) == plan.size == members["t.tar"].size
    assert members["t.tar"].sha256 == hashlib.sha256(inner).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(inner), mode="r:") as tar:
        got = {i.name: i for i in tar}
        contents = {i.name: tar.extractfile(i).read() for i in got.values() if i.isreg()}  # type: ignore
    assert contents[f"{LONG_DIR}/{LONG_NAME}"] == b"long" * 100
    assert contents["ünïcødé-名前.txt"] == b"unicode\n"
    assert contents[os.fsdecode(b"not-utf8-\xff\xfe")] == b"bytes name"
    assert got["link-to-bytes"].linkname == os.fsdecode(b"target-\xff")
    assert contents["sparse"] == bytes(3 * writer.CHUNK + 17)
    assert contents["exact-block"] == b"x" * 512
    assert contents["empty-file"] == b""
    links = [got[n] for n in ("hard-a", "hard-b", f"{LONG_DIR}/{'h' * 110}")]
    assert sum(1 for i in links if i.isreg()) == 1 and sum(1 for i in links if i.islnk()) == 2
    first = next(i for i in links if i.isreg())
    assert all(i.linkname == first.name for i in links if i.islnk())
    assert got["link"].issym() and got["link"].linkname == "plain"
    assert got["long-link"].linkname == "t" * 200
    assert got["suid"].mode == 0o4755
    assert got["sgid-dir"].isdir() and got["sgid-dir"].mode == 0o2775
    assert got["sticky"].mode == 0o1777
    assert got["empty-dir"].isdir()
    assert got["fifo"].isfifo()
    assert (got["plain"].uid, got["plain"].gid) == (1234, 5678)
    pax = got["xattr-file"].pax_headers
    assert pax["SCHILY.xattr.user.comment"].encode("utf-8", "surrogateescape") == b"hello \xff\x00 binary"
    assert pax["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape") == capability_blob()
    st = os.stat(tmp_path / "plain")
    assert got["plain"].mtime == int(st.st_mtime)


def test_header_sizes_match_encoding():
    entries = [
        Entry("short", REG, 0o644, size=3),
        Entry("x" * 100, REG, size=1),                    # exactly 100: still plain ustar
        Entry("x" * 101, REG, size=1),                    # PAX path record
        Entry("é", REG),
        Entry("d" * 99, DIR),                             # 99 + "/" = 100
        Entry("d" * 100, DIR),                            # 101 with the slash
        Entry("s", SYM, 0o777, linkname="y" * 101),
        Entry("big-uid", REG, uid=8 ** 7, gid=2 ** 31),
        Entry("huge", REG, size=8 ** 11),                 # > 8 GiB: size goes to PAX
        Entry("old", REG, mtime=-5),
        Entry("xa", REG, xattrs={"user.a": b"\x00\xff"}),
    ]
    for e in entries:
        head = writer.encode_header(e)
        assert len(head) == writer.header_size(e) and len(head) % 512 == 0
        tar = tarfile.open(fileobj=io.BytesIO(head + bytes(1024)), mode="r:")
        info = tar.next()
        assert info is not None
        assert info.name == e.name.rstrip("/")
        assert (info.uid, info.gid, info.size, info.mtime, info.mode) == (e.uid, e.gid, e.size, e.mtime, e.mode)
        assert info.linkname == e.linkname


def test_plain_header_is_valid_ustar_with_checksum():
    head = writer.encode_header(Entry("etc/passwd", REG, 0o644, uid=0, gid=0, size=100, mtime=1700000000))
    assert len(head) == 512 and head[257:265] == b"ustar\x0000"
    info = tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")   # checks the checksum
    assert info.name == "etc/passwd" and info.size == 100


@pytest.mark.parametrize("change", ["grow", "shrink", "remove", "replace"])
def test_file_changing_after_plan_keeps_stream_valid(tmp_path, change):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"A" * 10000)
    (src / "b").write_bytes(b"B" * 3 * writer.CHUNK)     # the chunked copy path
    (src / "z").write_bytes(b"after")
    scan = Scanner()
    scan.walk(str(src))
    plan = scan.plan()
    for name in ("a", "b"):
        p = src / name
        if change == "grow":
            with open(p, "ab") as f:
                f.write(b"+" * 5000)
        elif change == "shrink":
            os.truncate(p, 10)
        elif change == "remove":
            p.unlink()
        else:
            p.rename(src / "old")
            p.write_bytes(b"R" * 10)
    warnings: list[str] = []
    out = io.BytesIO()
    tw = TarWriter(out, on_change=warnings.append)
    tw.add_tree("t.tar", plan)
    tw.close()
    inner = outer_member(out.getvalue(), "t.tar")
    assert len(inner) == plan.size
    with tarfile.open(fileobj=io.BytesIO(inner), mode="r:") as tar:
        got = {i.name: tar.extractfile(i).read() for i in tar if i.isreg()}  # type: ignore[union-attr]
    assert len(got["a"]) == 10000 and len(got["b"]) == 3 * writer.CHUNK
    assert got["z"] == b"after"
    if change == "grow":
        assert got["a"] == b"A" * 10000
    elif change == "shrink":
        assert got["a"] == b"A" * 10 + bytes(9990)
    else:
        assert got["a"] == bytes(10000)
    assert len(warnings) == 2 and all(str(src) in w for w in warnings)


def test_add_bytes_and_file_digests(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(os.urandom(2 * writer.CHUNK + 5))
    out = io.BytesIO()
    tw = TarWriter(out)
    tw.add_bytes("small", b"hello")
    tw.add_file("dir/f", str(p))
    tw.add_entry(Entry("dir", DIR, 0o755))
    tw.close()
    members = tw.members
    assert members["small"].sha256 == hashlib.sha256(b"hello").hexdigest()
    assert members["dir/f"].sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    assert outer_member(out.getvalue(), "dir/f") == p.read_bytes()
    assert len(out.getvalue()) % 512 == 0


def test_big_member_hashed_in_a_pipe_thread_has_the_inline_digest(tmp_path, monkeypatch):
    """Members of PIPE_MIN bytes or more are hashed by a HashPipe thread: same digest, same bytes, every path."""
    monkeypatch.setattr(writer, "PIPE_MIN", 3 * writer.CHUNK)
    big = os.urandom(3 * writer.CHUNK + 7)
    p = tmp_path / "f"
    p.write_bytes(big)
    out = io.BytesIO()
    tw = TarWriter(out)
    tw.add_file("file", str(p))                      # read in CHUNK pieces
    tw.add_bytes("bytes", big)                        # one piece bigger than CHUNK
    tw.begin("pieces", len(big))                      # small pieces gathered in the buffer
    for i in range(0, len(big), 1000):
        tw._data(big[i:i + 1000])
    tw.end()
    tw.close()
    for name in ("file", "bytes", "pieces"):
        assert tw.members[name].sha256 == hashlib.sha256(big).hexdigest()
        assert outer_member(out.getvalue(), name) == big


def test_writer_error_reaches_the_caller():
    class Full(io.RawIOBase):
        def write(self, b):  # noqa: ANN001
            raise OSError(28, "No space left on device")

    tw = TarWriter(Full())  # type: ignore[arg-type]
    with pytest.raises(OSError, match="No space"):
        for i in range(10):
            tw.add_bytes(f"m{i}", bytes(writer.CHUNK))


def test_member_overflow_is_refused():
    tw = TarWriter(io.BytesIO())
    tw.begin("m", 3)
    with pytest.raises(RuncCkptError, match="overflows"):
        tw._data(b"four")


def test_spooled_plan_streams_the_same_tar_as_one_held_in_memory(tmp_path, monkeypatch):
    """Past EntrySpool.BATCH entries the plan goes to a temp file: same order, same fields, same bytes."""
    (tmp_path / "t").mkdir()
    tricky_tree(tmp_path / "t")
    for i in range(40):
        (tmp_path / "t" / f"many-{i:03d}").write_bytes(b"m" * i)
    in_memory = Scanner()
    in_memory.walk(str(tmp_path / "t"))
    monkeypatch.setattr(writer.EntrySpool, "BATCH", 7)
    spooled = Scanner(spool_dir=str(tmp_path))
    spooled.walk(str(tmp_path / "t"))
    assert spooled.entries._file is not None and len(spooled.entries._mem) <= 7
    assert os.listdir(tmp_path) == ["t"]                      # the spool file is anonymous
    fields = [tuple(getattr(e, k) for k in Entry.__slots__) for e in spooled.entries]
    assert fields == [tuple(getattr(e, k) for k in Entry.__slots__) for e in in_memory.entries]
    assert len(fields) == len(spooled.entries) > 50
    plan = spooled.plan()
    assert plan.size == in_memory.plan().size
    assert stream(plan) == stream(in_memory.plan())
    assert stream(plan) == stream(in_memory.plan())          # a spool can be read again
    spooled.entries.close()


def test_many_small_files_gathered_across_chunks_match_tarfile(tmp_path):
    """add_tree gathers small files' headers, data and padding and hands them on ~CHUNK at a time:
    gathered runs that cross CHUNK, empty files, and a big file between two runs stream the same
    members (data and metadata) that tarfile reads back, at the planned size, with the right digest."""
    src = tmp_path / "src"
    src.mkdir()
    want = {}
    for i in range(700):                     # ~3.2 MiB of small files: several gathered pieces
        data = bytes([i % 251]) * (i * 7 % 5000)
        (src / f"s{i:04d}").write_bytes(data)
        want[f"s{i:04d}"] = data
    want["s0350"] = b"B" * (writer.SMALL + 1)     # the first file read in CHUNK pieces, mid-run
    (src / "s0350").write_bytes(want["s0350"])
    scan = Scanner()
    scan.walk(str(src))
    plan = scan.plan()
    data, members = stream(plan)
    inner = outer_member(data, "t.tar")
    assert len(inner) == plan.size == members["t.tar"].size
    assert members["t.tar"].sha256 == hashlib.sha256(inner).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(inner), mode="r:") as tar:
        got = {i.name: tar.extractfile(i).read() for i in tar if i.isreg()}  # type: ignore[union-attr]
    assert got == want
