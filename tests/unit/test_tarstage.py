"""archive.tarstage: GNU tar's rootfs diff renders a tree as our Python writer does, and fails safe.

The real /usr/bin/tar runs here (no runc, no CRIU). Each fidelity test builds
one tree and compares GNU tar's inner tar with the Python writer's
(Scanner + TarWriter.add_tree), entry by entry: names, types, modes, owners,
mtimes, link targets, devices, xattrs and data.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import zstandard

from runc_ckpt.archive import compression, export, tarstage
from runc_ckpt.archive.scan import Scanner, plan_rootfs
from runc_ckpt.archive.writer import TarWriter
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.rootfs import diff
from runc_ckpt.rootfs.diff import SKIP
from runc_ckpt.rootfs.mountinfo import OverlayDirs
from runc_ckpt.runtime import atomicfile
from runc_ckpt.trust import seal, sealkeys
from tests.export_helpers import capability_blob, read_members, request
from tests.unit.test_rootfs_scan import whiteout

CHR = 0o020000


class _Sink(io.BytesIO):
    pass


def python_tar(top: Path, overlay: bool) -> bytes:
    s = Scanner(SKIP)
    s.walk(str(top), overlay=overlay)
    sink = _Sink()
    tw = TarWriter(sink)  # type: ignore[arg-type]
    tw.add_tree("t", s.plan())
    tw.close()
    data = sink.getvalue()
    return data[512:512 + tw.members["t"].size]


def gnu_tar(top: Path, overlay: bool, tmp: Path) -> tuple[bytes, tarstage.Done]:
    dirs = OverlayDirs(str(top), []) if overlay else None
    listing = tarstage.list_tree(diff.RootfsSource(str(top), 0o755, dirs))
    assert listing is not None
    frame = io.BytesIO()
    z = compression.compressing_writer(frame, "zstd", 3, 0)
    done = tarstage.run(tarstage.tar_binary() or "tar", listing, z, str(tmp))
    z.close()
    data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(frame.getvalue())).read()
    assert len(data) == done.size and hashlib.sha256(data).hexdigest() == done.sha256
    return data, done


def entries(data: bytes) -> dict[str, tuple]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for m in tf:
            body = tf.extractfile(m).read() if m.isreg() else b""  # type: ignore[union-attr]
            xattrs = {k: v for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
            out[m.name.rstrip("/")] = (m.type, m.mode, m.uid, m.gid, m.size, m.mtime, m.linkname, m.devmajor,
                                       m.devminor, xattrs if not m.islnk() else {}, m.uname, m.gname, body)
    return out


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    top = tmp_path / "top"
    (top / "etc").mkdir(parents=True)
    (top / "proc").mkdir()
    (top / "dev").mkdir()
    (top / "dev" / "null-ish").write_text("skipped with dev/")
    (top / "etc" / "hosts").write_text("the engine's")
    (top / "etc" / "conf").write_text("kept")
    (top / "bin").mkdir()
    (top / "bin" / "ping").write_bytes(os.urandom(70_000))         # > SMALL: the writer's big-file path
    os.chmod(top / "bin" / "ping", 0o4755)
    os.setxattr(top / "bin" / "ping", "security.capability", capability_blob())
    os.setxattr(top / "bin" / "ping", "user.note", b"\xff\x00binary")
    os.setxattr(top / "bin", "trusted.overlay.origin", b"x")      # overlay's own: never archived
    (top / "bin" / "a").write_bytes(b"same inode")
    os.link(top / "bin" / "a", top / "bin" / "b")
    (top / "bin" / "empty").write_bytes(b"")
    os.symlink("../etc/conf", top / "bin" / "conf-link")
    os.mkfifo(top / "bin" / "fifo")
    os.mknod(top / "bin" / "tty", 0o620 | CHR, os.makedev(4, 1))
    long_dir = top / ("d" * 90) / ("e" * 60)
    long_dir.mkdir(parents=True)
    (long_dir / ("f" * 80)).write_text("long name")
    (top / "ünïcödé").write_text("utf-8 name")
    (top / "tmp").mkdir()
    os.chmod(top / "tmp", 0o1777)
    (top / "owned").write_text("numeric owner")
    os.chown(top / "owned", 123456, 7654321)
    os.utime(top / "owned", (1_700_000_000.75, 1_700_000_000.75))
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(top / "sock"))                                 # cannot be stored: left out
    return top


def test_gnu_tar_renders_a_tree_as_the_python_writer_does(tree, tmp_path):
    ours, _ = gnu_tar(tree, False, tmp_path)
    theirs = python_tar(tree, False)
    got, want = entries(ours), entries(theirs)
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], name
    assert "etc/hosts" not in got and "proc" not in got and "dev" not in got and "sock" not in got
    assert got["bin/b"][0] == tarfile.LNKTYPE and got["bin/b"][6] == "bin/a"
    assert got["bin/ping"][9]["SCHILY.xattr.user.note"] == "\udcff\x00binary"
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for e in got.values() for k in e[9])


def test_overlay_whiteouts_and_opaque_dirs_as_the_scanner_lists_them(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "opt" / "app").mkdir(parents=True)
    (lower / "opt" / "app" / "old").write_text("o")
    (upper / "opt" / "app").mkdir(parents=True)
    (upper / "opt" / "app" / "new").write_text("n")
    os.setxattr(upper / "opt" / "app", "trusted.overlay.opaque", b"y")
    (upper / "etc").mkdir()
    whiteout(upper / "etc" / "gone")
    whiteout(upper / "gone-top")
    (upper / "etc" / "kept").write_text("k")
    source = diff.RootfsSource(str(upper), 0o755, OverlayDirs(str(upper), [str(lower)]))
    listing = tarstage.list_tree(source)
    assert listing is not None
    planned = plan_rootfs(source)
    assert listing.deleted == planned.deleted == ["/etc/gone", "/gone-top", "/opt/app/old"]
    assert listing.kind == planned.kind == diff.OVERLAY_DIFF
    data, _ = gnu_tar(upper, True, tmp_path)
    got = entries(data)
    assert sorted(got) == sorted(e.name.rstrip("/") for e in planned.tree.entries)
    assert got["opt/app"][9] == {}                 # the opaque marker is overlay's: not archived


@pytest.mark.parametrize(("key", "value"), [("redirect", b"/elsewhere"), ("opaque", b"x")])
def test_marks_only_the_python_writer_renders_keep_it(tmp_path, key, value):
    upper = tmp_path / "upper"
    (upper / "a" / "b").mkdir(parents=True)
    os.setxattr(upper / "a" / "b", f"user.overlay.{key}", value)
    assert tarstage.list_tree(diff.RootfsSource(str(upper), 0o755, OverlayDirs(str(upper), []))) is None


def test_a_metacopy_overlay_keeps_the_python_writer(tmp_path):
    dirs = OverlayDirs(str(tmp_path), [], metacopy=True)
    assert tarstage.list_tree(diff.RootfsSource(str(tmp_path), 0o755, dirs)) is None


def test_names_that_look_like_options_and_hold_newlines(tmp_path):
    top = tmp_path / "top"
    top.mkdir()
    (top / "--remove-files").write_text("a name, not an option")
    (top / "two\nlines").write_text("x")
    (top / "-C").mkdir()
    (top / "-C" / "in").write_text("y")
    got = entries(gnu_tar(top, False, tmp_path)[0])
    assert sorted(got) == ["--remove-files", "-C", "-C/in", "two\nlines"]
    assert (top / "--remove-files").exists()


@pytest.fixture(autouse=True)
def any_tree_is_staged(monkeypatch: pytest.MonkeyPatch) -> None:
    """These trees are small: take the tar stage all the same (test_a_small_tree_... checks the bound)."""
    monkeypatch.setattr(tarstage, "MIN_ENTRIES", 0)


def _staged_export(tmp_path: Path, rootfs: Path, **kw: object) -> export.ExportResult:
    return export.write_archive(request(tmp_path, rootfs, **kw))


def test_zstd_export_takes_the_tar_stage_and_reads_back(tmp_path, tree, monkeypatch):
    runs = []
    real = tarstage.run
    monkeypatch.setattr(tarstage, "run", lambda *a: runs.append(1) or real(*a))
    result = _staged_export(tmp_path, tree)
    assert runs == [1]
    m = read_members(result.archive)
    assert list(m)[-1] == "runc-ckpt.manifest.json"
    assert entries(m["rootfs-diff.tar"].data) == entries(python_tar(tree, False))
    assert result.members["rootfs-diff.tar"].size == len(m["rootfs-diff.tar"].data)
    with open(result.archive, "rb") as f:                  # the spliced member is a frame of its own
        assert f.read().count(b"\x28\xb5\x2f\xfd") >= 3
    assert sorted(os.listdir(tmp_path / "out")) == ["ckpt.tar.zst"]


@pytest.mark.parametrize("kw", [{"compress": "gzip"}, {"compress": "none"}, {"digests": True}],
                         ids=["gzip", "none", "digests"])
def test_other_archives_keep_the_python_writer(tmp_path, tree, monkeypatch, kw):
    monkeypatch.setattr(tarstage, "run", lambda *a: pytest.fail("the tar stage ran"))
    result = _staged_export(tmp_path, tree, **kw)
    got = entries(read_members(result.archive)["rootfs-diff.tar"].data)
    assert got == entries(python_tar(tree, False))


def test_no_tar_on_the_host_keeps_the_python_writer(tmp_path, tree, monkeypatch):
    monkeypatch.setattr(tarstage, "tar_binary", lambda: None)
    monkeypatch.setattr(tarstage, "run", lambda *a: pytest.fail("the tar stage ran"))
    assert "rootfs-diff.tar" in read_members(_staged_export(tmp_path, tree).archive)


def _fake_tar(tmp_path: Path, status: int, message: str) -> str:
    fake = tmp_path / "fake-tar"
    fake.write_text(f"#!/bin/sh\nhead -c 2048 /dev/zero\necho '{message}' >&2\nexit {status}\n")
    fake.chmod(0o755)
    return str(fake)


def test_tar_status_1_is_warnings_and_2_fails_with_its_last_line(tmp_path, tree):
    listing = tarstage.list_tree(diff.RootfsSource(str(tree), 0o755, None))
    assert listing is not None
    out = io.BytesIO()
    done = tarstage.run(_fake_tar(tmp_path, 1, "tar: x: file changed as we read it"), listing, out, str(tmp_path))
    assert done.warnings == ["tar: x: file changed as we read it"] and out.getvalue() == bytes(2048) == bytes(done.size)
    with pytest.raises(RuncCkptError, match="rootfs diff .* failed: tar: x: Cannot open: Input/output error"):
        tarstage.run(_fake_tar(tmp_path, 2, "tar: x: Cannot open: Input/output error"), listing, io.BytesIO(),
                     str(tmp_path))


def test_a_failing_tar_leaves_no_file_behind(tmp_path, tree, monkeypatch):
    monkeypatch.setattr(tarstage, "tar_binary", lambda: _fake_tar(tmp_path, 2, "tar: broken"))
    with pytest.raises(RuncCkptError, match="tar: broken"):
        _staged_export(tmp_path, tree)
    assert os.listdir(tmp_path / "out") == []


def test_a_file_that_shrinks_while_tar_reads_it_is_padded_with_a_warning(tmp_path, monkeypatch):
    top = tmp_path / "top"
    top.mkdir()
    (top / "a").write_text("first")
    with open(top / "big", "wb") as f:       # sparse: tar is far from its end when it shrinks
        f.truncate(64 << 20)
    real_read = os.read
    shrunk = []

    def read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        if not shrunk and data and stat.S_ISFIFO(os.fstat(fd).st_mode):   # tar's first record, which holds
            os.truncate(top / "big", 4096)                                  # big's header: tar has its size
            shrunk.append(1)
        return data

    monkeypatch.setattr(tarstage.os, "read", read)
    result = _staged_export(tmp_path, top)
    assert any("shrank" in w and "big" in w for w in result.warnings), result.warnings
    got = entries(read_members(result.archive)["rootfs-diff.tar"].data)
    assert got["big"][4] == 64 << 20 and got["big"][12] == bytes(64 << 20)   # the size tar saw, zero-padded
    assert got["a"][12] == b"first"


KILLED = """
import sys
sys.path[:0] = {path!r}
from pathlib import Path
from runc_ckpt.archive import export, tarstage
from tests.export_helpers import request
tarstage.MIN_ENTRIES = 0
export.write_archive(request(Path({tmp!r}), Path({top!r})))
"""


def test_kill_9_while_tar_runs_leaves_no_spool_and_no_tar(tmp_path):
    top = tmp_path / "top"
    top.mkdir()
    with open(top / "big", "wb") as f:
        f.truncate(1 << 30)
    env = {**os.environ, "RUNC_CKPT_FAULT": "export-tar:kill"}
    proc = subprocess.run([sys.executable, "-c", KILLED.format(path=sys.path, tmp=str(tmp_path), top=str(top))],
                          env=env, cwd=Path(__file__).parents[2], capture_output=True, text=True, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = os.listdir(tmp_path / "out")
    assert all(atomicfile.is_temp(n) for n in left), left     # the temp file the next export sweeps, no spool
    deadline = time.monotonic() + 10
    while _tars_reading(top) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _tars_reading(top) == [], "tar outlived the export that ran it"
    # The next export sweeps the temp file; nothing else was ever visible.
    export.write_archive(request(tmp_path, top))
    assert os.listdir(tmp_path / "out") == ["ckpt.tar.zst"]


def _tars_reading(top: Path) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(top).encode() in cmd and b"--create" in cmd:
            found.append(int(pid))
    return found


@pytest.mark.parametrize("name", ["two\nlines", "trailing "], ids=["newline", "trailing-blank"])
def test_a_whiteout_tar_cannot_exclude_keeps_the_python_writer(tmp_path, name):
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    whiteout(upper / "etc" / name)
    assert tarstage.list_tree(diff.RootfsSource(str(upper), 0o755, OverlayDirs(str(upper), []))) is None


def test_whiteouts_with_pattern_characters_are_excluded_literally(tmp_path):
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    for name in ("a\\b", "x*", "[ab]", " lead"):
        whiteout(upper / "etc" / name)
    (upper / "etc" / "xy").write_text("kept: x* is no pattern")
    (upper / "etc" / "a").write_text("kept: [ab] is no pattern")
    got = entries(gnu_tar(upper, True, tmp_path)[0])
    assert sorted(got) == ["etc", "etc/a", "etc/xy"]


def test_the_header_goes_into_a_slot_before_tar_s_frame(tmp_path, tree):
    """Plain zstd: tar's frame streams into the archive itself; the header's slot ends in a skippable frame."""
    result = _staged_export(tmp_path, tree)
    raw = Path(result.archive).read_bytes()
    assert b"\x50\x2a\x4d\x18" in raw                       # the skippable frame after the header's frame
    assert entries(read_members(result.archive)["rootfs-diff.tar"].data) == entries(python_tar(tree, False))


def test_a_sealed_archive_seals_the_header_slot_as_a_record_of_its_own(tmp_path, tree, seal_keys, monkeypatch):
    """Sealed: tar's frame streams into the file too, behind a slot the header's sealed record fills (no spool
    of tar's frame: ~0.4 s a GiB of page cache and copying, issue 20's encrypted export)."""
    reserved = []
    real = seal.SealWriter.reserve
    monkeypatch.setattr(seal.SealWriter, "reserve", lambda self, size: reserved.append(size) or real(self, size))
    result = _staged_export(tmp_path, tree, seal_for=(sealkeys.load_recipient(f"jwe:{seal_keys['ec'][1]}"),))
    assert reserved == [export.HEADER_SLOT]
    plain = tmp_path / "plain.tar.zst"
    with open(result.archive, "rb") as f, open(plain, "wb") as out:
        reader = seal.SealReader(f, [sealkeys.load_private(seal_keys["ec"][0])], result.archive)
        while data := reader.read(1 << 20):
            out.write(data)
    assert b"\x50\x2a\x4d\x18" in plain.read_bytes()          # the slot's skippable frame, as in a plain one
    assert entries(read_members(plain)["rootfs-diff.tar"].data) == entries(python_tar(tree, False))
    assert sorted(os.listdir(tmp_path / "out")) == ["ckpt.tar.zst"]


@pytest.mark.parametrize("header", [bytes(512), os.urandom(1536)], ids=["ustar", "incompressible-pax"])
def test_frame_of_size_fills_its_slot_exactly(header):
    frame = compression.frame_of_size(header, export.HEADER_SLOT, 3)
    assert len(frame) == export.HEADER_SLOT
    assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(frame), read_across_frames=True).read() == header


def test_frame_of_size_refuses_a_slot_it_cannot_fill():
    with pytest.raises(RuncCkptError, match="does not fit"):
        compression.frame_of_size(os.urandom(512), 100, 3)


def test_a_small_tree_keeps_the_python_writer_and_a_big_one_takes_tar(tmp_path, monkeypatch):
    monkeypatch.setattr(tarstage, "MIN_ENTRIES", 50)
    runs = []
    real = tarstage.run
    monkeypatch.setattr(tarstage, "run", lambda *a: runs.append(1) or real(*a))
    top = tmp_path / "top"
    (top / "d").mkdir(parents=True)
    for i in range(48):
        (top / "d" / f"f{i}").write_text(str(i))
    _staged_export(tmp_path, top)                    # 49 entries
    assert runs == []
    (top / "d" / "f48").write_text("48")
    result = _staged_export(tmp_path, top)           # 50
    assert runs == [1]
    assert len(entries(read_members(result.archive)["rootfs-diff.tar"].data)) == 50


def test_an_entry_removed_after_the_walk_is_a_warning(tmp_path):
    top = tmp_path / "top"
    (top / "d").mkdir(parents=True)
    (top / "d" / "f").write_text("kept")
    (top / "gone-top").write_text("x")
    listing = tarstage.list_tree(diff.RootfsSource(str(top), 0o755, None))
    assert listing is not None and listing.names == ["d", "gone-top"]
    (top / "gone-top").unlink()
    frame = io.BytesIO()
    done = tarstage.run(tarstage.tar_binary() or "tar", listing, frame, str(tmp_path))
    assert any("gone-top" in w and "No such file" in w for w in done.warnings), done.warnings
    assert sorted(entries(frame.getvalue())) == ["d", "d/f"]
