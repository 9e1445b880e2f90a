"""Cross-engine: podman exports a checkpoint; runc-ckpt restores it into a plain runc bundle.

The bundle's rootfs is the image's files (the same busybox tarball podman
imported), with the root mode the plain extraction gives (0755; podman's
layers have 0555 and CRIU insists on it). The container and its named
volume are removed from podman first, as on a new host, so the per-container
bind sources (/etc/hosts, /etc/hostname, /run/.containerenv, /dev/shm) and the
volume dir are gone and must be recreated.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from tests.integration.conftest import wait_for
from tests.podman_env import podman_env, unpack_busybox  # noqa: F401


def test_podman_export_restores_into_runc_bundle(podman_env, tmp_path, tmp_path_factory,  # noqa: F811
                                                 runc_ckpt_bin):
    name = podman_env.run_counter(volume="vol1")
    wait_for(lambda: podman_env.counter(name) > 3, timeout=30, what="podman counter")
    archive = tmp_path / "podman.tar.zst"
    podman_env.podman("container", "checkpoint", "-e", str(archive), name)
    volume_source = podman_env.inspect(name)["Mounts"][0]["Source"]
    before = int((open(os.path.join(volume_source, "counter")).read().strip()))
    podman_env.podman("rm", "-f", name)
    podman_env.podman("volume", "rm", "vol1")
    assert not os.path.exists(volume_source)

    info = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", str(archive)], capture_output=True,
                          text=True, check=False)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["engine"] == "podman"
    assert json.loads(info.stdout)["name"] == name

    bundle = tmp_path / "bundle"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    unpack_busybox(tmp_path_factory, rootfs)
    os.chmod(rootfs, 0o755)
    runc_root = tmp_path / "runc-root"
    cfg = tmp_path / "runc-ckpt.yaml"
    # The archived spec is untrusted (no config.json in the bundle): its volume must lie under volume_roots.
    cfg.write_text(f"volume_roots: [{os.path.dirname(os.path.dirname(volume_source))}]\n"
                   f"state_dir: {tmp_path / 'state'}\n")
    env = dict(os.environ, RUNC_CKPT_CONFIG=str(cfg))
    cid = "from-podman"
    # The restored process inherits runc's stdout/stderr in place of conmon's pipes: a file, not a pipe
    # this test would wait on.
    errors = tmp_path / "stderr"
    try:
        with open(errors, "w") as err:
            rc = subprocess.run([runc_ckpt_bin, "--root", str(runc_root), "restore", "--import", str(archive),
                                 "--bundle", str(bundle), "-d", cid], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, env=env, timeout=120, check=False).returncode
        stderr = errors.read_text()
        assert rc == 0, stderr
        state = json.loads(subprocess.run(["runc", "--root", str(runc_root), "state", cid], capture_output=True,
                                          text=True, check=True).stdout)
        assert state["status"] == "running"

        def counter() -> int:
            return int(open(os.path.join(volume_source, "counter")).read().strip() or 0)
        wait_for(lambda: counter() > before + 2, what="counter to continue after restore")
        for dest in ("/etc/hosts", "/etc/hostname", "/run/.containerenv", "/dev/shm"):
            assert f"bind mount {dest}: source" in stderr
        spec = json.loads((bundle / "config.json").read_text())
        assert spec["root"]["path"] == "rootfs"
        assert os.stat(rootfs).st_mode & 0o777 == 0o555
    finally:
        subprocess.run(["runc", "--root", str(runc_root), "kill", cid, "KILL"], capture_output=True, check=False)
        time.sleep(0.2)
        subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", cid], capture_output=True,
                       check=False)
