"""A host for reliability tests with a fake runc/criu (tests/fake_runc.py): bundles, containers, calls.

Everything runc-ckpt touches lies under one tmp dir: state dir, runc root,
bundles (plain-directory rootfs), volumes, archives. `run()` calls the
installed runc-ckpt as a subprocess, so RUNC_CKPT_FAULT can kill or pause it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

FAKE = Path(__file__).with_name("fake_runc.py")


@dataclass
class Host:
    tmp: Path
    bin: str
    state: Path
    root: Path
    fake_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def knob(self, name: str, value: str | None) -> None:
        path = self.fake_dir / name
        if value is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(value)

    def calls(self, command: str | None = None) -> list[list[str]]:
        path = self.fake_dir / "calls"
        out = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
        return [c for c in out if command is None or command in c]

    def bundle(self, name: str = "bundle", files: int = 3) -> Path:
        b = self.tmp / name
        (b / "rootfs" / "etc").mkdir(parents=True)
        (b / "rootfs" / "etc" / "lower-file").write_text("from the image\n")
        for i in range(files):
            (b / "rootfs" / f"file{i}").write_text(f"file {i}\n")
        (b / "config.json").write_text(json.dumps({
            "ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]}))
        return b

    def state_file(self, cid: str) -> Path:
        """Where the fake runc keeps a container, as runc does: <root>/<id>/state.json."""
        return self.root / cid / "state.json"

    def forget(self, cid: str) -> None:
        """The container is gone from runc's root (deleted behind our back)."""
        self.state_file(cid).unlink()
        self.state_file(cid).parent.rmdir()

    def container(self, cid: str, bundle: Path, status: str = "running") -> None:
        self.state_file(cid).parent.mkdir(exist_ok=True)
        self.state_file(cid).write_text(json.dumps({
            "ociVersion": "1.0.2", "id": cid, "pid": 4321, "status": status, "bundle": str(bundle),
            "rootfs": str(bundle / "rootfs"), "created": "2026-01-01T00:00:00Z", "annotations": {}}))

    def exists(self, cid: str) -> bool:
        return self.state_file(cid).exists()

    def argv(self, *args: str) -> list[str]:
        return [self.bin, "--root", str(self.root), "--criu", str(self.tmp / "fake-criu"), *args]

    def run(self, *args: str, fault: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, RUNC_CKPT_FAULT=fault) if fault else self.env
        return subprocess.run(self.argv(*args), capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                              timeout=timeout, check=False, cwd=self.tmp)

    def spawn(self, *args: str, fault: str | None = None) -> subprocess.Popen[str]:
        env = dict(self.env, RUNC_CKPT_FAULT=fault) if fault else self.env
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.tmp)


def make_host(tmp: Path, runc_ckpt_bin: str, extra_config: str = "") -> Host:
    fake_dir = tmp / "fake"
    fake_dir.mkdir()
    for name, mode in (("fake-runc", ""), ("fake-criu", "FAKE_AS=criu ")):
        script = tmp / name
        script.write_text(f"#!/bin/sh\n{mode}exec {sys.executable} {FAKE} \"$@\"\n")
        script.chmod(0o755)
    state, root = tmp / "state", tmp / "runc-root"
    root.mkdir()
    (tmp / "volumes").mkdir()
    cfg = tmp / "runc-ckpt.yaml"
    cfg.write_text(f"state_dir: {state}\ncompress: gzip\nvolume_roots: [{tmp / 'volumes'}]\nlock_timeout: 30\n{extra_config}")
    env = dict(os.environ, RUNC_CKPT_RUNC=str(tmp / "fake-runc"), RUNC_CKPT_CONFIG=str(cfg),
               FAKE_RUNC_DIR=str(fake_dir))
    env.pop("RUNC_CKPT_FAULT", None)
    return Host(tmp, runc_ckpt_bin, state, root, fake_dir, env)


def wait_stopped(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Wait until proc stopped itself (RUNC_CKPT_FAULT=PHASE:pause)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{proc.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "T":
                    return
        except FileNotFoundError:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    raise AssertionError(f"runc-ckpt did not pause (exit status {proc.poll()}): {proc.stderr.read() if proc.stderr else ''}")


def signal_paused(proc: subprocess.Popen, signum: int) -> tuple[int, str]:
    """Send signum to a paused runc-ckpt, let it go on; (exit status, stderr)."""
    os.kill(proc.pid, signum)
    os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def leftovers(*dirs: Path) -> list[str]:
    """Our temp/staging/import/stranded names anywhere below dirs."""
    found = []
    for d in dirs:
        for dirpath, dirnames, filenames in os.walk(d):
            for n in dirnames + filenames:
                if n.startswith((".runc-ckpt", ".checkpoint.new-", "checkpoint.old-", ".scratch-")) or ".runc-ckpt-" in n:
                    found.append(os.path.join(dirpath, n))
    return found
