"""Live migration as one stream between two simulated hosts, with real runc and CRIU.

Each test: a container on host A (its own --root and state dir) writes a
counter; `checkpoint --export -` streams it to `restore --import -` on host
B (its own --root, state dir and bundle over the same image); the counter
must go on there from where it stopped, and nothing may be left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import COUNTER, wait_for
from tests.integration.migrate_helpers import _finish, pipe, running_pair, socket_pair

SCRIPT = ("echo new > /newfile; rm /etc/lower-file; mkdir -p /data/sub; echo kept > /data/sub/v; "
          "echo 1 > /changes; echo gone > /gone-later; " + COUNTER)


def _setup(make_bundle, containers, tmp_path, busybox_lower, script=SCRIPT):
    return running_pair(make_bundle, containers, tmp_path, busybox_lower, script)


def _leftovers(*dirs: Path) -> list[str]:
    return [f"{d}/{n}" for d in dirs for n in os.listdir(d) if n.startswith(".runc-ckpt")]


def _status(root: Path, cid: str) -> str | None:
    out = subprocess.run(["runc", "--root", str(root), "state", cid], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return None
    import json
    return json.loads(out.stdout)["status"]


def _cleanup(root: Path, cid: str) -> None:
    subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], capture_output=True, check=False)


def test_stream_over_a_pipe_moves_the_container(make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin):
    a, b, src, dst, cid = _setup(make_bundle, containers, tmp_path, busybox_lower)
    try:
        s, r = pipe(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", "-", cid),
                    b.runc_ckpt(runc_ckpt_bin, "restore", "--import", "-", "--bundle", str(dst.path), "-d", cid),
                    a.env, b.env)
        assert s.returncode == 0, s.stderr + r.stderr
        assert r.returncode == 0, r.stderr
        assert r.stdout == b""
        before = src.counter()
        assert _status(a.root, cid) is None
        assert _status(b.root, cid) == "running"
        wait_for(lambda: dst.counter() > before + 2, what="counter to continue on the target")
        assert (dst.rootfs / "newfile").read_text() == "new\n"
        assert not (dst.rootfs / "etc" / "lower-file").exists()
        assert (dst.volumes["vol1"] / "sub" / "v").read_text() == "kept\n"
        assert not _leftovers(dst.path, dst.rootfs)
        assert "images stay in" in s.stderr     # no back channel: the source keeps its images
    finally:
        _cleanup(b.root, cid)


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def _start_pair(send: list[str], recv: list[str], send_env: dict, recv_env: dict):
    r, w = os.pipe()
    ps = subprocess.Popen(send, stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE, env=send_env)
    os.close(w)
    pr = subprocess.Popen(recv, stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=recv_env)
    os.close(r)
    return ps, pr


def test_pre_copy_brings_files_changed_created_and_deleted_between_the_phases(
        make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin):
    a, b, src, dst, cid = _setup(make_bundle, containers, tmp_path, busybox_lower)
    (src.rootfs / "big").write_bytes(os.urandom(1 << 20))
    (src.rootfs / "dir1").mkdir()
    (src.rootfs / "dir1" / "inner").write_text("old\n")
    (src.rootfs / "link1").write_text("linked\n")
    os.link(src.rootfs / "link1", src.rootfs / "link2")
    (src.volumes["vol1"] / "vchange").write_text("v-old\n")
    (src.volumes["vol1"] / "vgone").write_text("x\n")
    env = dict(a.env, RUNC_CKPT_FAULT="phase1-sent:pause")
    ps, pr = _start_pair(a.runc_ckpt(runc_ckpt_bin, "--debug", "checkpoint", "--export", "-", "--pre-copy", cid),
                         b.runc_ckpt(runc_ckpt_bin, "restore", "--import", "-", "--bundle", str(dst.path), "-d",
                                     cid), env, b.env)
    try:
        wait_for(lambda: _stopped(ps.pid), timeout=60, what="the sender to stop after phase 1")
        assert _status(a.root, cid) == "running"      # phase 1 ran while the container ran
        (src.rootfs / "changes").write_text("2\n")     # same size as before, new content
        (src.rootfs / "created-between").write_text("created\n")
        (src.rootfs / "gone-later").unlink()
        (src.rootfs / "dir1" / "inner").write_text("new content\n")
        (src.rootfs / "link2").write_text("relinked\n")  # writes through the shared inode
        (src.rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnew:x:1:1::/:/bin/sh\n")
        (src.volumes["vol1"] / "vchange").write_text("v-new\n")
        (src.volumes["vol1"] / "vgone").unlink()
        (src.volumes["vol1"] / "vnew").write_text("vn\n")
        ps.send_signal(signal.SIGCONT)
        sent, got = _finish(ps, pr, 120)
        assert sent.returncode == 0, sent.stderr
        assert got.returncode == 0, got.stderr
        before = src.counter()
        wait_for(lambda: dst.counter() > before + 2, what="counter to continue on the target")
        assert (dst.rootfs / "changes").read_text() == "2\n"
        assert (dst.rootfs / "created-between").read_text() == "created\n"
        assert not (dst.rootfs / "gone-later").exists()
        assert (dst.rootfs / "dir1" / "inner").read_text() == "new content\n"
        assert (dst.rootfs / "link1").read_text() == "relinked\n"
        assert os.stat(dst.rootfs / "link1").st_ino == os.stat(dst.rootfs / "link2").st_ino
        assert (dst.rootfs / "big").read_bytes() == (src.rootfs / "big").read_bytes()
        assert "new:x:1:1" in (dst.rootfs / "etc" / "passwd").read_text()
        assert not (dst.rootfs / "etc" / "lower-file").exists()
        assert (dst.volumes["vol1"] / "vchange").read_text() == "v-new\n"
        assert (dst.volumes["vol1"] / "vnew").read_text() == "vn\n"
        assert not (dst.volumes["vol1"] / "vgone").exists()
        assert (dst.volumes["vol1"] / "sub" / "v").read_text() == "kept\n"
        assert not _leftovers(dst.path, dst.rootfs, dst.volumes["vol1"])
        # Only what changed went after the freeze: not the 1 MiB file, nor the untouched files.
        said = sent.stderr
        assert "--pre-copy: rootfs: " in said and "1 removed since phase 1" in said, said
        resent = int(said.split("--pre-copy: rootfs: ")[1].split()[0])
        assert 5 <= resent <= 12, said
    finally:
        for p in (ps, pr):
            if p.poll() is None:
                p.kill()
        _cleanup(b.root, cid)


def _target_clean(b_host, dst, cid: str) -> None:
    """Nothing on the target: no container, no staging or import dirs, no rootfs or volume data."""
    assert _status(b_host.root, cid) is None
    assert not _leftovers(dst.path, dst.rootfs, dst.volumes["vol1"])
    assert os.listdir(dst.upper) == []
    assert os.listdir(dst.volumes["vol1"]) == []


def _keeps_running(src, a_host, cid: str) -> None:
    assert _status(a_host.root, cid) == "running"
    n = src.counter()
    wait_for(lambda: src.counter() > n + 1, what="counter to go on at the source")


@pytest.mark.parametrize("phase,pre_copy,expect", [
    ("phase1-sent", True, "keeps running here"),
    ("hello-sent", False, "keeps running here"),
    ("dumped", False, "was restored here from its images"),
    ("dumped", True, "was restored here from its images"),
])
def test_source_failure_keeps_or_restores_the_container_and_leaves_the_target_clean(
        make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin, phase, pre_copy, expect):
    a, b, src, dst, cid = _setup(make_bundle, containers, tmp_path, busybox_lower)
    try:
        s, r = pipe(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", "-", *(["--pre-copy"] if pre_copy else []),
                                cid),
                    b.runc_ckpt(runc_ckpt_bin, "restore", "--import", "-", "--bundle", str(dst.path), "-d", cid),
                    dict(a.env, RUNC_CKPT_FAULT=f"{phase}:fail"), b.env)
        assert s.returncode != 0 and r.returncode != 0
        assert f"injected failure at {phase}" in s.stderr and expect in s.stderr, s.stderr
        assert len(s.stderr.strip().splitlines()) == 1, s.stderr
        assert "truncated" in r.stderr, r.stderr
        _keeps_running(src, a, cid)
        _target_clean(b, dst, cid)
    finally:
        _cleanup(b.root, cid)


@pytest.mark.parametrize("phase,pre_copy", [("hello-read", True), ("hello-read", False), ("staged", True)])
def test_target_failure_without_back_channel(make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin,
                                             phase, pre_copy):
    """One-way pipe: a receiver that fails early makes the sender fail (broken pipe) and put the container back;
    one that fails after reading everything leaves the source's images in place. (A stream that fits in
    the pipe's buffer is all written before the receiver fails: the sender cannot tell that case from
    success, hence the big file and --handshake.)"""
    a, b, src, dst, cid = _setup(make_bundle, containers, tmp_path, busybox_lower)
    (src.rootfs / "big").write_bytes(os.urandom(4 << 20))
    try:
        s, r = pipe(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", "-", *(["--pre-copy"] if pre_copy else []),
                                cid),
                    b.runc_ckpt(runc_ckpt_bin, "restore", "--import", "-", "--bundle", str(dst.path), "-d", cid),
                    a.env, dict(b.env, RUNC_CKPT_FAULT=f"{phase}:fail"))
        assert r.returncode != 0 and f"injected failure at {phase}" in r.stderr
        _target_clean(b, dst, cid)
        if phase == "staged":
            assert s.returncode == 0               # the sender cannot know: it keeps the images
            state_images = Path(a.env["RUNC_CKPT_CONFIG"]).parent / "state" / cid / "checkpoint"
            assert (state_images / "inventory.img").exists()
        else:
            assert s.returncode != 0 and "broken pipe" in s.stderr, s.stderr
            assert ("keeps running here" if pre_copy else "was restored here") in s.stderr, s.stderr
            _keeps_running(src, a, cid)
    finally:
        _cleanup(b.root, cid)


def _handshake_move(runc_ckpt_bin, a, b, dst, cid, recv_env):
    """A two-phase move with --handshake over a TCP connection."""
    return socket_pair(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", "-", "--pre-copy", "--handshake", cid),
                       b.runc_ckpt(runc_ckpt_bin, "restore", "--import", "-", "--handshake", "--bundle",
                                   str(dst.path), "-d", cid), a.env, recv_env)


@pytest.mark.parametrize("phase", ["staged", "hello-read", "phase1-staged"])
def test_target_failure_with_handshake_restores_the_source(make_bundle, containers, tmp_path, busybox_lower,
                                                           runc_ckpt_bin, phase):
    a, b, src, dst, cid = _setup(make_bundle, containers, tmp_path, busybox_lower)
    try:
        s, r = _handshake_move(runc_ckpt_bin, a, b, dst, cid, dict(b.env, RUNC_CKPT_FAULT=f"{phase}:fail"))
        assert r.returncode != 0 and s.returncode != 0
        if phase == "phase1-staged":
            assert "did not stage phase 1" in s.stderr and "keeps running here" in s.stderr, s.stderr
        elif phase == "staged":
            assert "the receiver could not restore" in s.stderr and "was restored here" in s.stderr, s.stderr
        else:
            assert "refused the migration" in s.stderr and "not touched" in s.stderr, s.stderr
        _keeps_running(src, a, cid)
        _target_clean(b, dst, cid)
    finally:
        _cleanup(b.root, cid)


def test_handshake_success_over_tcp_tidies_the_source(make_bundle, containers, tmp_path, busybox_lower,
                                                      runc_ckpt_bin):
    a, b, src, dst, cid = _setup(make_bundle, containers, tmp_path, busybox_lower)
    try:
        s, r = _handshake_move(runc_ckpt_bin, a, b, dst, cid, b.env)
        assert s.returncode == 0, s.stderr
        assert r.returncode == 0, r.stderr
        before = src.counter()
        wait_for(lambda: dst.counter() > before + 2, what="counter to continue on the target")
        assert _status(a.root, cid) is None
        assert not (Path(a.env["RUNC_CKPT_CONFIG"]).parent / "state" / cid / "checkpoint").exists()
    finally:
        _cleanup(b.root, cid)


def test_preflight_no_go_stops_before_the_freeze(make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin):
    """The receiver's CRIU is older than the sender's: it says no before anything is frozen."""
    fake = tmp_path / "old-criu"
    fake.write_text("#!/bin/sh\necho 'Version: 3.0'\n")
    fake.chmod(0o755)
    a, b, src, dst, cid = _setup(make_bundle, containers, tmp_path, busybox_lower)
    s, r = socket_pair(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", "-", "--handshake", cid),
                       [runc_ckpt_bin, "--root", str(b.root), "--criu", str(fake), "restore", "--import", "-",
                        "--handshake", "--bundle", str(dst.path), "-d", cid],
                       a.env, b.env)
    assert s.returncode != 0 and r.returncode != 0
    assert "refused the migration" in s.stderr and "incompatible host: CRIU" in s.stderr, s.stderr
    assert "was not touched" in s.stderr
    _keeps_running(src, a, cid)
    _target_clean(b, dst, cid)


def test_broken_pipe_mid_stream_restores_the_source(make_bundle, containers, tmp_path, busybox_lower,
                                                    runc_ckpt_bin):
    a, b, src, _, cid = _setup(make_bundle, containers, tmp_path, busybox_lower)
    (src.rootfs / "big").write_bytes(os.urandom(4 << 20))      # more than a pipe's buffer holds
    s, _ = pipe(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", "-", "--compress", "none", cid),
                ["head", "-c", "300000"], a.env, b.env)
    assert s.returncode != 0
    assert "broken pipe" in s.stderr and "was restored here from its images" in s.stderr, s.stderr
    _keeps_running(src, a, cid)


@pytest.mark.parametrize("pre_copy,expect", [(False, "was restored here"), (True, "keeps running here")])
def test_stalled_reader_fails_after_the_timeout(make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin,
                                                pre_copy, expect):
    """A receiver that stops reading: the sender gives up after --stream-timeout and loses nothing."""
    a, b, src, _, cid = _setup(make_bundle, containers, tmp_path, busybox_lower)
    (src.rootfs / "big").write_bytes(os.urandom(4 << 20))   # fills the pipe: in phase 1 with --pre-copy
    s, _ = pipe(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", "-", "--stream-timeout", "2",
                            *(["--pre-copy"] if pre_copy else []), cid),
                ["sleep", "8"], a.env, b.env, timeout=60)
    assert s.returncode != 0
    assert "read nothing for 2 s" in s.stderr and expect in s.stderr, s.stderr
    _keeps_running(src, a, cid)


def test_stream_saved_to_a_file_restores_with_import_file_and_a_file_streams_in(
        make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin):
    """stream -> file -> restore --import FILE; and a plain --export FILE restored with --import - < FILE."""
    a, b, src, dst, cid = _setup(make_bundle, containers, tmp_path, busybox_lower)
    saved = tmp_path / "saved.tar.zst"
    try:
        with open(saved, "wb") as f:
            s = subprocess.run(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", "-", "--pre-copy", cid),
                               stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.PIPE, env=a.env, check=False)
        assert s.returncode == 0, s.stderr
        r = subprocess.run(b.runc_ckpt(runc_ckpt_bin, "restore", "--import", str(saved), "--bundle", str(dst.path),
                                       "-d", cid), stdin=subprocess.DEVNULL, capture_output=True, env=b.env,
                           check=False)
        assert r.returncode == 0, r.stderr
        before = src.counter()
        wait_for(lambda: dst.counter() > before + 2, what="counter on the target")
        assert (dst.rootfs / "newfile").read_text() == "new\n"
        # Back to A through a plain archive file, read as a stream on stdin.
        archive = tmp_path / "plain.tar.zst"
        s = subprocess.run(b.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", str(archive), cid),
                           stdin=subprocess.DEVNULL, capture_output=True, env=b.env, check=False)
        assert s.returncode == 0, s.stderr
        after_b = dst.counter()
        from tests.integration.migrate_helpers import remount_fresh
        remount_fresh(src, busybox_lower)
        for p in src.volumes["vol1"].iterdir():
            subprocess.run(["rm", "-rf", str(p)], check=True)
        with open(archive, "rb") as f:
            r = subprocess.run(a.runc_ckpt(runc_ckpt_bin, "restore", "--import", "-", "--bundle", str(src.path),
                                           "-d", cid), stdin=f, capture_output=True, env=a.env, check=False)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: src.counter() > after_b + 2, what="counter back on the source")
        assert (src.rootfs / "newfile").read_text() == "new\n"
    finally:
        _cleanup(b.root, cid)
        _cleanup(a.root, cid)


def test_lazy_pages_falls_back_to_the_stream_with_a_warning(make_bundle, containers, tmp_path, busybox_lower,
                                                           runc_ckpt_bin):
    """The real `criu check` runs; whatever it says, the memory goes in the stream and the move works."""
    a, b, src, dst, cid = _setup(make_bundle, containers, tmp_path, busybox_lower)
    try:
        s, r = pipe(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", "-", "--lazy-pages", cid),
                    b.runc_ckpt(runc_ckpt_bin, "restore", "--import", "-", "--bundle", str(dst.path), "-d", cid),
                    a.env, b.env)
        assert s.returncode == 0, s.stderr
        assert r.returncode == 0, r.stderr
        assert "level=warning" in s.stderr and "sending the memory pages in the stream instead" in s.stderr
        assert "uffd-noncoop" in s.stderr
        before = src.counter()
        wait_for(lambda: dst.counter() > before + 2, what="counter to continue on the target")
    finally:
        _cleanup(b.root, cid)


def test_stream_refuses_print_stats_and_a_terminal_before_touching(make_bundle, containers, tmp_path,
                                                                   busybox_lower, runc_ckpt_bin):
    a, _, src, _, cid = _setup(make_bundle, containers, tmp_path, busybox_lower)
    out = subprocess.run(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", "-", "--print-stats", cid),
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, env=a.env, check=False)
    assert out.returncode != 0 and "--print-stats writes to stdout" in out.stderr
    assert out.stdout == ""
    out = subprocess.run(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--pre-copy", cid), stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, env=a.env, check=False)
    assert out.returncode != 0 and "--pre-copy only works with --export -" in out.stderr
    _keeps_running(src, a, cid)
