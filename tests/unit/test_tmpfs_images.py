"""state.tmpfsimages: what the next call does with the tmpfs dir of a killed encrypted checkpoint.

A dead call's complete dump is kept (linked as the state dir's checkpoint) while the container is gone --
its only copy -- and wiped once the container runs; an incomplete one, a torn record's dir and a dir the
container no longer needs are wiped; a record naming anything but one of our tmpfs dirs removes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.state import tmpfsimages


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.fixture
def cdir(tmp_path):
    d = tmp_path / "state" / "ctr"
    d.mkdir(parents=True)
    return str(d)


def made(cdir: str, name: str, complete: bool, alive: bool = False) -> str:
    """A tmpfs dir as a (dead, unless alive) call left it, with its record."""
    directory = os.path.join(tmpfsimages.TMPFS, tmpfsimages.PREFIX + name)
    tmpfsimages.make(cdir, directory)
    images = tmpfsimages.images_of(directory)
    os.mkdir(images)
    with open(os.path.join(images, "pages-1.img"), "wb") as f:
        f.write(b"secret pages")
    if complete:
        with open(os.path.join(images, "inventory.img"), "wb") as f:
            f.write(b"inv")
    if not alive:
        record = os.path.join(cdir, f".tmpfs-{os.path.basename(directory)}.json")
        with open(record) as f:
            doc = json.load(f)
        doc["pid"], doc["start"] = dead_pid(), None
        with open(record, "w") as f:
            json.dump(doc, f)
    return directory


def test_a_complete_dump_of_a_dead_call_is_kept_and_linked_while_the_container_is_gone(cdir, fake_tmpfs):
    d = made(cdir, "a", complete=True)
    assert "kept the images" in tmpfsimages.recover(cdir)[0]
    assert os.readlink(os.path.join(cdir, "checkpoint")) == tmpfsimages.images_of(d)
    assert tmpfsimages.sweep(cdir, container_exists=False) == []
    assert os.path.isdir(d)
    # The container runs again (restored from them): the next call wipes them, link and record too.
    assert "removed" in tmpfsimages.sweep(cdir, container_exists=True)[0]
    assert os.listdir(fake_tmpfs.root) == [] and os.listdir(cdir) == []


def test_an_incomplete_dump_is_wiped(cdir, fake_tmpfs):
    made(cdir, "a", complete=False)
    assert "incomplete" in tmpfsimages.recover(cdir)[0]
    assert os.listdir(fake_tmpfs.root) == [] and os.listdir(cdir) == []


def test_a_live_call_is_left_alone(cdir, fake_tmpfs):
    d = made(cdir, "a", complete=False, alive=True)
    assert tmpfsimages.recover(cdir) == [] and tmpfsimages.sweep(cdir, container_exists=True) == []
    assert os.path.isdir(d)


def test_a_newer_dump_replaces_older_state_dir_images(cdir, fake_tmpfs):
    old = os.path.join(cdir, "checkpoint")
    os.mkdir(old)
    with open(os.path.join(old, "inventory.img"), "wb") as f:
        f.write(b"old")
    os.utime(os.path.join(old, "inventory.img"), (1, 1))
    d = made(cdir, "a", complete=True)
    tmpfsimages.recover(cdir)
    assert os.readlink(old) == tmpfsimages.images_of(d)


def test_a_torn_record_is_judged_by_its_name(cdir, fake_tmpfs):
    d = made(cdir, "a", complete=False)
    with open(os.path.join(cdir, f".tmpfs-{os.path.basename(d)}.json"), "w") as f:
        f.write('{"dir": ')
    tmpfsimages.recover(cdir)
    assert not os.path.exists(d) and os.listdir(cdir) == []


def test_a_record_naming_another_path_removes_nothing(cdir, fake_tmpfs, tmp_path):
    victim = tmp_path / "precious"
    victim.mkdir()
    with open(os.path.join(cdir, ".tmpfs-runc-ckpt-images-x.json"), "w") as f:
        json.dump({"dir": str(victim), "pid": dead_pid(), "start": None}, f)
    assert tmpfsimages.recover(cdir) == [] and tmpfsimages.sweep(cdir, True) == []
    assert victim.is_dir() and os.listdir(cdir) == []


def test_wipe_leaves_a_dump_incomplete_first(cdir, fake_tmpfs, monkeypatch):
    """Killed in the middle of a wipe, what is left must read as incomplete (so the next call wipes it)."""
    d = made(cdir, "a", complete=True)
    monkeypatch.setattr(tmpfsimages.safe_remove, "remove_tree", lambda *a, **k: False)
    tmpfsimages.wipe(cdir, d)
    assert not tmpfsimages.complete(d)
    assert os.listdir(cdir) == [f".tmpfs-{os.path.basename(d)}.json"]   # the record stays: the dir is still there


def test_choose_refuses_where_dev_shm_is_not_tmpfs(monkeypatch):
    monkeypatch.setattr(tmpfsimages, "TMPFS", "/")       # / is not tmpfs here (and not a tmpfs on any host we run)
    monkeypatch.setattr(tmpfsimages.mountinfo, "find_mount",
                        lambda path, mountinfo_path=None: tmpfsimages.mountinfo.Mount("/", "ext4", "/dev/sda1"))
    with pytest.raises(RuncCkptError, match="is not a tmpfs mount"):
        tmpfsimages.choose()


def test_choose_accepts_this_hosts_dev_shm():
    d = tmpfsimages.choose()
    assert os.path.dirname(d) == "/dev/shm" and not os.path.exists(d)
