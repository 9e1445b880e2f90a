"""Registry round trip: --create-image docker://127.0.0.1:PORT/ckpt:1, then restore on a second host.

The registry is Debian's docker-registry, started by the test on 127.0.0.1
with its own config and storage. The "second host" shares only the
registry: a fresh runc root, a fresh bundle whose rootfs is the base image
(an overlay of the busybox lower dir, no config.json), and no volume dir.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from tests.conftest import require_tool
from tests.image_helpers import registry
from tests.integration.conftest import mount_overlay, runc, wait_for
from tests.integration.test_restore_import_real import SCRIPT, restore_env


def test_registry_round_trip_to_a_second_host(make_bundle, containers, busybox_lower, tmp_path, runc_ckpt_bin):
    require_tool("skopeo")
    b = make_bundle(args=["sh", "-c", SCRIPT], volumes={"vol1": "/data"})
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    with registry(tmp_path) as (host, reg_env):
        env = {**restore_env(tmp_path), "CONTAINERS_REGISTRIES_CONF": reg_env["CONTAINERS_REGISTRIES_CONF"]}
        ref = f"docker://{host}/ckpt:1"
        out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "checkpoint", "--create-image", ref, cid],
                             capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=180,
                             check=False)
        assert out.returncode == 0, out.stderr
        assert containers.status(cid) is None
        before = b.counter()
        volume = b.volumes["vol1"]
        assert (volume / "sub" / "v").read_text() == "kept\n"

        # The second host: nothing of the first but the registry.
        shutil.rmtree(volume.parent)
        root2 = tmp_path / "host2-root"
        root2.mkdir()
        bundle2 = tmp_path / "host2-bundle"
        upper, work, rootfs = bundle2 / "upper", bundle2 / "work", bundle2 / "rootfs"
        for d in (upper, work, rootfs):
            d.mkdir(parents=True)
        mount_overlay(busybox_lower, upper, work, rootfs)
        try:
            info = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", ref], capture_output=True,
                                  text=True, env=env, check=False)
            assert info.returncode == 0, info.stderr
            doc = json.loads(info.stdout)
            assert doc["id"] == cid and doc["verified"] is True
            assert doc["image"]["annotations"]["io.kubernetes.cri-o.annotations.checkpoint.name"] == cid

            out = subprocess.run([runc_ckpt_bin, "--root", str(root2), "restore", "--import", ref,
                                  "--bundle", str(bundle2), "-d"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                                 timeout=180, check=False)
            assert out.returncode == 0, out.stderr
            state = json.loads(runc(root2, "state", cid).stdout)
            assert state["status"] == "running"
            wait_for(lambda: int((rootfs / "counter").read_text().strip() or 0) > before + 2,
                     what="counter to continue on the second host")
            assert (rootfs / "newfile").read_text() == "new\n"
            assert (volume / "sub" / "v").read_text() == "kept\n"
        finally:
            runc(root2, "kill", cid, "KILL", check=False)
            runc(root2, "delete", "--force", cid, check=False)
            subprocess.run(["umount", "-l", str(rootfs)], check=False)
