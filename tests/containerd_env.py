"""A private containerd for end-to-end tests, and a busybox image built locally.

Nothing here touches the host's containerd: the daemon gets its own root,
state, sockets and config under a temp directory, a private namespace, and
the containers a private runc --root. Nothing can be pulled, so the image is
an OCI image archive of busybox-static written here and imported with ctr.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require_tool

IMAGE = "docker.io/library/busybox-ckpt:test"
NAMESPACE = "runc-ckpt-test"
COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done"
APPLETS = ("sh", "sleep", "echo", "cat", "sync", "ls", "true", "kill", "mkdir")


def _blob(blobs: dict[str, bytes], data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def _layer_tar(busybox: str) -> bytes:
    """An uncompressed rootfs layer: busybox-static plus the applet links the tests use."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("proc", 0o555), ("sys", 0o555),
                        ("dev", 0o755), ("run", 0o755), ("root", 0o700), ("data", 0o755)):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(info)
        data = Path(busybox).read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode, info.mtime = len(data), 0o755, 0
        tar.addfile(info, io.BytesIO(data))
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, "busybox", 0o777, 0
            tar.addfile(info)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", "root:x:0:\n")):
            raw = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(raw), 0o644, 0
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def write_busybox_image(busybox: str, out: Path, ref: str = IMAGE) -> Path:
    """Write an OCI image archive (oci-layout, index.json, blobs) of busybox-static to `out`."""
    blobs: dict[str, bytes] = {}
    layer = _layer_tar(busybox)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    layer_gz = gzip.compress(layer, mtime=0)
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "runc-ckpt tests: busybox-static"}],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **_blob(blobs, json.dumps(config).encode())},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_blob(blobs, layer_gz)}],
    }
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       **_blob(blobs, json.dumps(manifest).encode()),
                       "platform": {"architecture": "amd64", "os": "linux"},
                       "annotations": {"io.containerd.image.name": ref,
                                       "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1]}}],
    }
    with tarfile.open(out, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            add("blobs/sha256/" + digest.split(":", 1)[1], data)
    return out


@dataclass
class Containerd:
    """A running private containerd and a ctr that talks to it."""

    base: Path
    socket: Path
    runc_root: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    config: Path  # runc-ckpt.yaml that runc-ckpt reads under this containerd ($RUNC_CKPT_CONFIG)
    runc_calls: Path  # one line per real-runc call made through runc-ckpt: its arguments
    containers: list[str] = field(default_factory=list)

    def ctr(self, *args: str, check: bool = True, timeout: float = 60,
            **kw: object) -> subprocess.CompletedProcess[str]:
        """Run `ctr -a SOCK -n NAMESPACE args...`; a failure shows ctr's output and containerd's log tail."""
        out = subprocess.run(["ctr", "-a", str(self.socket), "-n", NAMESPACE, *args], capture_output=True,
                             text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
        if check and out.returncode != 0:
            pytest.fail(f"ctr {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}\n"
                        f"containerd log tail:\n{self.log_tail()}", pytrace=False)
        return out

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def task_status(self, cid: str) -> str | None:
        out = self.ctr("tasks", "ls", check=False)
        for line in out.stdout.splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == cid:
                return parts[-1]
        return None

    def run_counter(self, cid: str, runc_bin: str, annotations: dict[str, str] | None = None) -> None:
        """Start a detached busybox container counting into /tmp/counter, with runc_bin as its runc."""
        self.containers.append(cid)
        extra = [a for k, v in (annotations or {}).items() for a in ("--annotation", f"{k}={v}")]
        # /dev/null stdio: CRIU cannot dump a container whose stdio is a host file or pipe.
        self.ctr("run", "-d", "--null-io", "--runc-binary", runc_bin, "--runc-root", str(self.runc_root), *extra,
                 IMAGE, cid, "sh", "-c", COUNTER)

    def rootfs(self, cid: str) -> Path:
        """The task's rootfs as mounted by the shim (gone while no task exists)."""
        return self.base / "state" / "io.containerd.runtime.v2.task" / NAMESPACE / cid / "rootfs"

    def counter(self, cid: str) -> int:
        """The container's count; 0 if it has not written one yet.

        `echo $i > /tmp/counter` truncates before it writes, so an empty read
        is a moment mid-write, not a value: read again.
        """
        path = self.rootfs(cid) / "tmp" / "counter"
        for _ in range(100):
            if not path.exists():
                return 0
            text = path.read_text().strip()
            if text:
                return int(text)
            time.sleep(0.01)
        return 0

    def remove_container(self, cid: str) -> None:
        self.ctr("tasks", "kill", "-s", "KILL", cid, check=False)
        deadline = time.monotonic() + 10
        while self.task_status(cid) not in (None, "STOPPED") and time.monotonic() < deadline:
            time.sleep(0.1)
        self.ctr("tasks", "delete", "--force", cid, check=False)
        self.ctr("containers", "delete", cid, check=False)
        self.ctr("snapshots", "rm", cid, check=False)


def _config_toml(base: Path, socket: Path) -> str:
    return f"""version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = "{base}/debug.sock"
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
"""


def _shim_pids(base: Path) -> list[int]:
    """Shims started by this containerd: their command line names our socket's directory."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and str(base).encode() in b" ".join(cmdline):
            pids.append(int(entry))
    return pids


@pytest.fixture
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """A private containerd with the busybox image imported; stopped, with its shims, at teardown.

    A short base path: unix socket paths must stay under 108 bytes.
    """
    binary = require_tool("containerd")
    require_tool("ctr")
    require_tool("containerd-shim-runc-v2")
    require_tool("runc")
    require_tool("criu")
    busybox = require_tool("busybox")
    base = Path(tmp_path_factory.mktemp("ctrd", numbered=True))
    socket = base / "c.sock"
    (base / "containerd.toml").write_text(_config_toml(base, socket))
    log_path = base / "containerd.log"
    runc_root = base / "runc"
    runc_root.mkdir()
    # The shim, and so runc-ckpt, inherits containerd's environment: this is
    # how a test gives runc-ckpt a private config. Empty means defaults.
    config = base / "runc-ckpt.yaml"
    config.write_text("")
    # The real runc, behind a wrapper that logs each call: proof that
    # containerd ran runc-ckpt, and of the argv runc-ckpt handed on.
    runc_calls = base / "runc-calls.log"
    wrapper = base / "runc-logged"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {runc_calls}\nexec {require_tool("runc")} "$@"\n')
    wrapper.chmod(0o755)
    environ = dict(os.environ, RUNC_CKPT_CONFIG=str(config), RUNC_CKPT_RUNC=str(wrapper))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary, "--config", str(base / "containerd.toml")], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=environ)
    env = Containerd(base=base, socket=socket, runc_root=runc_root, proc=proc, log_path=log_path, config=config,
                     runc_calls=runc_calls)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"containerd exited ({proc.returncode}):\n{env.log_tail()}", pytrace=False)
            if socket.exists() and env.ctr("version", check=False, timeout=10).returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"containerd did not come up:\n{env.log_tail()}", pytrace=False)
            time.sleep(0.1)
        image = write_busybox_image(busybox, base / "busybox-oci.tar")
        env.ctr("images", "import", str(image))
        yield env
    finally:
        for cid in env.containers:
            env.remove_container(cid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # Shims outlive containerd by design; containers outlive a killed shim.
        for pid in _shim_pids(base):
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        runc = require_tool("runc")
        ns_root = str(runc_root / NAMESPACE)
        listed = subprocess.run([runc, "--root", ns_root, "list", "-q"], capture_output=True, text=True,
                                check=False).stdout.split()
        for cid in listed:
            subprocess.run([runc, "--root", ns_root, "kill", cid, "KILL"], capture_output=True, check=False)
            subprocess.run([runc, "--root", ns_root, "delete", "--force", cid], capture_output=True, check=False)
        # Snapshot mounts of tasks that outlived their shim.
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        for line in reversed(mounts):
            target = line.split()[1]
            if target.startswith(str(base)):
                subprocess.run(["umount", "-l", target], check=False)
