"""Every archive of the hostile corpus is refused, with one error line and nothing written anywhere.

The restore target (bundle, base rootfs, volume, a victim dir outside) is
snapshotted before and after: the whole tree must be identical (directory
mtimes aside) and no staging dir may be left. runc must never be asked to
restore.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile import builder
from tests.hostile.harness import make_target, snapshot

SKIP = ("fake-runc.log", "archive.tar")


def _cases() -> list[str]:
    return sorted(builder.corpus(Path("/x"), "/x/v").keys())


@pytest.mark.parametrize("case_name", _cases())
def test_hostile_archive_is_refused_and_nothing_is_written(case_name, tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    case = builder.corpus(t.outside, str(t.volume))[case_name]
    if case.plant:
        case.plant(t.rootfs, t.outside)
    archive = builder.write(case.archive, tmp_path / "archive.tar", compression=case.compression, cut=case.cut)
    before = snapshot(tmp_path, skip=SKIP)

    out = t.restore("--import", str(archive))

    assert out.returncode != 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "level=error" in lines[0]
    assert case.expect in lines[0], lines[0]
    assert "Traceback" not in out.stderr
    assert snapshot(tmp_path, skip=SKIP) == before
    assert not [c for c in t.runc_calls() if " restore " in f" {c} "]
    assert archive.exists()


def test_benign_twin_of_the_corpus_is_accepted(tmp_path, runc_ckpt_bin):
    """The corpus fails for its hostile part only: the same base archive restores."""
    t = make_target(tmp_path, runc_ckpt_bin)
    a = builder.base(str(t.volume), volume_tar=builder.tar_bytes([builder.f("v", b"volume data\n")]))
    archive = builder.write(a, tmp_path / "archive.tar")
    out = t.restore("--import", str(archive))
    assert out.returncode == 0, out.stderr
    assert (t.rootfs / "newfile").read_text() == "new\n"
    assert (t.volume / "v").read_text() == "volume data\n"
    assert any(" restore " in f" {c} " for c in t.runc_calls())
