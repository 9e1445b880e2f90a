"""What a killed runc or CRIU left for one container ID, and its repair.

runc and CRIU die with runc-ckpt when an engine kills the process group,
systemd stops the unit, or the OOM killer picks one of them. Measured after
such kills (issue 19):

  * `<root>/<id>` without state.json: runc restore had made the dir but not
    recorded the container. runc's `state` calls the ID free while its
    `create`/`restore` call it taken, and runc's `delete` RemoveAll()s it;
  * `<root>/<id>/criu-root`: runc restore's bind mount of the rootfs. That
    RemoveAll goes through it and empties the rootfs;
  * `.criu.cgyard.*` in CRIU's work dir: a tmpfs holding cgroup hierarchies;
  * a half-restored `criu: restore --rpc` task, or fully restored tasks
    that runc never recorded, in a session of their own: they survive the
    group kill, hold our files open and sit in the container's cgroup.

Everything here is asked for one ID under the caller's lock, after
wait_idle() made sure no runc is still working on it (runc-ckpt may have
been killed alone: then runc goes on, and its work must not be repaired
under its feet) -- whenever suspect() or an orphaned intent record says
there is something to repair; otherwise nothing is repaired and nothing waits. Each repair comes back as one message; what cannot be
repaired raises RuncCkptError naming the leftover and the command that
clears it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.record import Record
from runc_ckpt.runtime import mounttable, procscan, safe_remove

CGROUP_V1 = "/sys/fs/cgroup"
POLL = 0.05
KILL_WAIT = 5.0


class Scope(Record):
    """Where one container's leftovers can be."""

    root: str                         # runc --root
    cid: str
    work_dirs: Sequence[str] = ()   # ours: whatever is mounted below them is a leftover
    criu_dirs: Sequence[str] = ()   # where CRIU restored from: a criu task holding them is
    cgroup: str | None = None         # the container's cgroup path, when a killed restore of ours made it
    rootfs: str | None = None         # its rootfs: a task in that cgroup is ours only if this is its root

    @property
    def runc_dir(self) -> str:
        return os.path.join(self.root, self.cid)


def wait_idle(root: str, cid: str, timeout: float) -> None:
    """Wait until no runc process works on cid under root (at most timeout seconds), else refuse."""
    deadline = time.monotonic() + timeout
    while True:
        busy = procscan.runc_working_on(root, cid)
        if not busy:
            return
        if time.monotonic() >= deadline:
            raise RuncCkptError(f"container {cid} is busy: runc pid {busy[0]} still works on it; waited "
                                f"{timeout:g}s (lock_timeout in runc-ckpt.yaml)")
        time.sleep(POLL)


def stateless_runc_dir(scope: Scope) -> bool:
    """<root>/<id> exists without state.json: runc never recorded this container."""
    return os.path.isdir(scope.runc_dir) and not os.path.lexists(os.path.join(scope.runc_dir, "state.json"))


def has_state(scope: Scope) -> bool:
    return os.path.lexists(os.path.join(scope.runc_dir, "state.json"))


def mounted(scope: Scope) -> list[str]:
    """What is mounted in the runc dir and in our work dirs (one read of mountinfo), each dir's deepest first."""
    points = mounttable.mount_points()
    return [p for d in (scope.runc_dir, *scope.work_dirs) for p in mounttable.below(d, points=points)]


def suspect(scope: Scope, mounts: list[str]) -> bool:
    """Whether a killed runc or CRIU may have left something for this ID (mounts: mounted(scope)).

    A runc still at work on the ID (its runc-ckpt killed alone) shows here, or in an orphaned intent
    record (state/intent): a runc dir without state.json, criu-root or a cgroup yard mounted, a dir CRIU
    restores from. Without any of these there is nothing to repair, so nobody needs to be waited for,
    and the /proc scan of wait_idle (every process's cmdline: thousands on a Kubernetes node) is skipped.
    """
    return not has_state(scope) or bool(mounts) or any(os.path.lexists(d) for d in scope.criu_dirs)


def repair(scope: Scope, mounts: list[str]) -> list[str]:
    """Kill survivors, unmount (mounts: mounted(scope)), remove the state-less runc dir; one message per thing done."""
    done: list[str] = []
    if not has_state(scope):
        done += _kill_survivors(scope)
    # No runc works on the ID (wait_idle): criu-root is only mounted while runc restore runs (runc records the
    # container at CRIU's post-restore, before it unmounts), the cgroup yard only while CRIU runs.
    for point in mounts:
        why = mounttable.unmount(point)
        if why is not None:
            raise RuncCkptError(f"{point} is left mounted by a killed runc or CRIU and cannot be unmounted "
                                f"({why}): clear it with `umount -l {point}`")
        done.append(f"unmounted {point}, left by a killed runc or CRIU")
    if stateless_runc_dir(scope):
        if not safe_remove.remove_tree(scope.runc_dir, ignore_errors=True):
            raise RuncCkptError(f"{scope.runc_dir} is left by a killed runc restore (no state.json) and cannot "
                                f"be removed: clear it with `umount -R -l {scope.runc_dir}; rm -r {scope.runc_dir}`")
        done.append(f"removed {scope.runc_dir}, left without state.json by a killed runc")
    return done


def half_restored(scope: Scope) -> list[int]:
    """Tasks of a container runc recorded that still hold CRIU's files (restore.log, the images, an O_PATH
    root): CRIU was killed before its last stage, so the network stays locked and no dump works again."""
    if not scope.criu_dirs or not scope.rootfs:
        return []
    return [p for p in procscan.holding(scope.criu_dirs) if procscan.same_root(p, scope.rootfs)]


def _kill_survivors(scope: Scope) -> list[str]:
    """Processes of a killed restore: they hold files in our work dirs, or sit in the container's cgroup."""
    # Only dirs that are there can have holders that matter: ours are removed only after this ran (settle before
    # resolve_bundle). A new ID has no state, so without this gate every restore would read every process's fds
    # (thousands on a Kubernetes node; ~3 ms here) to find nothing.
    present = [d for d in scope.criu_dirs if os.path.lexists(d)]
    holders = procscan.holding(present) if present else []
    strays = {p for p in holders if os.path.basename((procscan.cmdline(p) or [""])[0]).startswith("criu")}
    if scope.cgroup and scope.rootfs:
        # Another runc root may run a container of the same ID in the same cgroup: only tasks whose
        # root is this bundle's rootfs are the killed restore's.
        strays |= {p for p in procscan.in_cgroup(scope.cgroup) if procscan.same_root(p, scope.rootfs)}
    strays -= procscan.ancestors(os.getpid())
    if not strays:
        return []
    if scope.cgroup:
        _thaw(scope.cgroup)              # SIGKILL does not end a frozen task
    for pid in strays:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + KILL_WAIT
    left = strays
    while left and time.monotonic() < deadline:
        left = {p for p in left if procscan.alive(p, None)}
        time.sleep(POLL)
    if left:
        raise RuncCkptError(f"process {min(left)} is left by a killed restore of {scope.cid} and does not end: "
                            f"clear it with `kill -9 {min(left)}`")
    if scope.cgroup:
        _remove_cgroup(scope.cgroup)
    pids = ", ".join(map(str, sorted(strays)))
    return [f"killed process(es) {pids}, left half-restored by a killed runc restore of {scope.cid}"]


def _hierarchies() -> list[str]:
    try:
        return [os.path.join(CGROUP_V1, n) for n in sorted(os.listdir(CGROUP_V1))
                if not os.path.islink(os.path.join(CGROUP_V1, n))]
    except OSError:
        return []


def _thaw(cgroup: str) -> None:
    state = os.path.join(CGROUP_V1, "freezer", cgroup.lstrip("/"), "freezer.state")
    try:
        with open(state, "w", encoding="ascii") as f:
            f.write("THAWED")
    except OSError:
        pass


def _remove_cgroup(cgroup: str) -> None:
    """rmdir the (now empty) cgroup in every hierarchy: the kernel refuses one that still has tasks."""
    for h in _hierarchies():
        try:
            os.rmdir(os.path.join(h, cgroup.lstrip("/")))
        except OSError:
            pass


def thaw_frozen(cgroup: str) -> bool:
    """THAW the container's freezer cgroup if it is FROZEN (a killed dump froze it); whether it was."""
    state = os.path.join(CGROUP_V1, "freezer", cgroup.lstrip("/"), "freezer.state")
    try:
        with open(state, encoding="ascii") as f:
            frozen = f.read().strip() != "THAWED"
    except OSError:
        return False
    if frozen:
        _thaw(cgroup)
    return frozen


def continue_stopped(cgroup: str) -> list[int]:
    """SIGCONT the container's tasks left stopped (state T) by a CRIU that died while it held them."""
    resumed = []
    for pid in procscan.in_cgroup(cgroup):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                st = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if st in (b"T", b"t"):
            os.kill(pid, signal.SIGCONT)
            resumed.append(pid)
    return resumed
