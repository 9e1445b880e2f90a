"""Two simulated hosts on this machine for migration tests: each its own runc --root, state dir, config, bundle.

The source runs a container; the target has a fresh bundle over the same
image (an empty overlay upper) and no container. pipe() and socket() move a
stream between `runc-ckpt checkpoint --export -` and `restore --import -`.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.integration.conftest import Bundle, mount_overlay, wait_for


@dataclass
class Host:
    """One simulated host."""

    name: str
    root: Path
    env: dict

    def runc_ckpt(self, binary: str, *args: str) -> list[str]:
        return [binary, "--root", str(self.root), *args]


def make_host(tmp_path: Path, name: str, volume_roots: list[Path]) -> Host:
    base = tmp_path / f"host-{name}"
    (base / "runc-root").mkdir(parents=True)
    (base / "state").mkdir()
    cfg = base / "runc-ckpt.yaml"
    cfg.write_text(f"state_dir: {base / 'state'}\nvolume_roots: [{', '.join(map(str, volume_roots))}]\n")
    return Host(name, base / "runc-root", dict(os.environ, RUNC_CKPT_CONFIG=str(cfg)))


def target_bundle(make_bundle, source: Bundle, busybox_lower: Path, volumes: dict[str, str] | None = None) -> Bundle:
    """A bundle like `source` on the target: same spec, fresh overlay, its own (empty) volume dirs."""
    b = make_bundle(volumes=None, name=f"target-{source.path.name}")
    spec = source.config()
    for vname, data in (volumes or {}).items():
        for m in spec["mounts"]:
            if m.get("source") == str(source.volumes[vname]):
                m["source"] = data
        b.volumes[vname] = Path(data)
        Path(data).mkdir(parents=True, exist_ok=True)
    b.write_config(spec)
    return b


def remount_fresh(b: Bundle, busybox_lower: Path) -> None:
    subprocess.run(["umount", str(b.rootfs)], check=True)
    for d in (b.upper, b.work):
        subprocess.run(["rm", "-rf", str(d)], check=True)
        d.mkdir()
    mount_overlay(busybox_lower, b.upper, b.work, b.rootfs)


def pipe(send: list[str], recv: list[str], send_env: dict, recv_env: dict,
         timeout: float = 120) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """send | recv over an OS pipe."""
    r, w = os.pipe()
    ps = subprocess.Popen(send, stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE, env=send_env)
    os.close(w)
    pr = subprocess.Popen(recv, stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=recv_env)
    os.close(r)
    return _finish(ps, pr, timeout)


def socket_pair(send: list[str], recv: list[str], send_env: dict, recv_env: dict,
                timeout: float = 120) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """Both ways over a TCP connection on 127.0.0.1: each side's stdin and stdout are its socket."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        a = socket.create_connection(srv.getsockname())
        b, _ = srv.accept()
    ps = subprocess.Popen(send, stdin=a.fileno(), stdout=a.fileno(), stderr=subprocess.PIPE, env=send_env)
    pr = subprocess.Popen(recv, stdin=b.fileno(), stdout=b.fileno(), stderr=subprocess.PIPE, env=recv_env)
    a.close()
    b.close()
    return _finish(ps, pr, timeout)


def _finish(ps: subprocess.Popen, pr: subprocess.Popen, timeout: float):
    """Both sides' output read at once: a side whose stderr pipe nobody drains blocks when it fills
    (the sender's --debug relays runc's debug lines, one runc call per memory pre-copy round)."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        sent, got = pool.submit(ps.communicate, timeout=timeout), pool.submit(pr.communicate, timeout=timeout)
        try:
            sout, serr = sent.result()
            rout, rerr = got.result()
        except subprocess.TimeoutExpired:
            ps.kill()
            pr.kill()
            raise
    return (subprocess.CompletedProcess(ps.args, ps.returncode, sout, serr.decode()),
            subprocess.CompletedProcess(pr.args, pr.returncode, rout, rerr.decode()))


def running_pair(make_bundle, containers, tmp_path: Path, busybox_lower: Path, script: str):
    """Host A running `script` in a container with a volume, host B with a fresh bundle for it.

    Each host knows both volume roots, as hosts of one cluster would. Returns (a, b, source bundle,
    target bundle, container ID).
    """
    roots = [tmp_path / "volumes", tmp_path / "target-volumes"]
    a, b = make_host(tmp_path, "a", roots), make_host(tmp_path, "b", roots)
    src = make_bundle(args=["sh", "-c", script], volumes={"vol1": "/data"})
    containers.root = a.root
    cid = containers.run(src)
    wait_for(lambda: src.counter() > 3, what="counter to start")
    dst = target_bundle(make_bundle, src, busybox_lower,
                        volumes={"vol1": str(tmp_path / "target-volumes" / "vol1" / "_data")})
    return a, b, src, dst, cid
