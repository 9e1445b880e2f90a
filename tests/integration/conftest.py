"""Real runc + CRIU fixtures: busybox bundles on an overlay rootfs under a private --root.

Every fixture tears down what it made (containers, mounts, directories), even
when the test fails.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runc_ckpt.state import tmpfsimages
from tests.conftest import require_tool

COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /counter; sleep 0.1; done"


@pytest.fixture(scope="session")
def busybox_lower(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only busybox-static rootfs, built once per session."""
    busybox = require_tool("busybox")
    lower = tmp_path_factory.mktemp("busybox-lower")
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "run", "root", "data"):
        (lower / d).mkdir()
    (lower / "tmp").chmod(0o1777)
    subprocess.run(["cp", busybox, str(lower / "bin" / "busybox")], check=True)
    out = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout
    for applet in out.split():
        link = lower / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (lower / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (lower / "etc" / "group").write_text("root:x:0:\n")
    (lower / "etc" / "lower-file").write_text("from the image\n")
    return lower


def runc(root: Path, *args: str, check: bool = True, runc_bin: str = "runc",
         **kw: object) -> subprocess.CompletedProcess[str]:
    """Run (real or wrapped) runc under a private root."""
    return subprocess.run([runc_bin, "--root", str(root), *args], capture_output=True, text=True,
                          check=check, **kw)  # type: ignore[call-overload]


@dataclass
class Bundle:
    """An OCI bundle whose rootfs is an overlay of the busybox lower dir."""

    path: Path
    upper: Path
    work: Path
    rootfs: Path
    config_path: Path
    mounted: bool = False
    volumes: dict[str, Path] = field(default_factory=dict)

    def config(self) -> dict:
        return json.loads(self.config_path.read_text())

    def write_config(self, cfg: dict) -> None:
        self.config_path.write_text(json.dumps(cfg, indent=2))

    def counter(self) -> int:
        text = (self.rootfs / "counter").read_text().strip()
        return int(text) if text else 0


def make_spec(args: list[str]) -> dict:
    """A runc spec for a non-terminal busybox process with a writable rootfs."""
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN",
                                 "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETUID", "CAP_SETGID"]
                             for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "runc-ckpt-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def mount_overlay(lower: Path, upper: Path, work: Path, target: Path) -> None:
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work}", str(target)], check=True)


def overlay_bundle(path: Path, lower: Path) -> Bundle:
    """A bundle dir at path whose rootfs is an overlay on lower (the caller unmounts it)."""
    b = Bundle(path=path, upper=path / "upper", work=path / "work", rootfs=path / "rootfs",
               config_path=path / "config.json")
    for d in (b.path, b.upper, b.work, b.rootfs):
        d.mkdir(parents=True)
    mount_overlay(lower, b.upper, b.work, b.rootfs)
    b.mounted = True
    return b


@contextmanager
def mounted(*args: str) -> Iterator[None]:
    """`mount ARGS...` for the block; the last argument is the mount point, unmounted after."""
    subprocess.run(["mount", *args], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", args[-1]], check=False)


@pytest.fixture
def runc_root(tmp_path: Path) -> Path:
    root = tmp_path / "runc-root"
    root.mkdir()
    return root


@pytest.fixture
def make_bundle(tmp_path: Path, busybox_lower: Path) -> Iterator[Callable[..., Bundle]]:
    """Factory: make_bundle(args=[...], volumes={"name": ...}) -> Bundle.

    Named volumes are laid out podman-style under tmp_path/volumes/<name>/_data
    and bind-mounted at /<name> in the container.
    """
    made: list[Bundle] = []

    def factory(args: list[str] | None = None, volumes: dict[str, str] | None = None,
                name: str | None = None) -> Bundle:
        b = overlay_bundle(tmp_path / (name or f"bundle-{len(made)}"), busybox_lower)
        made.append(b)
        spec = make_spec(args or ["sh", "-c", COUNTER])
        for vname, dest in (volumes or {}).items():
            data = tmp_path / "volumes" / vname / "_data"
            data.mkdir(parents=True, exist_ok=True)
            b.volumes[vname] = data
            spec["mounts"].append({"destination": dest, "type": "bind", "source": str(data),
                                   "options": ["rbind", "rw"]})
        b.write_config(spec)
        return b

    yield factory
    for b in made:
        if b.mounted:
            subprocess.run(["umount", "-l", str(b.rootfs)], check=False)


@dataclass
class Containers:
    """Starts containers under a private root and removes them at teardown."""

    root: Path
    ids: list[str] = field(default_factory=list)

    def run(self, bundle: Bundle, cid: str | None = None, runc_bin: str = "runc") -> str:
        cid = cid or f"t-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        # The container's stdio is /dev/null: CRIU cannot dump a host file it
        # cannot see through the container's mounts.
        subprocess.run([runc_bin, "--root", str(self.root), "run", "-d", "--bundle", str(bundle.path), cid],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        return cid

    def state(self, cid: str) -> dict | None:
        out = runc(self.root, "state", cid, check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def status(self, cid: str) -> str | None:
        st = self.state(cid)
        return None if st is None else st["status"]

    def cleanup(self) -> None:
        for cid in self.ids:
            runc(self.root, "kill", cid, "KILL", check=False)
            runc(self.root, "delete", "--force", cid, check=False)


@pytest.fixture(autouse=True)
def tmpfs_images_go_with_the_test(tmp_path: Path) -> Iterator[None]:
    """CRIU images a test's calls kept on the host's tmpfs go when the test ends (state.tmpfsimages).

    A stream sent without a back channel keeps its images there by design (until the user deletes them),
    as does a killed call whose container is gone; the record naming each lies in the test's state dir,
    which pytest removes, and /dev/shm is RAM. Only dirs recorded under tmp_path are wiped.
    """
    yield
    for record in tmp_path.rglob(".tmpfs-*.json"):
        for found in tmpfsimages.records(str(record.parent)):
            tmpfsimages.wipe(str(record.parent), found.directory)


@pytest.fixture
def containers(runc_root: Path) -> Iterator[Containers]:
    require_tool("runc")
    require_tool("criu")
    c = Containers(runc_root)
    yield c
    c.cleanup()


def wait_for(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll pred until it holds; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")
