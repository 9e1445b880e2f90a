"""The facts podman records about the checkpointing host, read the way podman reads them.

Podman's `host.arch` is Go's GOARCH, `host.kernel` the uname release,
`cgroups.version` "v1"/"v2", the distribution from os-release, and CRIU's
version an integer (4.2.1 -> 40201). Checkpoint images carry these, and
restore's pre-flight check compares them with the host it runs on.
"""

from __future__ import annotations

import os

from runc_ckpt.base.record import Record

# Python's machine names -> Go's GOARCH, which podman writes.
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64"}


class HostInfo(Record):
    arch: str
    kernel: str
    cgroups: str
    distribution: str
    distribution_version: str


def goarch(machine: str | None = None) -> str:
    m = machine or os.uname().machine       # platform.machine(), without importing platform
    return _GOARCH.get(m, m)


def kernel() -> str:
    return os.uname().release               # platform.release()


def cgroups_version() -> str:
    return "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "v1"


def _os_release() -> dict[str, str]:
    # Imported here, not at the top: only the distribution needs it (~2 ms of a restore's start-up otherwise).
    import platform
    try:
        return platform.freedesktop_os_release()
    except OSError:
        return {}


def current() -> HostInfo:
    rel = _os_release()
    return HostInfo(goarch(), kernel(), cgroups_version(), rel.get("ID", ""), rel.get("VERSION_ID", ""))


def criu_number(version: str) -> int | None:
    """CRIU's version as podman's integer: "4.2.1" -> 40201, "3.17" -> 31700; None if not a version."""
    parts = version.strip().split(".")
    try:
        nums = [int(p) for p in parts[:3]] + [0] * (3 - len(parts[:3]))
    except ValueError:
        return None
    return nums[0] * 10000 + nums[1] * 100 + nums[2]
