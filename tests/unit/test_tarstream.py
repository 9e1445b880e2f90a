"""archive/tarstream's own header parser, against archives made by the real GNU tar and by tarfile.

Each archive is read twice, by tarfile (the reference) and by TarStream, and
every field an extractor uses must agree, data included.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from runc_ckpt.archive.tarstream import BytesSource, TarStream
from runc_ckpt.base.errors import RuncCkptError
from tests.conftest import require_tool

FIELDS = ("name", "type", "mode", "uid", "gid", "size", "mtime", "linkname", "devmajor", "devminor")


def _tree(root: str, long_names: bool, fifo: bool = True) -> None:
    os.makedirs(f"{root}/dir/sub")
    with open(f"{root}/dir/file.txt", "wb") as f:
        f.write(b"hello\n" * 300)
    with open(f"{root}/empty", "wb"):
        pass
    os.chmod(f"{root}/empty", 0o4755)
    os.chown(f"{root}/dir/file.txt", 1234, 5678)
    os.link(f"{root}/dir/file.txt", f"{root}/dir/hard")
    os.symlink("../dir/file.txt", f"{root}/dir/sub/link")
    if fifo:                                                   # v7 has no FIFO type
        os.mkfifo(f"{root}/fifo")
    os.utime(f"{root}/dir/file.txt", (1_600_000_000, 1_600_000_000))
    if long_names:
        deep = f"{root}/" + "/".join(["d" * 60] * 3)           # > 100 bytes: ustar prefix or long name
        os.makedirs(deep)
        with open(f"{deep}/{'f' * 120}", "wb") as f:           # > 255 bytes in all
            f.write(os.urandom(3000))
        with open(f"{root}/näme-ünïcode", "wb") as f:
            f.write(b"u")
        os.symlink("t" * 150, f"{root}/longlink")
        os.setxattr(f"{root}/dir/file.txt", "user.test", b"\x00\xffbinary")


class _Dribble:
    """A source handing out its bytes in odd small pieces, whatever was asked (a pipe, a chain of readers):
    TarStream's read-ahead must put headers and data back together across any piece boundary."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._sizes = [1, 511, 7, 513, 1024, 3, 4096]
        self.calls = 0

    def read_view(self, n: int) -> memoryview:
        k = min(n, self._sizes[self.calls % len(self._sizes)])
        self.calls += 1
        v, self._view = self._view[:k], self._view[k:]
        return v


def _compare(data: bytes) -> int:
    ref = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    want = [(tuple(getattr(m, k) for k in FIELDS),
             {k: v for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")},
             ref.extractfile(m).read() if m.isreg() else b"") for m in ref.getmembers()]
    for source in (BytesSource(data), _Dribble(data)):
        stream = TarStream(source, "test")
        got = [(tuple(getattr(m, k) for k in FIELDS),
                {k: v for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")},
                stream.read(m.size) if m.isreg() else b"") for m in stream]
        assert got == want
        assert stream.ended
    return len(got)


def test_read_ahead_takes_big_pieces_and_never_passes_the_source_end():
    """Many small members cost a few reads of the source, not two each; the member's source
    (MemberSource in reader) ends with the member, so nothing after it is ever asked for."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for i in range(200):
            info = tarfile.TarInfo(f"d/f{i}")
            info.size = 100
            tf.addfile(info, io.BytesIO(bytes([i]) * 100))
    data = buf.getvalue()

    class Counting(BytesSource):
        calls = 0

        def read_view(self, n: int) -> memoryview:
            Counting.calls += 1
            return super().read_view(n)
    source = Counting(data + b"NEXT MEMBER")
    stream = TarStream(source, "t")
    assert [stream.read(m.size) for m in stream] == [bytes([i]) * 100 for i in range(200)]
    assert Counting.calls <= 3


@pytest.mark.parametrize("fmt", ["gnu", "oldgnu", "pax", "posix", "ustar", "v7"])
def test_gnu_tar_formats(tmp_path, fmt):
    require_tool("tar")
    long_names = fmt in ("gnu", "oldgnu", "pax", "posix")
    _tree(str(tmp_path / "src"), long_names, fifo=fmt != "v7")
    extra = ["--xattrs"] if fmt in ("pax", "posix") else []
    data = subprocess.run(["tar", f"--format={fmt}", *extra, "-C", str(tmp_path / "src"), "-cf", "-", "."],
                          check=True, capture_output=True).stdout
    assert _compare(data) >= 7


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_tarfile_formats_big_numbers_and_pax(fmt):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        info = tarfile.TarInfo("p/" + "x" * (90 if fmt == tarfile.USTAR_FORMAT else 300))
        info.size, info.mode, info.mtime = 5, 0o640, 1_700_000_000
        if fmt != tarfile.USTAR_FORMAT:
            info.uid = info.gid = 8 ** 8 + 3           # base-256 (GNU) or a pax record
        tar.addfile(info, io.BytesIO(b"12345"))
        d = tarfile.TarInfo("p/dir/")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
    assert _compare(buf.getvalue()) == 2


def test_global_pax_header_applies_to_later_members():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"uid": "77"}) as tar:
        for name in ("a", "b"):
            info = tarfile.TarInfo(name)
            tar.addfile(info, io.BytesIO(b""))
    members = list(TarStream(BytesSource(buf.getvalue()), "t"))
    assert [m.uid for m in members] == [77, 77]


def test_bad_checksum_is_corrupt():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("a"), io.BytesIO(b""))
    data = bytearray(buf.getvalue())
    data[0] ^= 0x01
    with pytest.raises(RuncCkptError, match="corrupt"):
        list(TarStream(BytesSource(bytes(data)), "t"))


def test_headers_off_the_common_path_read_as_tarfile_reads_them():
    """The inline octal fast path falls back to the checked parsing: a signed (historic Sun) checksum,
    blank and space-led number fields, a base-256 size."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("n\u00e9\u00e9")                   # bytes >= 0x80: the two sums differ
        info.size, info.mode, info.uid, info.mtime = 3, 0o640, 7, 1_700_000_000
        tar.addfile(info, io.BytesIO(b"abc"))
    data = bytearray(buf.getvalue())
    data[116:124] = bytes(8)                                     # gid: blank
    data[108:116] = b"  00007 "                                  # uid: spaces around
    data[124:136] = b"\x80" + (3).to_bytes(11, "big")            # size: base-256
    header = data[:512]
    header[148:156] = b" " * 8
    signed = sum(b - 256 if b >= 0x80 else b for b in header)
    data[148:156] = b"%06o\0 " % signed
    assert signed != sum(header)
    got = list(TarStream(BytesSource(bytes(data)), "t"))
    want = tarfile.open(fileobj=io.BytesIO(bytes(data))).getmembers()
    assert [[getattr(m, f) for f in FIELDS] for m in got] == [[getattr(m, f) for f in FIELDS] for m in want]
    assert (got[0].uid, got[0].gid, got[0].size) == (7, 0, 3)


def test_cut_header_is_truncated_and_missing_end_marker_is_seen():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("a"), io.BytesIO(b""))
    data = buf.getvalue()
    with pytest.raises(RuncCkptError, match="truncated"):
        list(TarStream(BytesSource(data[:700]), "t"))
    stream = TarStream(BytesSource(data[:512]), "t")
    assert [m.name for m in stream] == ["a"] and not stream.ended


def test_oversized_long_name_is_refused():
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, 2 << 20
    header = info.tobuf(format=tarfile.GNU_FORMAT)[:512]
    with pytest.raises(RuncCkptError, match="extended header"):
        list(TarStream(BytesSource(header + bytes(1024)), "t"))
