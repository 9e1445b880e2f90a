"""Memory pre-copy migrations called concurrently, with real runc and CRIU (issue 23).

Engines call their runtime concurrently. Two `--pre-copy` streams of two
containers must not meet (each has its own phase-0 scratch on tmpfs, its own
lock, its own freeze), and a second call on a container that a migration holds
must wait for it and then be refused with one line, leaving nothing behind:
the container lives on, once, on the target.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.integration.conftest import wait_for
from tests.integration.migrate_helpers import _finish, make_host, target_bundle
from tests.integration.test_incremental_real import EVERY, MIB, _verify, toucher  # noqa: F401 (a fixture)
from tests.integration.test_migrate_memory_precopy import _status, _stopped, _tmpfs_left


def _start(make_bundle, containers, busybox_lower, program: Path, name: str) -> tuple[str, object, object]:
    """One toucher container running on host a (containers.root), and its target bundle for host b."""
    src = make_bundle(args=[f"/{program.name}", str(MIB), str(EVERY)], name=f"src-{name}")
    subprocess.run(["cp", str(program), str(src.rootfs / program.name)], check=True)
    cid = containers.run(src, cid=f"conc-{name}-{os.urandom(4).hex()}")
    wait_for(lambda: (src.rootfs / "ready").exists(), timeout=30, what="the workload to fill its memory")
    return cid, src, target_bundle(make_bundle, src, busybox_lower)


def _migrate(a, b, runc_ckpt_bin: str, cid: str, dst, env: dict | None = None):
    """`checkpoint --export - --pre-copy` on a piped into `restore --import -` on b; both started."""
    r, w = os.pipe()
    ps = subprocess.Popen(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", "-", "--pre-copy", cid),
                          stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE, env=dict(a.env, **(env or {})))
    os.close(w)
    pr = subprocess.Popen(b.runc_ckpt(runc_ckpt_bin, "restore", "--import", "-", "--bundle", str(dst.path), "-d",
                                      cid), stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=b.env)
    os.close(r)
    return ps, pr


def test_two_pre_copy_migrations_of_two_containers_at_once_both_land_intact(
        make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin, toucher):  # noqa: F811
    a, b = make_host(tmp_path, "a", [tmp_path / "volumes"]), make_host(tmp_path, "b", [tmp_path / "volumes"])
    containers.root = a.root
    first = _start(make_bundle, containers, busybox_lower, toucher, "one")
    second = _start(make_bundle, containers, busybox_lower, toucher, "two")
    pairs = [_migrate(a, b, runc_ckpt_bin, cid, dst) for cid, _, dst in (first, second)]
    try:
        results = [_finish(ps, pr, 240) for ps, pr in pairs]
        for (ps, pr), (sent, got) in zip(pairs, results):
            assert ps.returncode == 0 and pr.returncode == 0, sent.stderr + got.stderr
        for cid, _, dst in (first, second):
            assert _status(b.root, cid) == "running"
            assert _status(a.root, cid) is None                 # moved, not copied
            assert _verify(dst.rootfs) == f"ok {MIB << 8}"
            assert not _tmpfs_left(cid)
    finally:
        for cid, _, _ in (first, second):
            subprocess.run(["runc", "--root", str(b.root), "delete", "--force", cid], capture_output=True,
                           check=False)


def test_a_checkpoint_of_a_container_a_migration_holds_waits_then_is_refused_with_one_line(
        make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin, toucher):  # noqa: F811
    a, b = make_host(tmp_path, "a", [tmp_path / "volumes"]), make_host(tmp_path, "b", [tmp_path / "volumes"])
    containers.root = a.root
    cid, src, dst = _start(make_bundle, containers, busybox_lower, toucher, "held")
    ps, pr = _migrate(a, b, runc_ckpt_bin, cid, dst, {"RUNC_CKPT_FAULT": "phase1-sent:pause"})
    archive = tmp_path / "second.tar.zst"
    try:
        wait_for(lambda: _stopped(ps.pid), timeout=120, what="the sender to stop after phase 0")
        # Phase 0 is sent and the migration holds the container: a plain export of it starts now.
        other = subprocess.Popen(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", str(archive), cid),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True, env=a.env)
        try:
            other.wait(timeout=2)
            raise AssertionError(f"the second call did not wait for the migration: {other.stderr.read()}")
        except subprocess.TimeoutExpired:
            pass                                                # it waits on the container's lock
        assert _status(a.root, cid) == "running"
        ps.send_signal(signal.SIGCONT)
        sent, got = _finish(ps, pr, 240)
        assert ps.returncode == 0 and pr.returncode == 0, sent.stderr + got.stderr
        _, err = other.communicate(timeout=120)
        assert other.returncode != 0
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "level=error" in lines[0] and "sent to another host" in lines[0], err
        assert not archive.exists()
        assert not [n for n in os.listdir(tmp_path) if ".runc-ckpt-" in n]
        assert _status(a.root, cid) is None and _status(b.root, cid) == "running"
        assert _verify(dst.rootfs) == f"ok {MIB << 8}"
        assert not _tmpfs_left(cid)
    finally:
        if ps.poll() is None:
            ps.send_signal(signal.SIGCONT)
        subprocess.run(["runc", "--root", str(b.root), "delete", "--force", cid], capture_output=True, check=False)
