"""A full disk while staging: one error line, rootfs untouched, staging removed (a 1 MiB tmpfs)."""

from __future__ import annotations

import os

import pytest

from tests.hostile import builder
from tests.hostile.harness import make_target, snapshot
from tests.integration.conftest import mounted


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)):
        yield mnt


def test_full_disk_while_staging_rootfs_diff(small_tmpfs, tmp_path, runc_ckpt_bin):
    t = make_target(small_tmpfs, runc_ckpt_bin)
    big = builder.tar_bytes([builder.f("big", os.urandom(3 << 20))])
    archive = builder.write(builder.base(str(t.volume), rootfs_diff=big), tmp_path / "archive.tar")
    before = snapshot(small_tmpfs, skip=("fake-runc.log",))
    out = t.restore("--import", str(archive))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], out.stderr
    assert snapshot(small_tmpfs, skip=("fake-runc.log",)) == before
    assert not [c for c in t.runc_calls() if " restore " in f" {c} "]
