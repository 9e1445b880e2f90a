"""Which memory pre-copy a host can do: CRIU's own pre-dump where soft-dirty works, the content diff elsewhere."""

from __future__ import annotations

import os

import pytest

from runc_ckpt.runtime.criu import features

OFF = "Warn  (criu/cr-check.c:824): Dirty tracking is OFF. Memory snapshot will not work.\n"


@pytest.mark.parametrize(("returncode", "stderr", "method"), [
    (0, "Looks good.\n", features.PRE_DUMP),
    (1, OFF, features.CONTENT_DIFF),
])
def test_the_path_follows_criu_check(fp, criu, tmp_path, returncode, stderr, method):
    fp.register([os.path.realpath(criu), "check", "--feature", "mem_dirty_track"], returncode=returncode,
                stderr=stderr)
    choice = features.memory_precopy(criu, str(tmp_path / "state"))
    assert choice.method == method
    if method == features.CONTENT_DIFF:
        assert "Dirty tracking is OFF" in choice.reason


def test_the_answer_is_cached_per_criu_and_kernel(fp, criu, tmp_path):
    """Registered once: a second question is answered from the state dir, not by running CRIU again."""
    fp.register([os.path.realpath(criu), "check", "--feature", "mem_dirty_track"], returncode=1, stderr=OFF)
    state = str(tmp_path / "state")
    assert features.memory_precopy(criu, state) == features.memory_precopy(criu, state)
    assert len(fp.calls) == 1
