"""safeextract's forked helper (archive.filemaker) ends where in-process extraction ends, member for member.

Each case runs twice: FORK_AFTER 0 (the helper makes every file and directory
it may) and FORK_AFTER past any test's size (no helper); trees, refusals and
error messages must be the same, and the helper must be gone afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runc_ckpt.archive import filemaker, reader, safeextract
from runc_ckpt.archive.safeextract import Root, UnsafeArchive
from runc_ckpt.archive.tarstream import BytesSource, TarStream
from runc_ckpt.base.errors import RuncCkptError
from tests.hostile import builder
from tests.hostile.builder import d, f, hard, sym, tar_bytes

NEVER = 1 << 30


@pytest.fixture
def helpers(monkeypatch):
    """The pids of the helpers forked, to check they were reaped (on a machine of any CPU count)."""
    monkeypatch.setattr(safeextract.os, "sched_getaffinity", lambda _pid: {0, 1})
    pids: list[int] = []
    real = filemaker.FileMaker.__init__

    def spy(self, *args):
        real(self, *args)
        pids.append(self.pid)
    monkeypatch.setattr(filemaker.FileMaker, "__init__", spy)
    return pids


def _tree(root: Path, dir_mtimes: bool = True) -> dict[str, tuple]:
    """Every entry's type, mode, owner, mtime, link count, content or link target, and xattrs."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if os.path.islink(p):
                body: object = os.readlink(p)
            elif os.path.isfile(p):
                body = Path(p).read_bytes()
            else:
                body = None
            xattrs = {} if os.path.islink(p) else {k: os.getxattr(p, k) for k in os.listxattr(p)}
            is_dir = os.path.isdir(p) and not os.path.islink(p)
            mtime = None if is_dir and not dir_mtimes else st.st_mtime_ns
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, mtime, None if is_dir else st.st_nlink,
                                             body, xattrs)
    return out


def _odd(entry, mtime):
    entry[0].mtime = mtime
    return entry


def _extract(entries, where: Path, fork_after: int, monkeypatch) -> dict[str, tuple]:
    monkeypatch.setattr(safeextract, "FORK_AFTER", fork_after)
    where.mkdir()
    with Root(str(where), "test") as root:
        safeextract.extract(TarStream(BytesSource(tar_bytes(entries)), "test"), root, "test", True)
    return _tree(where)


def test_a_tree_made_by_the_helper_equals_the_in_process_one(tmp_path, monkeypatch, helpers):
    many = [d("d0", 0o750, uid=3, gid=4)] + [f(f"d0/f{i}", bytes([i % 256]) * (i % 3000), mode=0o640)
                                            for i in range(400)]
    entries = many + [
        d("x", 0o711), f("x/inner", b"1"), f("x", b"now a file"),        # a file replaces a directory
        d("x", 0o701), f("x/y", b"under the new x"),                      # ... and a directory that file
        sym("s", "t"), f("s", b"a file where a link was"),                # the helper replaces what the parent made
        f("t", b"t"), sym("t", "d0/f1"),                                   # the parent replaces what the helper made
        hard("h", "d0/f7"),                                                # a link to a file the helper made
        f("big", b"b" * (safeextract.HELPER_MAX + 5)),                     # written by the parent
        f("caps", b"c", xattrs={"user.k": b"v"}),                          # xattrs: by the parent
        f("suid", b"s", mode=0o4755, uid=5, gid=6),                        # chown, then the setuid bit
        f("d0/f3", b"again"),                                               # a repeated name
        d("late"), d("late/sub", 0o700, uid=9),
        *[d("/".join(["n" * 250] * k)) for k in (1, 2, 3)], f("/".join(["n" * 250] * 3) + "/deep"),  # long PAX paths
        _odd(f("unowned", b"u", uid=-1), 1_700_000_000),                  # owner -1: fchown keeps ours
        _odd(f("future", b"f"), (1 << 33) + 5),                           # past what an op holds
    ]
    helper = _extract(entries, tmp_path / "helper", 0, monkeypatch)
    inline = _extract(entries, tmp_path / "inline", NEVER, monkeypatch)
    assert helper == inline
    assert helper["x"][0] & 0o7777 == 0o701 and helper["suid"][0] & 0o7777 == 0o4755
    assert helper["h"][4] == 2 and helper["s"][5] == b"a file where a link was"
    assert len(helpers) == 1 and not os.path.exists(f"/proc/{helpers[0]}")


def test_the_fork_comes_after_fork_after_small_files(tmp_path, monkeypatch, helpers):
    entries = [f(f"f{i}") for i in range(10)]
    _extract(entries, tmp_path / "a", 10, monkeypatch)
    assert helpers == []
    _extract(entries + [f("one-more")], tmp_path / "b", 10, monkeypatch)
    assert len(helpers) == 1


@pytest.mark.parametrize("entries", [
    [d("a"), sym("a/b", "/"), f("a/b/escape")],
    [f("plain"), f("plain/under")],
    [d("x"), f("x/in"), f("x"), f("x/again")],
    [d("z"), f("z/a"), sym("z", "elsewhere"), f("z/b")],
], ids=["through-a-symlink", "through-a-file", "through-a-replaced-dir", "through-a-link-the-parent-made"])
def test_the_helpers_refusal_is_the_in_process_one(entries, tmp_path, monkeypatch, helpers):
    errors = []
    for fork_after in (0, NEVER):
        with pytest.raises(UnsafeArchive) as e:
            _extract(entries, tmp_path / str(fork_after), fork_after, monkeypatch)
        errors.append(str(e.value))
    assert errors[0] == errors[1] and "symlink or non-directory" in errors[0]
    assert helpers and not any(os.path.exists(f"/proc/{pid}") for pid in helpers)


def _stage_case(name: str, tmp: Path, fork_after: int, monkeypatch) -> tuple[str | None, dict]:
    monkeypatch.setattr(safeextract, "FORK_AFTER", fork_after)
    rootfs, volume, outside, imports = tmp / "rootfs", tmp / "volume", tmp / "outside", tmp / "import"
    for p in (rootfs / "etc", volume, outside, imports):
        p.mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (outside / "secret").write_text("secret\n")
    case = builder.corpus(outside, str(volume))[name]
    if case.plant:
        case.plant(rootfs, outside)
    archive = builder.write(case.archive, tmp / "archive.tar", compression=case.compression, cut=case.cut)
    before = _tree(tmp, dir_mtimes=False)
    try:
        reader.stage(str(archive), reader.Targets(str(imports), str(rootfs), lambda _n, _s: str(volume))).discard()
        error = None
    except RuncCkptError as e:
        error = str(e).replace(str(tmp), "<tmp>")
    after = {k: v for k, v in _tree(tmp, dir_mtimes=False).items() if not k.startswith("import")}
    assert after == {k: v for k, v in before.items() if not k.startswith("import")}
    return error, after


@pytest.mark.parametrize("name", sorted(builder.corpus(Path("/x"), "/x/v")))
def test_the_hostile_corpus_stages_alike_with_and_without_the_helper(name, tmp_path, monkeypatch, helpers):
    helper = _stage_case(name, tmp_path / "helper", 0, monkeypatch)
    inline = _stage_case(name, tmp_path / "inline", NEVER, monkeypatch)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in helpers)
    assert helper[0] == inline[0]
    assert {k.split("/", 1)[-1]: v[:3] for k, v in helper[1].items()} == \
        {k.split("/", 1)[-1]: v[:3] for k, v in inline[1].items()}


def test_no_process_to_fork_means_in_process_as_before(tmp_path, monkeypatch, helpers):
    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")
    monkeypatch.setattr(filemaker.os, "fork", no_fork)
    entries = [d("a", 0o750)] + [f(f"a/f{i}", b"x" * i, mode=0o4755, uid=i) for i in range(50)]
    fds = len(os.listdir("/proc/self/fd"))
    without = _extract(entries, tmp_path / "without", 0, monkeypatch)
    assert len(os.listdir("/proc/self/fd")) == fds                 # the helper's pipes were closed
    assert helpers == [] and without == _extract(entries, tmp_path / "inline", NEVER, monkeypatch)


def test_on_one_cpu_there_is_no_helper(tmp_path, monkeypatch, helpers):
    monkeypatch.setattr(safeextract.os, "sched_getaffinity", lambda _pid: {0})
    _extract([f(f"f{i}") for i in range(20)], tmp_path / "one", 0, monkeypatch)
    assert helpers == []
