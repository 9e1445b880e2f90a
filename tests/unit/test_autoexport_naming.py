"""Auto-export names sort by time, never collide, and retention touches only our files."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timezone

import pytest

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.checkpoint import autoexport

T0 = datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize("compress,ext", [("zstd", ".tar.zst"), ("gzip", ".tar.gz"), ("none", ".tar")])
def test_name_has_id_utc_stamp_and_extension(tmp_path, compress, ext):
    p = autoexport.archive_path(str(tmp_path), "web-1", T0, compress)
    assert p == str(tmp_path / f"web-1-20261126T100000.123456Z{ext}")


def test_float_now_and_local_timezone_become_utc(tmp_path):
    from datetime import timedelta
    local = T0.astimezone(timezone(timedelta(hours=5)))
    assert autoexport.archive_path(str(tmp_path), "c", local) == autoexport.archive_path(str(tmp_path), "c", T0)
    assert autoexport.archive_path(str(tmp_path), "c", T0.timestamp()).endswith("c-20261126T100000.123456Z.tar.zst")


def test_names_sort_by_time(tmp_path):
    names = [os.path.basename(autoexport.archive_path(str(tmp_path), "c", T0.timestamp() + d))
             for d in (3600 * 24 * 40, 0, 5, 0.5)]
    stamps = sorted(names)
    assert stamps == [names[1], names[3], names[2], names[0]]


def test_existing_name_is_never_reused(tmp_path):
    first = autoexport.archive_path(str(tmp_path), "c", T0)
    open(first, "w").close()
    second = autoexport.archive_path(str(tmp_path), "c", T0)
    assert second != first and second > first
    # Also an existing archive of another compression at the same instant.
    open(second.replace(".tar.zst", ".tar.gz"), "w").close()
    third = autoexport.archive_path(str(tmp_path), "c", T0)
    assert third not in (first, second) and third > second


@pytest.mark.parametrize("cid", ["", ".", "..", "a/b", "a b", "../x"])
def test_bad_container_id_is_refused(tmp_path, cid):
    with pytest.raises(RuncCkptError, match="invalid container id"):
        autoexport.archive_path(str(tmp_path), cid, T0)


def test_unknown_compression(tmp_path):
    with pytest.raises(RuncCkptError, match="unknown compression"):
        autoexport.archive_path(str(tmp_path), "c", T0, "lz4")


def make(tmp_path, cid, n, compress="zstd", start=0):
    paths = []
    for i in range(n):
        p = autoexport.archive_path(str(tmp_path), cid, T0.timestamp() + start + i, compress)
        with open(p, "w") as f:
            f.write(str(i))
        paths.append(p)
    return paths


def test_prune_keeps_the_newest(tmp_path):
    mine = make(tmp_path, "c", 5)
    assert autoexport.prune(str(tmp_path), "c", 2) == mine[:3]
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in mine[3:])


def test_prune_zero_keeps_all(tmp_path):
    make(tmp_path, "c", 3)
    assert autoexport.prune(str(tmp_path), "c", 0) == []
    assert len(os.listdir(tmp_path)) == 3


def test_prune_orders_by_stamp_across_compressions(tmp_path):
    old = make(tmp_path, "c", 1, "gzip")
    new = make(tmp_path, "c", 1, "none", start=10)
    assert autoexport.prune(str(tmp_path), "c", 1) == old
    assert os.path.exists(new[0])


def test_prune_never_touches_other_files(tmp_path):
    mine = make(tmp_path, "c", 3)
    others = make(tmp_path, "c-2", 2) + make(tmp_path, "cc", 2) + make(tmp_path, "xc", 1)
    # Files only resembling our names, the writer's temp files, dirs and symlinks.
    strays = ["c-20261126T100000.123456Z.tar.zst.tmp", ".c-20261126T100000.123456Z.tar.zst.part",
              "c-2026.tar.zst", "c-20261126T100000Z.tar.zst", "c-20261126T100000.123456Z.tar.xz", "c", "notes.txt"]
    for s in strays:
        (tmp_path / s).write_text("x")
    d = tmp_path / "c-20261126T090000.000000Z.tar.zst"
    d.mkdir()
    link = tmp_path / "c-20261126T080000.000000Z.tar.zst"
    target = tmp_path / "precious"
    target.write_text("keep me")
    link.symlink_to(target)
    removed = autoexport.prune(str(tmp_path), "c", 1)
    assert removed == mine[:2]
    for p in others + [str(tmp_path / s) for s in strays] + [str(d), str(target)]:
        assert os.path.exists(p), p
    assert link.is_symlink()


def test_container_id_that_looks_like_a_stamp_is_still_separate(tmp_path):
    tricky = "c-20261126T100000.123456Z"
    plain = make(tmp_path, "c", 2)
    tricky_files = make(tmp_path, tricky, 2)
    assert autoexport.archives(str(tmp_path), "c") == plain
    assert autoexport.archives(str(tmp_path), tricky) == tricky_files


def test_prune_missing_dir_is_nothing(tmp_path):
    assert autoexport.prune(str(tmp_path / "none"), "c", 1) == []


def test_prune_failure_names_the_file(tmp_path, monkeypatch):
    mine = make(tmp_path, "c", 2)

    def refuse(path):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(os, "unlink", refuse)
    with pytest.raises(RuncCkptError, match=f"cannot remove {mine[0]}: Permission denied"):
        autoexport.prune(str(tmp_path), "c", 1)


def test_prepare_creates_private_dir(tmp_path):
    d = tmp_path / "a" / "b"
    autoexport.prepare(str(d))
    assert d.is_dir() and (d.stat().st_mode & 0o777) == 0o700
    autoexport.prepare(str(d))  # idempotent


def test_prepare_refuses_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    with pytest.raises(RuncCkptError, match="export dir"):
        autoexport.prepare(str(f))
