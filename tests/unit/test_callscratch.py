"""A killed call's scratch dir (--incremental-from, --pre-copy): swept by the next call on the container, whatever it is
(state/settle via state/callscratch); a live call's dir, whose flock is held, is never taken."""

from __future__ import annotations

import os
import signal

import pytest

from runc_ckpt.state import callscratch
from tests.reliability_env import leftovers, make_host


def test_sweep_removes_a_dead_calls_scratch_but_never_a_live_ones(tmp_path):
    live_fd, live = callscratch.make(str(tmp_path))
    dead_fd, dead = callscratch.make(str(tmp_path))
    for d in (live, dead):
        with open(os.path.join(d, "pages-1.img"), "wb") as f:
            f.write(b"x" * 4096)
    os.close(dead_fd)                                   # its call was killed: the flock went with it
    other = tmp_path / "checkpoint"
    other.mkdir()
    try:
        messages = callscratch.sweep(str(tmp_path))
        assert messages == [f"removed {dead}, the scratch dir of a killed call"]
        assert not os.path.lexists(dead)
        assert os.path.isfile(os.path.join(live, "pages-1.img")) and other.is_dir()
    finally:
        os.close(live_fd)
    callscratch.sweep(str(tmp_path))
    assert not os.path.lexists(live)


@pytest.fixture
def h(tmp_path, runc_ckpt_bin):
    return make_host(tmp_path, runc_ckpt_bin)


@pytest.mark.parametrize("next_call", ["plain-export", "restore"])
def test_a_killed_incremental_exports_scratch_goes_with_the_next_call_of_any_kind(h, next_call):
    b = h.bundle()
    h.container("web", b)
    parent = h.tmp / "job-0.tar"
    assert h.run("checkpoint", "-R", "--export", str(parent), "web").returncode == 0
    killed = h.run("checkpoint", "-R", "--export", str(h.tmp / "job-1.tar"), "--incremental-from", str(parent),
                   "web", fault="chain-staged:kill")
    assert killed.returncode == -signal.SIGKILL
    left = list((h.state / "web").glob(callscratch.PREFIX + "*"))
    assert len(left) == 1 and any(left[0].iterdir()), "the fault did not leave the staged chain"
    assert not (h.tmp / "job-1.tar").exists()
    if next_call == "plain-export":      # no --incremental-from: only the general settle can sweep it
        out = h.run("checkpoint", "-R", "--export", str(h.tmp / "other.tar"), "web")
    else:
        h.forget("web")
        out = h.run("restore", "--import", str(parent), "--bundle", str(b), "-d", "web")
    assert out.returncode == 0, out.stderr
    assert not list((h.state / "web").glob(callscratch.PREFIX + "*"))
    assert not leftovers(h.state)
