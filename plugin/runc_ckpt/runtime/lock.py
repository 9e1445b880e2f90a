"""Per-container locks: one runc-ckpt operation per container (and per bundle) at a time.

containerd, CRI-O and the kubelet call their runtime concurrently and retry
on timeouts, so two runc-ckpt calls for one container must not interleave:
one's tidy-up would delete the other's images, two restores would merge two
archives into one rootfs. Every runc-ckpt checkpoint, export, restore and
import takes `hold()` on the key (runc root, container id) -- restore also on
its bundle -- before it touches anything. Pass-through commands take no lock.

API (also for streaming export/import, issue 14):

    with lock.hold(state_dir, lock.container_key(root, cid), "checkpoint --export", timeout) as held:
        ...

The fd is close-on-exec and never passed on: a lock handed to runc went on
to `criu swrk` and to CRIU's restored tasks, which survive a kill of the
process group and held the lock for nobody (issue 19). A runc that outlives
a killed runc-ckpt is waited for by the next call instead
(runtime/leftovers.wait_idle); a lock held by a stray inherited fd anyway is
replaced (runtime/lockrepair).

The lock is fcntl.flock on `<state_dir>/locks/<key>.lock`: the kernel drops
it when the last holder dies, so a crash never leaves a stale lock. Beside
it `<key>.holder` (written atomically) names the holder's pid and operation
for the error a waiting caller gets after `timeout` seconds (lock_timeout in
runc-ckpt.yaml).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator

from runc_ckpt.base import namedigest
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.record import Record
from runc_ckpt.runtime import atomicfile, lockrepair, procscan

LOCK_DIR = "locks"
POLL = 0.05
_SAFE = re.compile(r"[^A-Za-z0-9_.+-]")


class Held(Record):
    """A lock this process holds; fd stays valid until hold() ends."""

    key: str
    path: str
    fd: int


def container_key(runc_root: str, container_id: str) -> str:
    """The lock key of one container: ids are unique per runc --root only."""
    return _key("ctr", os.path.realpath(runc_root), container_id)


def bundle_key(bundle: str) -> str:
    """The lock key of a bundle directory (restore --import writes its rootfs and config.json)."""
    return _key("bundle", os.path.realpath(bundle), "")


def _key(kind: str, scope: str, name: str) -> str:
    digest = namedigest.hex_digest(f"{kind}\0{scope}\0{name}", 16)
    readable = _SAFE.sub("_", name or os.path.basename(scope))[:64]
    return f"{kind}-{readable}-{digest}"


def _holder(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
        return (f"runc-ckpt pid {info['pid']} ({info['operation']}, since "
                f"{time.strftime('%H:%M:%S', time.localtime(info['since']))})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another runc-ckpt call"


@contextlib.contextmanager
def hold(state_dir: str, key: str, operation: str, timeout: float, what: str | None = None) -> Iterator[Held]:
    """Take the lock for key, waiting at most timeout seconds; release it when the block ends."""
    directory = os.path.join(state_dir, LOCK_DIR)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        path = os.path.join(directory, f"{key}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise RuncCkptError(f"cannot create the lock in {directory}: {e.strerror}") from None
    holder = os.path.join(directory, f"{key}.holder")
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RuncCkptError(f"{what or key} is busy: {_holder(holder)} holds its lock {path}; "
                                        f"waited {timeout:g}s (lock_timeout in runc-ckpt.yaml)") from None
                if lockrepair.orphaned(fd, holder) is not None:
                    lockrepair.replace(directory, path, fd)     # a stray's inherited fd: a fresh lock
                else:
                    time.sleep(POLL)
                    continue
            if _current(fd, path):
                break
            os.close(fd)                    # the lock file was replaced meanwhile: take the new one
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        pid, start = procscan.identity()
        # Not durable: read only while this flock is held, which no crash outlives (atomicfile's docstring).
        atomicfile.write_json(holder, {"pid": pid, "start": start, "operation": operation, "since": time.time()},
                              mode=0o600, indent=None, durable=False)
        atomicfile.sweep(directory)         # holder temp files of runs killed while writing them
        yield Held(key, path, fd)
    finally:
        os.close(fd)


def _current(fd: int, path: str) -> bool:
    """Whether fd is still the file at path (lockrepair may have replaced it)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def hold_all(state_dir: str, keys: dict[str, str], operation: str, timeout: float) -> Iterator[dict[str, Held]]:
    """hold() every key (key -> what, for the error), in sorted order so two callers never deadlock."""
    with contextlib.ExitStack() as stack:
        yield {k: stack.enter_context(hold(state_dir, k, operation, timeout, what=keys[k])) for k in sorted(keys)}
