"""runtime/cgroupmem.of_pid: the cgroup the kernel says a process is in (runc puts a container without a
cgroupsPath below its caller's cgroup, so /<id> would be a guess)."""

from __future__ import annotations

import os
import subprocess

from runc_ckpt.runtime import cgroupmem


def _line(prefix_test) -> str:
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        return next(line.split(":", 2)[2] for line in f.read().splitlines() if prefix_test(line.split(":", 2)[1]))


def test_the_memory_hierarchy_on_v1_and_the_unified_one_on_v2():
    assert cgroupmem.of_pid(os.getpid(), "v1") == _line(lambda c: "memory" in c.split(","))
    assert cgroupmem.of_pid(os.getpid(), "v2") == _line(lambda c: c == "")


def test_no_process_no_cgroup():
    p = subprocess.Popen(["true"])
    p.wait()
    assert cgroupmem.of_pid(p.pid, "v1") is None           # reaped: /proc/<pid> is gone
    assert cgroupmem.of_pid(0, "v1") is None                # runc's state without a live init
