"""CRI-O's exact runtime command lines, through the installed runc-ckpt front end, on real runc + CRIU.

CRI-O checkpoints with
  --root R checkpoint --file-locks --image-path <dir>/checkpoint --work-path <dir> [--leave-running] ID
and restores (through conmon) with
  --root=R restore --bundle B --pid-file P --detach --image-path CP --work-path B
      [--lsm-profile=selinux:L] [--lsm-mount-context=L] ID
It adds the LSM flags only on SELinux hosts. This host has no LSM: a
--lsm-mount-context alone restores fine, while an --lsm-profile makes CRIU
fail; runc-ckpt must then fail exactly like runc and leave nothing behind.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.integration.conftest import Bundle, Containers, wait_for

SELINUX_PROFILE = "selinux:system_u:system_r:container_t:s0:c1,c2"
MOUNT_CONTEXT = "system_u:object_r:container_file_t:s0:c1,c2"


def crio_checkpoint(rt: str, root: Path, d: Path, cid: str, leave_running: bool = False
                    ) -> subprocess.CompletedProcess[str]:
    argv = [rt, "--root", str(root), "checkpoint", "--file-locks", "--image-path", f"{d}/checkpoint",
            "--work-path", str(d)] + (["--leave-running"] if leave_running else []) + [cid]
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)


def crio_restore(rt: str, root: Path, b: Bundle, pid_file: Path, cid: str, lsm: list[str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
    argv = [rt, f"--root={root}", "restore", "--bundle", str(b.path), "--pid-file", str(pid_file), "--detach",
            "--image-path", f"{b.path}/checkpoint", "--work-path", str(b.path), *(lsm or []), cid]
    # conmon gives the runtime no terminal; /dev/null stdio as CRI-O's non-tty containers.
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)


def running(make_bundle, containers: Containers) -> tuple[Bundle, str]:
    b = make_bundle()
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    return b, cid


def assert_restored(containers: Containers, b: Bundle, cid: str, pid_file: Path, before: int,
                    floor: int | None = None) -> None:
    """Running under the pid in pid_file, counting on from at least `floor` (default: before)."""
    state = containers.state(cid)
    assert state is not None and state["status"] == "running"
    assert int(pid_file.read_text()) == state["pid"]
    # Continued, not restarted: a fresh process would write 1, 2, ... again.
    # (An empty read is the counter mid-write, hence 0 is never a value.)
    seen: list[int] = []

    def moved() -> bool:
        seen.append(b.counter())
        return seen[-1] not in (0, before)
    wait_for(moved, what="counter to change after restore")
    assert seen[-1] > (before if floor is None else floor)


def test_checkpoint_then_restore(make_bundle, containers, runc_ckpt_bin, tmp_path):
    b, cid = running(make_bundle, containers)
    out = crio_checkpoint(runc_ckpt_bin, containers.root, b.path, cid)
    assert out.returncode == 0, out.stderr
    assert (b.path / "checkpoint" / "inventory.img").is_file()
    assert (b.path / "dump.log").is_file()  # CRIU's log goes to --work-path
    assert containers.status(cid) is None  # without --leave-running runc destroys the container
    before = b.counter()
    pid_file = tmp_path / "pidfile"
    out = crio_restore(runc_ckpt_bin, containers.root, b, pid_file, cid)
    assert out.returncode == 0, out.stderr
    assert (b.path / "restore.log").is_file()
    assert_restored(containers, b, cid, pid_file, before)


def test_checkpoint_leave_running(make_bundle, containers, runc_ckpt_bin, tmp_path):
    b, cid = running(make_bundle, containers)
    at_checkpoint = b.counter()
    out = crio_checkpoint(runc_ckpt_bin, containers.root, b.path, cid, leave_running=True)
    assert out.returncode == 0, out.stderr
    assert (b.path / "checkpoint" / "inventory.img").is_file()
    assert containers.status(cid) == "running"
    now = b.counter()
    wait_for(lambda: b.counter() > now + 2, what="counter to keep going after --leave-running")
    # CRI-O restores into a container that no longer exists.
    subprocess.run(["runc", "--root", str(containers.root), "delete", "--force", cid], check=True)
    before = b.counter()
    pid_file = tmp_path / "pidfile"
    out = crio_restore(runc_ckpt_bin, containers.root, b, pid_file, cid)
    assert out.returncode == 0, out.stderr
    # The restored process goes on from the checkpoint, before what the original reached later.
    assert_restored(containers, b, cid, pid_file, before, floor=at_checkpoint)


def test_restore_with_lsm_mount_context(make_bundle, containers, runc_ckpt_bin, tmp_path):
    b, cid = running(make_bundle, containers)
    assert crio_checkpoint(runc_ckpt_bin, containers.root, b.path, cid).returncode == 0
    before = b.counter()
    pid_file = tmp_path / "pidfile"
    out = crio_restore(runc_ckpt_bin, containers.root, b, pid_file, cid, [f"--lsm-mount-context={MOUNT_CONTEXT}"])
    assert out.returncode == 0, out.stderr
    assert_restored(containers, b, cid, pid_file, before)


def test_restore_with_selinux_profile_fails_like_runc_and_leaves_nothing(make_bundle, containers, runc_ckpt_bin,
                                                                        real_runc, tmp_path):
    b, cid = running(make_bundle, containers)
    assert crio_checkpoint(runc_ckpt_bin, containers.root, b.path, cid).returncode == 0
    lsm = [f"--lsm-profile={SELINUX_PROFILE}", f"--lsm-mount-context={MOUNT_CONTEXT}"]
    pid_file = tmp_path / "pidfile"
    ours = crio_restore(runc_ckpt_bin, containers.root, b, pid_file, cid, lsm)
    assert containers.status(cid) is None
    theirs = crio_restore(real_runc, containers.root, b, pid_file, cid, lsm)
    assert containers.status(cid) is None
    assert (ours.returncode, theirs.returncode) == (1, 1)
    assert "criu failed: type RESTORE" in theirs.stderr
    assert "criu failed: type RESTORE" in ours.stderr
    assert len([line for line in ours.stderr.splitlines() if "level=error" in line]) == 1
    # Nothing half-done: the images still restore without the profile.
    before = b.counter()
    out = crio_restore(runc_ckpt_bin, containers.root, b, pid_file, cid)
    assert out.returncode == 0, out.stderr
    assert_restored(containers, b, cid, pid_file, before)
