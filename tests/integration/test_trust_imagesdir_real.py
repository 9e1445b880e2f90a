"""Engines' own checkpoints: a plain `checkpoint --image-path` signs its images dir (trust.imagesdir) with
the node key, and a plain `restore --image-path` under a policy checks it before runc runs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import COUNTER, wait_for
from tests.integration.test_trust_real import _keys, _tree


def _cli(runc_ckpt_bin: str, containers, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([runc_ckpt_bin, "--root", str(containers.root), *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def _checkpointed(make_bundle, containers, tmp_path, runc_ckpt_bin, signed: bool):
    keydir = _keys(runc_ckpt_bin, tmp_path / "keys")
    b = make_bundle(args=["sh", "-c", COUNTER])
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    node = {"sign_by_sigstore_private_key": keydir / "signing.key",
            "sign_passphrase_file": keydir / "pass"} if signed else {}
    images = tmp_path / "images"
    out = _cli(runc_ckpt_bin, containers, _node(tmp_path, node), "checkpoint", "--image-path", str(images), cid)
    assert out.returncode == 0, out.stderr
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "sigstoreSigned", "keyPath": str(keydir / "signing.pub")}]}))
    return b, cid, images, _node(tmp_path, {"signature_policy": policy})


def _node(tmp_path: Path, keys: dict) -> dict:
    """A node's runc-ckpt.yaml with these keys (a new file each call), as the environment points at it."""
    cfg = tmp_path / f"node-{len(list(tmp_path.glob('node-*.yaml')))}.yaml"
    cfg.write_text(f"state_dir: {tmp_path / 'state'}\n" + "".join(f"{k}: {v}\n" for k, v in keys.items()))
    return dict(os.environ, RUNC_CKPT_CONFIG=str(cfg))


def test_a_signed_images_dir_restores_under_the_policy(make_bundle, containers, tmp_path, runc_ckpt_bin):
    b, cid, images, env = _checkpointed(make_bundle, containers, tmp_path, runc_ckpt_bin, True)
    assert (images / "runc-ckpt.images.json").is_file() and (images / "runc-ckpt.images.sig").is_file()
    before = b.counter()
    out = _cli(runc_ckpt_bin, containers, env, "restore", "--image-path", str(images), "--bundle", str(b.path),
               "-d", cid)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) == "running"
    wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")


@pytest.mark.parametrize("damage", ["flip-page", "add-file", "unsigned"])
def test_a_changed_or_unsigned_images_dir_is_refused(make_bundle, containers, tmp_path, runc_ckpt_bin, damage):
    b, cid, images, env = _checkpointed(make_bundle, containers, tmp_path, runc_ckpt_bin, damage != "unsigned")
    if damage == "flip-page":
        page = images / "pages-1.img"
        data = bytearray(page.read_bytes())
        data[0] ^= 1
        page.write_bytes(bytes(data))
    elif damage == "add-file":
        (images / "pages-9.img").write_bytes(b"\0" * 4096)
    before = _tree(b.path)
    out = _cli(runc_ckpt_bin, containers, env, "restore", "--image-path", str(images), "--bundle", str(b.path),
               "-d", cid)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "level=error" in lines[0], out.stderr
    assert {"flip-page": "pages-1.img: size/sha256 differ", "add-file": "pages-9.img: not listed",
            "unsigned": "is not signed"}[damage] in lines[0]
    assert containers.status(cid) is None
    assert _tree(b.path) == before
