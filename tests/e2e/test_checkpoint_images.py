"""Checkpoint images across engines, on the real stack (private podman, real runc and CRIU, skopeo).

- runc-ckpt's --create-image image, copied by skopeo into podman's storage,
  restores under `podman container restore IMAGE` and the process goes on;
- podman's own --create-image image restores under runc-ckpt, from
  containers-storage: and from an oci: layout, into a plain runc bundle;
- `image build` of a podman export restores.
The podman container and its volume are removed before each restore, as on
a new host.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.integration.conftest import wait_for
from tests.podman_env import podman_env, unpack_busybox  # noqa: F401


def _ckpt(runc_ckpt_bin: str, env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([runc_ckpt_bin, "--root", str(env.runc_root), *args], capture_output=True, text=True,
                          env=env.env, stdin=subprocess.DEVNULL, timeout=180, check=False)


@pytest.mark.parametrize("transport", ["oci-archive", "containers-storage"])
def test_create_image_restores_under_podman(transport, podman_env, tmp_path, runc_ckpt_bin):  # noqa: F811
    require_tool("skopeo")
    name = podman_env.run_counter(volume="vol1")
    wait_for(lambda: podman_env.counter(name) > 3, timeout=30, what="podman counter")
    cid = podman_env.inspect(name)["Id"]
    image = tmp_path / "ckpt.tar"
    ref = f"oci-archive:{image}:1" if transport == "oci-archive" else "ck"  # a bare NAME: podman's localhost/ck:latest
    out = _ckpt(runc_ckpt_bin, podman_env, "checkpoint", "--create-image", ref, cid)
    assert out.returncode == 0, out.stderr
    before = int(podman_env.volume_dir("vol1").joinpath("counter").read_text())

    info = _ckpt(runc_ckpt_bin, podman_env, "inspect", "--format", "json", ref)
    assert info.returncode == 0, info.stderr
    doc = json.loads(info.stdout)
    assert doc["restorable_by"] == ["podman", "CRI-O", "runc-ckpt"]
    ann = doc["image"]["annotations"]
    assert ann["io.podman.annotations.checkpoint.name"] == name
    assert ann["io.kubernetes.cri-o.annotations.checkpoint.name"] == name
    assert ann["org.criu.checkpoint.container.name"] == name
    assert ann["io.podman.annotations.checkpoint.rootfsImageName"] == podman_env.image
    assert ann["io.runc-ckpt.manifest.digest"].startswith("sha256:")
    assert {r["verdict"] for r in doc["compatibility"]} == {"same"}
    log = _ckpt(runc_ckpt_bin, podman_env, "inspect", "--log", ref)
    assert log.returncode == 0 and "Dumping finished successfully" in log.stdout

    podman_env.podman("rm", "-f", name)
    podman_env.podman("volume", "rm", "vol1")
    if transport == "oci-archive":
        copy = subprocess.run(["skopeo", "copy", "--quiet", ref, "containers-storage:localhost/ck:latest"],
                              env=podman_env.env, capture_output=True, text=True, check=False)
        assert copy.returncode == 0, copy.stderr
    podman_env.podman("container", "restore", "ck")
    wait_for(lambda: podman_env.counter(name) > before + 2, timeout=30, what="counter to continue under podman")


def _plain_bundle(tmp_path: Path, tmp_path_factory, name: str = "bundle") -> Path:
    """A fresh bundle: the image's files in rootfs/, no config.json (restore takes spec.dump)."""
    bundle = tmp_path / name
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    unpack_busybox(tmp_path_factory, rootfs)
    os.chmod(rootfs, 0o755)
    return bundle


def _restore_plain(runc_ckpt_bin: str, ref: str, bundle: Path, runc_root: Path, cid: str, env: dict,
                   volume_counter: Path, before: int) -> None:
    errors = bundle.parent / f"{cid}.stderr"
    try:
        with open(errors, "w") as err:
            rc = subprocess.run([runc_ckpt_bin, "--root", str(runc_root), "restore", "--import", ref,
                                 "--bundle", str(bundle), "-d", cid], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, env=env, timeout=180, check=False).returncode
        assert rc == 0, errors.read_text()
        wait_for(lambda: int(volume_counter.read_text().strip() or 0) > before + 2,
                 what=f"counter to continue after restore from {ref}")
        assert not [n for n in os.listdir(bundle) if n.startswith((".runc-ckpt-import-", ".runc-ckpt-image-"))]
    finally:
        subprocess.run(["runc", "--root", str(runc_root), "kill", cid, "KILL"], capture_output=True, check=False)
        time.sleep(0.3)
        subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", cid], capture_output=True,
                       check=False)


def test_podman_image_restores_under_runc_ckpt(podman_env, tmp_path, tmp_path_factory, runc_ckpt_bin):  # noqa: F811
    require_tool("skopeo")
    name = podman_env.run_counter(volume="vol1")
    wait_for(lambda: podman_env.counter(name) > 3, timeout=30, what="podman counter")
    volume_source = Path(podman_env.inspect(name)["Mounts"][0]["Source"])
    podman_env.podman("container", "checkpoint", "--create-image", "localhost/podman-ck:1", name)
    before = int((volume_source / "counter").read_text())
    podman_env.podman("rm", "-f", name)
    podman_env.podman("volume", "rm", "vol1")
    cfg = tmp_path / "runc-ckpt.yaml"
    # The archived spec is untrusted (no config.json in the bundle): its volume must lie under volume_roots.
    cfg.write_text(f"volume_roots: [{volume_source.parent.parent}]\nstate_dir: {tmp_path / 'state'}\n")
    env = dict(podman_env.env, RUNC_CKPT_CONFIG=str(cfg))
    runc_root = tmp_path / "runc-root"

    info = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", "containers-storage:localhost/podman-ck:1"],
                          capture_output=True, text=True, env=env, check=False)
    assert info.returncode == 0, info.stderr
    doc = json.loads(info.stdout)
    assert doc["engine"] == "podman" and doc["name"] == name
    bare = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", "podman-ck:1"],  # podman's short name
                          capture_output=True, text=True, env=env, check=False)
    assert bare.returncode == 0, bare.stderr
    assert json.loads(bare.stdout)["image"]["manifest_digest"] == doc["image"]["manifest_digest"]
    assert {r["what"] for r in doc["compatibility"]} >= {"architecture", "kernel", "CRIU"}

    _restore_plain(runc_ckpt_bin, "containers-storage:localhost/podman-ck:1",
                   _plain_bundle(tmp_path, tmp_path_factory, "b1"), runc_root, "from-storage", env,
                   volume_source / "counter", before)
    for p in volume_source.iterdir():
        p.unlink()
    layout = tmp_path / "layout"
    copy = subprocess.run(["skopeo", "copy", "--quiet", "containers-storage:localhost/podman-ck:1", f"oci:{layout}:ck"],
                          env=env, capture_output=True, text=True, check=False)
    assert copy.returncode == 0, copy.stderr
    _restore_plain(runc_ckpt_bin, f"oci:{layout}:ck", _plain_bundle(tmp_path, tmp_path_factory, "b2"), runc_root,
                   "from-oci", env, volume_source / "counter", before)


def test_image_build_of_a_podman_export_restores(podman_env, tmp_path, tmp_path_factory, runc_ckpt_bin):  # noqa: F811
    name = podman_env.run_counter(volume="vol1")
    wait_for(lambda: podman_env.counter(name) > 3, timeout=30, what="podman counter")
    volume_source = Path(podman_env.inspect(name)["Mounts"][0]["Source"])
    archive = tmp_path / "podman.tar.gz"
    podman_env.podman("container", "checkpoint", "-e", str(archive), "-c", "gzip", name)
    before = int((volume_source / "counter").read_text())
    podman_env.podman("rm", "-f", name)
    podman_env.podman("volume", "rm", "vol1")
    layout = tmp_path / "layout"
    built = subprocess.run([runc_ckpt_bin, "image", "build", str(archive), f"oci:{layout}:ck"], capture_output=True,
                           text=True, env=podman_env.env, check=False)
    assert built.returncode == 0, built.stderr
    cfg = tmp_path / "runc-ckpt.yaml"
    # The archived spec is untrusted (no config.json in the bundle): its volume must lie under volume_roots.
    cfg.write_text(f"volume_roots: [{volume_source.parent.parent}]\nstate_dir: {tmp_path / 'state'}\n")
    env = dict(podman_env.env, RUNC_CKPT_CONFIG=str(cfg))
    _restore_plain(runc_ckpt_bin, f"oci:{layout}:ck", _plain_bundle(tmp_path, tmp_path_factory), tmp_path / "runc-root",
                   "from-build", env, volume_source / "counter", before)


@pytest.mark.parametrize("many", [False, True], ids=["small-diff", "gnu-tar-diff"])
def test_export_of_a_podman_container_restores_under_podman(podman_env, tmp_path, runc_ckpt_bin, many):  # noqa: F811
    """config.dump as podman writes it (rootfsImageID/Name, namedVolumes): `podman container restore --import`.
    gnu-tar-diff: 300 new files, so GNU tar writes the diff (archive.tarstage) and podman's Go zstd reader
    meets our spliced frames, the header slot's skippable frame among them."""
    name = podman_env.run_counter(volume="vol1")
    wait_for(lambda: podman_env.counter(name) > 3, timeout=30, what="podman counter")
    if many:
        podman_env.podman("exec", name, "sh", "-c", "mkdir /many; for i in $(seq 300); do echo $i > /many/f$i; done")
    cid = podman_env.inspect(name)["Id"]
    archive = tmp_path / "web.tar.zst"
    out = _ckpt(runc_ckpt_bin, podman_env, "checkpoint", "--export", str(archive), cid)
    assert out.returncode == 0, out.stderr
    before = int(podman_env.volume_dir("vol1").joinpath("counter").read_text())
    info = json.loads(_ckpt(runc_ckpt_bin, podman_env, "inspect", "--format", "json", str(archive)).stdout)
    assert info["restorable_by"] == ["podman", "runc-ckpt"]
    assert info["sizes"]["volumes"].keys() == {"vol1"}
    podman_env.podman("rm", "-f", name)
    podman_env.podman("volume", "rm", "vol1")
    if many:
        assert b"\x50\x2a\x4d\x18" in archive.read_bytes()      # the header slot's skippable frame
    podman_env.podman("container", "restore", "--import", str(archive))
    wait_for(lambda: podman_env.counter(name) > before + 2, timeout=30, what="counter to continue under podman")
    if many:
        assert podman_env.podman("exec", name, "cat", "/many/f1", "/many/f300").stdout.split() == ["1", "300"]
