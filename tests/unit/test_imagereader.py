"""runtime.criu.imagereader: the forked helper answers what an in-process read answers, or the parent reads.

Its images are written with pycriu's own encoder (images.dump_image). The
helper must hold no descriptor of ours (a lock would outlive us through
it), end when its parent does, and never turn a bad image into a pass.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

import pytest

from runc_ckpt.runtime.criu import imagereader, images
from tests.conftest import REPO

FOWN = {"uid": 0, "euid": 0, "signum": 0, "pid_type": 0, "pid": 0}


def _reg(fid: int, name: str, mode: int, size: int, build_id: list[int] | None = None) -> dict:
    reg = {"id": fid, "flags": 0, "pos": 0, "fown": FOWN, "name": name, "mode": mode, "size": size}
    if build_id:
        reg["build_id"] = build_id
    return {"type": "REG", "id": fid, "reg": reg}


def _image_dir(path, files: list[dict]):
    path.mkdir()
    with open(path / images.INVENTORY_IMG, "wb") as f:
        images.dump_image("INVENTORY", [{"img_version": 2}], f)
    with open(path / images.FILES_IMG, "wb") as f:
        images.dump_image("FILES", files, f)
    (path / images.CPUINFO_IMG).write_bytes(b"\x01\x02cpu")
    return path


@pytest.fixture
def image_dir(tmp_path):
    return _image_dir(tmp_path / "checkpoint", [_reg(1, "/bin/busybox", 0o100755, 1982256, [941271565, 2429671509]),
                                                _reg(2, "/etc/passwd", 0o100644, 340)])


def _facts(found: images.ImageNeeds) -> tuple:
    """ImageNeeds is a slotted class without __eq__: its fields, to compare."""
    return tuple(getattr(found, name) for name in images.ImageNeeds.__slots__)


@pytest.fixture(autouse=True)
def _no_helper_left():
    yield
    imagereader.stop()


def test_the_helper_answers_what_an_in_process_read_does(image_dir):
    imagereader.start()
    helper = imagereader._helper
    assert helper is not None and helper._pid is not None
    pid = helper._pid
    got = imagereader.needs(str(image_dir))
    assert _facts(got) == _facts(images.read(str(image_dir)))
    assert [f.path for f in got.files] == ["/bin/busybox", "/etc/passwd"] and got.cpuinfo == b"\x01\x02cpu"
    assert imagereader._helper is None
    imagereader.stop()                          # the call's end (commands.restore.run) reaps it
    with pytest.raises(ChildProcessError):      # reaped: no zombie left
        os.waitpid(pid, os.WNOHANG)


def test_a_bad_image_is_refused_through_the_helper(tmp_path):
    bad = tmp_path / "checkpoint"
    bad.mkdir()
    (bad / images.INVENTORY_IMG).write_bytes(b"\0" * 16)
    (bad / images.FILES_IMG).write_bytes(b"\x01\x02\x03\x04garbage")
    imagereader.start()
    with pytest.raises(images.ImageError, match="files.img: CRIU's decoder cannot read it"):
        imagereader.needs(str(bad))


def test_a_helper_that_dies_leaves_the_read_to_the_parent(image_dir):
    imagereader.start()
    helper = imagereader._helper
    assert helper is not None and helper._pid is not None
    os.kill(helper._pid, 9)
    assert _facts(imagereader.needs(str(image_dir))) == _facts(images.read(str(image_dir)))


def test_without_a_helper_the_parent_reads(image_dir, tmp_path):
    assert imagereader._helper is None
    assert _facts(imagereader.needs(str(image_dir))) == _facts(images.read(str(image_dir)))
    assert _facts(imagereader.needs(str(tmp_path))) == _facts(images.ImageNeeds())     # no checkpoint there: nothing known


def test_the_helper_holds_no_descriptor_of_ours(tmp_path):
    """A lock taken before the fork is free once we close it: the child closed its copy at once."""
    path = tmp_path / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.set_inheritable(fd, True)
    imagereader.start()
    os.close(fd)
    other = os.open(path, os.O_RDWR)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "the helper still holds the lock's descriptor"
                time.sleep(0.01)
    finally:
        os.close(other)


def test_the_helper_ends_with_its_parent(tmp_path):
    """A parent killed before it asks: the helper sees EOF on its request pipe and is gone."""
    probe = ("import os, sys\nfrom runc_ckpt.runtime.criu import imagereader\nimagereader.start()\n"
             "print(imagereader._helper._pid, flush=True)\nos._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and "Z" not in _state(pid):
        assert time.monotonic() < deadline, "the helper outlived its parent"
        time.sleep(0.02)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_asked_early_the_helper_answers_where_needs_is_called(image_dir):
    """restore.hostpreflight.prefetch asks once the archive is staged; the answer is the same, taken later."""
    imagereader.start()
    helper = imagereader._helper
    assert helper is not None
    imagereader.ask(str(image_dir))
    imagereader.ask(str(image_dir))             # one question: a second ask is a no-op
    assert imagereader._helper is helper        # still the caller's until needs() takes the answer
    assert _facts(imagereader.needs(str(image_dir))) == _facts(images.read(str(image_dir)))
    assert imagereader._helper is None


def test_an_answer_about_another_dir_is_not_used(image_dir, tmp_path):
    """Asked about one dir, needed for another: the parent reads the one it needs itself."""
    other = _image_dir(tmp_path / "other", [_reg(1, "/etc/hosts", 0o100644, 12)])
    imagereader.start()
    imagereader.ask(str(image_dir))
    got = imagereader.needs(str(other))
    assert [f.path for f in got.files] == ["/etc/hosts"]
    assert _facts(got) == _facts(images.read(str(other)))


def test_without_a_helper_ask_does_nothing(image_dir):
    assert imagereader._helper is None
    imagereader.ask(str(image_dir))
    assert _facts(imagereader.needs(str(image_dir))) == _facts(images.read(str(image_dir)))
