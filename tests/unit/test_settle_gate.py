"""settle() scans /proc for a runc still at work on the ID only when there is something to repair.

The scan (procscan.runc_working_on) reads every process's cmdline: thousands on a Kubernetes node, on
every checkpoint. A healthy container's checkpoint (state.json present, nothing mounted in the runc or work
dir, no intent record of a killed call) must not pay for it; every sign of a killed run must still trigger it.
"""

from __future__ import annotations

import json
import os

import pytest

from runc_ckpt.runtime import containerid, leftovers, mounttable
from runc_ckpt.state import intent, settle


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A runc root with a recorded container `web`, a state dir, and a counter of /proc scans."""
    root, state = tmp_path / "root", tmp_path / "state"
    (root / "web").mkdir(parents=True)
    (root / "web" / "state.json").write_text("{}")
    state.mkdir()
    scans: list[str] = []
    monkeypatch.setattr(leftovers.procscan, "runc_working_on", lambda r, cid: scans.append(cid) or [])
    monkeypatch.setattr(mounttable, "mount_points", lambda mountinfo=mounttable.MOUNTINFO: [])
    return root, state, scans


def _settle(root, state) -> list[str]:
    return settle.settle("/bin/false", str(root), str(state), "web", None, 1.0)


def test_a_healthy_container_is_settled_without_scanning_proc(world):
    root, state, scans = world
    assert _settle(root, state) == []
    assert scans == []


def test_an_orphaned_intent_waits_for_a_runc_still_at_work(world):
    root, state, scans = world
    cdir = containerid.container_dir(str(state), "web")
    os.makedirs(cdir)
    with open(os.path.join(cdir, ".intent-checkpoint.json"), "w") as f:
        json.dump({"pid": 2 ** 22 + 1, "start": 1, "bundle": "", "root": str(root), "since": 0}, f)
    assert intent.CHECKPOINT in intent.orphaned(cdir)
    _settle(root, state)
    assert scans == ["web"]


def test_a_runc_dir_without_state_json_waits(world, monkeypatch):
    root, state, scans = world
    (root / "web" / "state.json").unlink()
    monkeypatch.setattr(leftovers, "_kill_survivors", lambda scope: [])
    monkeypatch.setattr(leftovers.safe_remove, "remove_tree", lambda path, ignore_errors: True)
    _settle(root, state)
    assert scans == ["web"]


def test_a_mount_left_in_the_runc_dir_waits(world, monkeypatch):
    root, state, scans = world
    point = os.path.realpath(root / "web" / "criu-root")
    monkeypatch.setattr(mounttable, "mount_points", lambda mountinfo=mounttable.MOUNTINFO: ["/", point])
    monkeypatch.setattr(mounttable, "unmount", lambda path: None)
    assert any(point in m for m in _settle(root, state))
    assert scans == ["web"]


def test_a_new_id_is_settled_without_reading_every_processs_fds(world, monkeypatch):
    """A restore's new ID has no state.json: nothing of a killed restore can be held in dirs that are not there,
    so the fd scan (procscan.holding: every fd of every process) is skipped."""
    root, state, _ = world
    (root / "web" / "state.json").unlink()
    (root / "web").rmdir()
    monkeypatch.setattr(leftovers.procscan, "holding", lambda paths: pytest.fail(f"fds scanned for {paths}"))
    assert _settle(root, state) == []


def test_a_killed_restores_work_dir_still_has_its_holders_looked_for(world, monkeypatch):
    root, state, _ = world
    (root / "web" / "state.json").unlink()
    (root / "web").rmdir()
    work = os.path.join(containerid.container_dir(str(state), "web"), settle.RESTORE_WORK)
    os.makedirs(work)
    scanned: list[list[str]] = []
    monkeypatch.setattr(leftovers.procscan, "holding", lambda paths: scanned.append(list(paths)) or [])
    _settle(root, state)
    assert scanned == [[work]]
