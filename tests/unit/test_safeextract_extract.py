"""safeextract: what a rootfs needs is kept (owners, setuid, links, xattrs), and merges behave like tar."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest

from runc_ckpt.archive import safeextract
from runc_ckpt.archive.safeextract import Root, UnsafeArchive
from runc_ckpt.archive.tarstream import BytesSource, TarStream
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.state import journaledmerge, transaction
from tests.hostile.builder import d, dev, f, hard, sym, tar_bytes


@pytest.fixture(autouse=True, params=["in-process", "helper"])
def maker_mode(request, monkeypatch):
    """Every test runs twice: members made in-process, and (FORK_AFTER 0) by the forked helper from the start."""
    if request.param == "helper":
        monkeypatch.setattr(safeextract, "FORK_AFTER", 0)
        monkeypatch.setattr(safeextract.os, "sched_getaffinity", lambda _pid: {0, 1})     # any machine
    return request.param


def _extract(entries, root_dir, allow_devices=True):
    with Root(str(root_dir), "test") as root:
        tar = TarStream(BytesSource(tar_bytes(entries)), "test")
        return safeextract.extract(tar, root, "test", allow_devices)


def test_owners_modes_setuid_times_are_kept(tmp_path):
    _extract([d("usr", 0o755), d("usr/bin", 0o711, uid=0, gid=0),
              f("usr/bin/su", b"#!", mode=0o4755, uid=0, gid=0),
              f("home", b"x", mode=0o2640, uid=1000, gid=1001)], tmp_path)
    su = os.stat(tmp_path / "usr/bin/su")
    assert stat.S_IMODE(su.st_mode) == 0o4755
    home = os.stat(tmp_path / "home")
    assert (home.st_uid, home.st_gid, stat.S_IMODE(home.st_mode)) == (1000, 1001, 0o2640)
    assert stat.S_IMODE(os.stat(tmp_path / "usr/bin").st_mode) == 0o711
    assert int(su.st_mtime) == 1_700_000_000
    assert int(os.stat(tmp_path / "usr/bin").st_mtime) == 1_700_000_000


def test_symlinks_hardlinks_fifos_devices_xattrs(tmp_path):
    _extract([f("a", b"data", xattrs={"user.k": b"v\xff", "trusted.t": b"1"}),
              hard("b", "a"), sym("c", "/etc/passwd"), sym("dangling", "../../nowhere"),
              dev("null"), dev("disk", 8, 0, block=True)], tmp_path)
    assert os.stat(tmp_path / "a").st_ino == os.stat(tmp_path / "b").st_ino
    assert os.readlink(tmp_path / "c") == "/etc/passwd"
    assert os.readlink(tmp_path / "dangling") == "../../nowhere"
    assert os.getxattr(tmp_path / "a", "user.k") == b"v\xff"
    assert os.getxattr(tmp_path / "a", "trusted.t") == b"1"
    assert stat.S_ISCHR(os.lstat(tmp_path / "null").st_mode)
    assert os.lstat(tmp_path / "null").st_rdev == os.makedev(1, 3)
    assert stat.S_ISBLK(os.lstat(tmp_path / "disk").st_mode)


def test_devices_refused_where_not_allowed(tmp_path):
    with pytest.raises(UnsafeArchive, match="device"):
        _extract([dev("null")], tmp_path, allow_devices=False)
    assert not (tmp_path / "null").exists()


def test_later_member_replaces_earlier(tmp_path):
    _extract([d("x"), f("x/inner", b"1"), f("x", b"now a file"), sym("y", "t"), f("y", b"file")], tmp_path)
    assert (tmp_path / "x").read_bytes() == b"now a file"
    assert not os.path.islink(tmp_path / "y")


def test_names_are_checked():
    assert safeextract.split_name("./a//b/./c/", "t") == ("a", "b", "c")
    assert safeextract.split_name("/etc/x", "t", allow_absolute=True) == ("etc", "x")
    for bad in ("/etc/x", "../x", "a/../../x", "a/..", "a\x00b"):
        with pytest.raises(UnsafeArchive):
            safeextract.split_name(bad, "t")


def _merge(tmp_path, entries, deleted=(), prepare=None):
    """Stage, plan and apply as restore --import does: the journaled merge, then its commit."""
    target = tmp_path / "target"
    target.mkdir(exist_ok=True)
    if prepare:
        prepare(target)
    root = Root(str(target), "t")
    name, remove = safeextract.make_staging(root, ".staging-")
    staging = Root.at(root, name, "t")
    tar = TarStream(BytesSource(tar_bytes(entries)), "t")
    result = safeextract.extract(tar, staging, "t", True)
    journal = transaction.Journal(tempfile.mkdtemp(prefix="import-", dir=tmp_path))
    try:
        plan = safeextract.plan_merge(staging, root, result.explicit_dirs, deleted, "t")
        journaledmerge.apply_merge(journal, staging, root, plan, result.explicit_dirs, result,
                                undo_dir=staging.path + transaction.UNDO_SUFFIX)
        transaction.commit(journal.steps)
    finally:
        journal.close()
        staging.close()
        remove()
        root.close()
    assert not [n for n in os.listdir(target) if n.startswith(".staging-")]
    return target


def test_merge_into_existing_tree(tmp_path):
    def prepare(t):
        (t / "etc").mkdir()
        (t / "etc" / "keep").write_text("keep")
        (t / "etc" / "old").write_text("old")
        (t / "etc" / "gone").write_text("gone")
        (t / "dir-to-file").mkdir()
        (t / "dir-to-file" / "x").write_text("x")
    t = _merge(tmp_path, [f("etc/old", b"new"), f("etc/added", b"a"), f("dir-to-file", b"file"),
                          d("fresh", 0o700), f("fresh/f", b"f")], deleted=["/etc/gone", "/not/there"],
               prepare=prepare)
    assert (t / "etc" / "keep").read_text() == "keep"
    assert (t / "etc" / "old").read_text() == "new"
    assert (t / "etc" / "added").read_text() == "a"
    assert not (t / "etc" / "gone").exists()
    assert (t / "dir-to-file").read_text() == "file"
    assert stat.S_IMODE(os.stat(t / "fresh").st_mode) == 0o700


def test_explicit_dir_replaces_a_symlink_but_an_implicit_one_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()

    def prepare(t):
        (t / "lnk").symlink_to(outside)
    t = _merge(tmp_path, [d("lnk"), f("lnk/x", b"inside")], prepare=prepare)
    assert not os.path.islink(t / "lnk") and (t / "lnk" / "x").read_text() == "inside"
    assert os.listdir(outside) == []

    def prepare2(t):
        if os.path.lexists(t / "lnk2"):
            return
        (t / "lnk2").symlink_to(outside)
    with pytest.raises(UnsafeArchive, match="symlink"):
        _merge(tmp_path, [f("lnk2/x", b"escape")], prepare=prepare2)
    assert os.listdir(outside) == []


def test_copy_entry_keeps_metadata(tmp_path):
    src = tmp_path / "src"
    dst = tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    _extract([d("tree", 0o750, uid=5, gid=6), f("tree/a", b"a", mode=0o4711, uid=7, gid=8,
                                                 xattrs={"user.x": b"1"}), sym("tree/l", "a")], src)
    s = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    t = os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
    try:
        safeextract.copy_entry(s, t, "tree")
    finally:
        os.close(s)
        os.close(t)
    a = os.stat(dst / "tree" / "a")
    assert (a.st_uid, a.st_gid, stat.S_IMODE(a.st_mode)) == (7, 8, 0o4711)
    assert os.getxattr(dst / "tree" / "a", "user.x") == b"1"
    assert os.readlink(dst / "tree" / "l") == "a"
    tr = os.stat(dst / "tree")
    assert (tr.st_uid, tr.st_gid, stat.S_IMODE(tr.st_mode)) == (5, 6, 0o750)


def test_long_names_in_pax_and_gnu_formats(tmp_path):
    import io
    import tarfile
    long = "d" * 120 + "/" + "f" * 150
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
            info, data = f(long, b"long")
            tar.addfile(info, io.BytesIO(data))
            info, _ = hard("link-" + "x" * 120, long)
            tar.addfile(info)
        target = tmp_path / str(fmt)
        target.mkdir()
        with Root(str(target), "t") as root:
            stream = TarStream(BytesSource(buf.getvalue()), "t")
            safeextract.extract(stream, root, "t", False)
            assert stream.ended
        assert (target / long).read_bytes() == b"long"
        assert os.stat(target / ("link-" + "x" * 120)).st_ino == os.stat(target / long).st_ino


def test_many_directories_stay_below_the_fd_limit(tmp_path):
    """A diff with thousands of directories must not need an fd per directory."""
    import resource
    entries = []
    for i in range(1500):
        entries += [d(f"dir{i}"), d(f"dir{i}/sub"), f(f"dir{i}/sub/file", b"x")]
    soft, hard_limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(512, hard_limit), hard_limit))
    try:
        t = _merge(tmp_path, entries, deleted=[f"/dir{i}/sub/file" for i in range(0, 1500, 2)])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard_limit))
    assert (t / "dir1499" / "sub" / "file").read_bytes() == b"x"
    assert not (t / "dir0" / "sub" / "file").exists()


class _Pieces:
    """A source that hands out at most 3000 bytes at a time (a chain of readers, a pipe): a file's data
    then spans many of TarStream's read-ahead pieces, and _extract_regular must finish it with copy_data."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)

    def read_view(self, n: int) -> memoryview:
        v, self._view = self._view[:min(n, 3000)], self._view[min(n, 3000):]
        return v


@pytest.mark.parametrize("source", [BytesSource, _Pieces])
def test_regular_files_whole_or_across_pieces(tmp_path, source):
    big = os.urandom(3 * 1024 * 1024 + 5)            # past TarStream's read-ahead piece (1 MiB)
    entries = [f(f"s{i}", bytes([i]) * (i * 1000)) for i in range(8)] + [f("big", big, mode=0o4711, uid=7, gid=8)]
    with Root(str(tmp_path), "test") as root:
        result = safeextract.extract(TarStream(source(tar_bytes(entries)), "test"), root, "test", False)
    assert result.members == 9 and result.bytes == sum(i * 1000 for i in range(8)) + len(big)
    for i in range(8):
        assert (tmp_path / f"s{i}").read_bytes() == bytes([i]) * (i * 1000)
    st = os.stat(tmp_path / "big")
    assert (tmp_path / "big").read_bytes() == big
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), int(st.st_mtime)) == (7, 8, 0o4711, 1_700_000_000)


def test_truncated_regular_file_is_refused(tmp_path):
    data = tar_bytes([f("a", b"x" * 5000)])
    with Root(str(tmp_path), "test") as root, pytest.raises(RuncCkptError, match="truncated"):
        safeextract.extract(TarStream(BytesSource(data[:512 + 3000]), "test"), root, "test", False)


def test_a_file_owned_by_us_gets_our_group_in_a_setgid_dir_of_another(tmp_path):
    """No fchown for a member owned by us only where a new file is ours already: a setgid directory of
    another group (the staging dir's parent, or a directory a first extraction gave its metadata, as a
    stream's phase 1 does before its delta) would otherwise hand its group to the file."""
    us = Root.OWNER
    inherited, plain = tmp_path / "inherited", tmp_path / "plain"
    inherited.mkdir()
    plain.mkdir()
    os.chown(inherited, us[0], 4242)
    os.chmod(inherited, 0o2755)
    _extract([f("a", uid=us[0], gid=us[1])], inherited)
    with Root(str(plain), "test") as root:
        first = safeextract.extract(TarStream(BytesSource(tar_bytes(
            [d("sg", 0o2755, uid=us[0], gid=4343), f("sg/b", uid=us[0], gid=us[1])])), "test"), root, "test", False)
        # The delta: over the same root and its cache, after sg/ got group 4343 and its setgid bit.
        safeextract.extract(TarStream(BytesSource(tar_bytes([f("sg/c", uid=us[0], gid=us[1])])), "test"),
                            root, "test", False, first)
    for path in (inherited / "a", plain / "sg" / "b", plain / "sg" / "c"):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == us, path
    assert os.stat(plain / "sg").st_gid == 4343
    # Without the check, a new file there takes the directory's group: the case the test guards.
    for where in (inherited, plain / "sg"):
        (where / "new").write_bytes(b"")
        assert os.stat(where / "new").st_gid != us[1]
