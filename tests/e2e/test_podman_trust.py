"""Node signing under podman: podman's own checkpoint archive carries runc-ckpt's signed images dir,
and a second host whose policy trusts the node key restores it; one flipped byte of pages-1.img is
refused by runc-ckpt before CRIU runs (trust.imagesdir)."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import zstandard

from tests.conftest import require_tool
from tests.integration.conftest import wait_for
from tests.integration.test_trust_real import _rewrite
from tests.podman_env import PodmanEnv, busybox_image_tar


def _host(name: str, runc_ckpt_bin: str, image_tar: Path, config: str) -> PodmanEnv:
    """A private podman whose runtime is runc-ckpt with this host's runc-ckpt.yaml."""
    env = PodmanEnv(Path(tempfile.mkdtemp(prefix=f"rcpt{name}-", dir="/tmp")), runc_ckpt_bin)
    cfg = env.dir / "runc-ckpt.yaml"
    cfg.write_text(f"state_dir: {env.dir / 'state'}\n{config}")
    text = env.runtime_wrapper.read_text()
    env.runtime_wrapper.write_text(text.replace("exec ", f"RUNC_CKPT_CONFIG={shlex.quote(str(cfg))} exec ", 1))
    env.import_image(image_tar)
    return env


def _node_keys(tmp_path_factory, tmp_path, runc_ckpt_bin) -> tuple[Path, Path, Path]:
    """The tools checked, busybox's image, a node's keys (`key generate`) and a policy trusting its signer."""
    for tool in ("conmon", "runc", "criu"):
        require_tool(tool)
    image_tar = busybox_image_tar(tmp_path_factory)
    keys = tmp_path / "keys"
    keys.mkdir()
    subprocess.run([runc_ckpt_bin, "key", "generate", "--output-dir", str(keys)], check=True, capture_output=True)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "sigstoreSigned", "keyPath": str(keys / "signing.pub")}]}))
    return image_tar, keys, policy


def test_podman_export_signed_by_the_node_restores_where_trusted_and_not_when_tampered(
        tmp_path_factory, tmp_path, runc_ckpt_bin):
    image_tar, keys, policy = _node_keys(tmp_path_factory, tmp_path, runc_ckpt_bin)
    a = _host("a", runc_ckpt_bin, image_tar, f"sign_by_sigstore_private_key: {keys / 'signing.key'}\n")
    b = None
    try:
        b = _host("b", runc_ckpt_bin, image_tar, f"signature_policy: {policy}\n")
        name = a.run_counter(name="signed")
        wait_for(lambda: a.counter(name) > 3, what="counter to start")
        archive = tmp_path / "signed.tar.zst"
        a.podman("container", "checkpoint", "--export", str(archive), "--compress", "zstd", name)
        members = tarfile.open(fileobj=io.BytesIO(
            zstandard.ZstdDecompressor().stream_reader(archive.read_bytes()).read())).getnames()
        assert any(m.endswith("checkpoint/runc-ckpt.images.sig") for m in members), members

        tampered = tmp_path / "tampered.tar.zst"
        shutil.copy(archive, tampered)
        _rewrite(tampered, lambda name, data: bytes([data[0] ^ 1]) + data[1:]
                 if name.lstrip("./") == "checkpoint/pages-1.img" else None)
        bad = b.podman("container", "restore", "--import", str(tampered), "--name", "forged", check=False)
        assert bad.returncode != 0
        assert "pages-1.img: size/sha256 differ" in bad.stderr, bad.stderr
        assert b.podman("container", "exists", "forged", check=False).returncode != 0 or \
            b.inspect("forged")["State"]["Status"] != "running"

        b.podman("container", "restore", "--import", str(archive), "--name", "copy")
        assert b.inspect("copy")["State"]["Status"] == "running"
        before = b.counter("copy")
        wait_for(lambda: b.counter("copy") > before + 2, what="counter to go on on host b")
    finally:
        a.teardown()
        if b is not None:
            b.teardown()
    assert not os.path.exists(a.dir)


def test_podman_export_under_node_encryption_carries_sealed_pages_and_restores_with_the_key(
        tmp_path_factory, tmp_path, runc_ckpt_bin):
    """Node-level encryption through an unmodified podman: its own archive's checkpoint/ holds only sealed
    images (signed by the node key), and host b, with the decryption key and a policy trusting the signer,
    restores it through podman's plain `runc restore --image-path`; host c without the key is refused."""
    image_tar, keys, policy = _node_keys(tmp_path_factory, tmp_path, runc_ckpt_bin)
    a = _host("a", runc_ckpt_bin, image_tar, f"sign_by_sigstore_private_key: {keys / 'signing.key'}\n"
                                             f"encryption_key: jwe:{keys / 'encryption.pub'}\n")
    b = c = None
    try:
        b = _host("b", runc_ckpt_bin, image_tar, f"signature_policy: {policy}\n"
                                                 f"decryption_key: [{keys / 'encryption.key'}]\n")
        c = _host("c", runc_ckpt_bin, image_tar, f"signature_policy: {policy}\n")
        name = a.run_counter(name="sealed")
        wait_for(lambda: a.counter(name) > 3, what="counter to start")
        archive = tmp_path / "sealed.tar.zst"
        a.podman("container", "checkpoint", "--export", str(archive), "--compress", "zstd", name)
        members = [m.lstrip("./") for m in tarfile.open(fileobj=io.BytesIO(
            zstandard.ZstdDecompressor().stream_reader(archive.read_bytes()).read())).getnames()]
        images = [m for m in members if m.startswith("checkpoint/") and not m.startswith("checkpoint/runc-ckpt.")]
        assert "checkpoint/pages-1.img.sealed" in images and "checkpoint/runc-ckpt.images.sig" in members
        assert all(m.endswith(".sealed") for m in images if m != "checkpoint/inventory.img"), images

        blind = c.podman("container", "restore", "--import", str(archive), "--name", "blind", check=False)
        assert blind.returncode != 0 and "is encrypted" in blind.stderr, blind.stderr

        b.podman("container", "restore", "--import", str(archive), "--name", "copy")
        assert b.inspect("copy")["State"]["Status"] == "running"
        before = b.counter("copy")
        wait_for(lambda: b.counter("copy") > before + 2, what="counter to go on on host b")
    finally:
        for h in (a, b, c):
            if h is not None:
                h.teardown()
