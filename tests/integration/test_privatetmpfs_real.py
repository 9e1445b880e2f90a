"""runtime/privatetmpfs on the real kernel: a tmpfs our children reach through our fd, that no mount
table shows, that the kernel frees with the call however it ends, and that is refused without privilege."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from runc_ckpt.runtime import privatetmpfs

TMPFS_MAGIC = 0x01021994
MIB = 1 << 20


def _mountinfo() -> list[str]:
    """The mounts with our options that any mount table shows (other tests may mount and unmount meanwhile)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line for line in f if "huge=within_size" in line]


def test_a_child_writes_into_it_and_no_mount_table_shows_it():
    before = _mountinfo()
    with privatetmpfs.mounted() as path:
        assert path is not None and path.startswith(f"/proc/{os.getpid()}/fd/")
        assert os.stat(path).st_mode & 0o777 == 0o700
        free = privatetmpfs.room(path)
        assert free is not None and free > 64 * MIB
        # as runc does with --image-path: make the dirs through our fd, then write
        subprocess.run(["sh", "-c", f"mkdir -p {path}/p0 && head -c {8 * MIB} /dev/zero > {path}/p0/pages-1.img"],
                       check=True)
        assert os.path.getsize(os.path.join(path, "p0", "pages-1.img")) == 8 * MIB
        assert privatetmpfs.room(path) <= free - 8 * MIB
        assert _mountinfo() == before
        # statfs: a tmpfs (the huge= option is what makes it one of its own: /dev/shm's THP setting is never)
        out = subprocess.run(["stat", "-f", "-c", "%t", path], capture_output=True, text=True, check=True).stdout
        assert int(out, 16) == TMPFS_MAGIC
    assert not os.path.exists(path)
    assert _mountinfo() == before


CHILD = """
import os, sys, time
from runc_ckpt.runtime import privatetmpfs
with privatetmpfs.mounted() as path:
    with open(os.path.join(path, "dump"), "wb") as f:
        f.write(b"\\1" * (64 << 20))
    print(path, flush=True)
    time.sleep(600)
"""


def _shmem() -> int:
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("Shmem:"):
                return int(line.split()[1]) << 10
    raise AssertionError("no Shmem line in /proc/meminfo")


def test_a_kill_9_frees_it_with_its_pages_and_leaves_nothing_to_sweep():
    """The call's dumps must not outlive it: a kill -9 drops the last fd and the kernel frees the mount."""
    before = _mountinfo()
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        path = child.stdout.readline().strip()
        assert path.startswith(f"/proc/{child.pid}/fd/")
        assert os.path.getsize(os.path.join(path, "dump")) == 64 << 20
        held = _shmem()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert not os.path.exists(path)
        # the 64 MiB are given back (other tests may use tmpfs meanwhile: a margin of half of it)
        assert _shmem() < held - (32 << 20)
        assert _mountinfo() == before
    finally:
        child.kill()
        child.wait()


def test_without_the_privilege_to_mount_none_is_yielded():
    """An unprivileged caller may not make a mount: mounted() says so with None, and the caller dumps elsewhere."""
    probe = ("from runc_ckpt.runtime import privatetmpfs\n"
             "with privatetmpfs.mounted() as path:\n"
             "    print(path)\n")
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                          probe], capture_output=True, text=True, check=False,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"
