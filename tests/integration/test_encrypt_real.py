"""Encrypted archives on the real stack: `checkpoint --export --encryption-key jwe:PUB`, then inspect and
`restore --import --decryption-key` (trust.seal); without the key nothing is read and nothing changes."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import zstandard

from tests.conftest import require_tool
from tests.integration.conftest import wait_for
from tests.integration.migrate_helpers import make_host, pipe, running_pair, socket_pair, target_bundle
from tests.integration.test_restore_import_real import SCRIPT, as_new_host, restore_env
from tests.integration.test_trust_real import _keys, _state, _tree


def test_an_encrypted_archive_opens_only_with_its_key(make_bundle, containers, busybox_lower, tmp_path,
                                                      runc_ckpt_bin):
    keydir = _keys(runc_ckpt_bin, tmp_path / "keys")
    other = _keys(runc_ckpt_bin, tmp_path / "other")
    b = make_bundle(args=["sh", "-c", "SECRET=marker-$((6*7))-in-memory-only; " + SCRIPT],
                    volumes={"vol1": "/data"})
    env = restore_env(tmp_path)
    archive = tmp_path / "sealed.tar.zst"
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    # The control: the marker lives in the container's memory, so a plain archive holds it in clear.
    plain = tmp_path / "plain.tar.zst"
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "checkpoint", "--leave-running",
                          "--export", str(plain), cid], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         env=env, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert b"marker-42-in-memory-only" in zstandard.ZstdDecompressor().stream_reader(plain.read_bytes()).read()
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "checkpoint", "--export", str(archive),
                          "--encryption-key", f"jwe:{keydir / 'encryption.pub'}", cid],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    before = b.counter()
    data = archive.read_bytes()
    assert data.startswith(b"runc-ckpt sealed\n")
    assert b"marker-42-in-memory-only" not in data and b"inventory.img" not in data
    with pytest.raises(zstandard.ZstdError):
        zstandard.ZstdDecompressor().stream_reader(data[data.index(b"}") + 1:]).read()
    as_new_host(b, busybox_lower)

    blind = subprocess.run([runc_ckpt_bin, "inspect", str(archive)], capture_output=True, text=True, check=False)
    assert blind.returncode != 0 and "is encrypted for sha256:" in blind.stderr

    unchanged = (_tree(b.rootfs), sorted(os.listdir(b.path)))
    for keys in ([], ["--decryption-key", str(other / "encryption.key")]):
        refused = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "--import", str(archive),
                                  *keys, "--bundle", str(b.path), "-d"], stdin=subprocess.DEVNULL,
                                 capture_output=True, text=True, env=env, timeout=120, check=False)
        assert refused.returncode != 0
        assert len(refused.stderr.strip().splitlines()) == 1 and "no decryption key" in refused.stderr
        assert containers.status(cid) is None
        assert (_tree(b.rootfs), sorted(os.listdir(b.path))) == unchanged

    key = ["--decryption-key", str(keydir / "encryption.key")]
    info = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", *key, str(archive)],
                          capture_output=True, text=True, check=False)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["encrypted_for"][0].startswith("sha256:")
    ok = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "--import", str(archive), *key,
                         "--bundle", str(b.path), "-d"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, text=True, env=env, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    assert containers.status(cid) == "running"
    wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")


def test_an_encrypted_stream_moves_the_container_and_needs_the_key(make_bundle, containers, busybox_lower, tmp_path,
                                                                   runc_ckpt_bin):
    """`checkpoint --export - --encryption-key` through a pipe to `restore --import - --decryption-key`;
    the same stream without the key is refused with nothing changed."""
    keydir = _keys(runc_ckpt_bin, tmp_path / "keys")
    roots = [tmp_path / "volumes", tmp_path / "target-volumes"]
    a, b = make_host(tmp_path, "a", roots), make_host(tmp_path, "b", roots)

    def moved(decrypt: bool):
        src = make_bundle(args=["sh", "-c", "SECRET=marker-$((6*7))-in-memory-only; " + SCRIPT],
                          volumes={"vol1": "/data"})
        containers.root = a.root
        cid = containers.run(src)
        wait_for(lambda: src.counter() > 3, what="counter to start")
        dst = target_bundle(make_bundle, src, busybox_lower,
                            volumes={"vol1": str(tmp_path / "target-volumes" / "vol1" / "_data")})
        key = ["--decryption-key", str(keydir / "encryption.key")] if decrypt else []
        s, r = pipe(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", "-", "--encryption-key",
                                f"jwe:{keydir / 'encryption.pub'}", cid),
                    b.runc_ckpt(runc_ckpt_bin, "restore", "--import", "-", *key, "--bundle", str(dst.path), "-d",
                                cid), a.env, b.env)
        return cid, dst, s, r

    cid, dst, s, r = moved(decrypt=False)
    try:
        assert r.returncode != 0 and "no decryption key" in r.stderr, r.stderr
        assert _state(b.root, cid) is None
        assert not [n for n in os.listdir(dst.path) if n.startswith(".runc-ckpt")]
    finally:
        for root in (a.root, b.root):
            subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], capture_output=True, check=False)
    cid, dst, s, r = moved(decrypt=True)
    try:
        assert s.returncode == 0, s.stderr + r.stderr
        assert r.returncode == 0, r.stderr
        assert _state(b.root, cid) == "running"
    finally:
        subprocess.run(["runc", "--root", str(b.root), "delete", "--force", cid], capture_output=True, check=False)


def test_an_encrypted_checkpoint_image_is_ocicrypt_and_restores_with_the_key(make_bundle, containers, busybox_lower,
                                                                            tmp_path, runc_ckpt_bin):
    """--create-image oci: --encryption-key: skopeo encrypts the layer (ocicrypt); skopeo itself decrypts it
    with the private key, and restore --import --decryption-key restores from it."""
    skopeo = require_tool("skopeo")
    keydir = _keys(runc_ckpt_bin, tmp_path / "keys")
    b = make_bundle(args=["sh", "-c", "SECRET=marker-$((6*7))-in-memory-only; " + SCRIPT],
                    volumes={"vol1": "/data"})
    env = restore_env(tmp_path)
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    layout = tmp_path / "img"
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "checkpoint", "--create-image",
                          f"oci:{layout}:1", "--encryption-key", f"jwe:{keydir / 'encryption.pub'}", cid],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=180, check=False)
    assert out.returncode == 0, out.stderr
    before = b.counter()
    blobs = list((layout / "blobs" / "sha256").iterdir())
    assert not [p for p in blobs if b"marker-42-in-memory-only" in p.read_bytes()]
    digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    assert manifest["layers"][0]["mediaType"].endswith("+encrypted")

    plain = subprocess.run([skopeo, "copy", "--decryption-key", str(keydir / "encryption.key"), f"oci:{layout}:1",
                            f"oci:{tmp_path / 'plain'}:1"], capture_output=True, text=True, check=False)
    assert plain.returncode == 0, plain.stderr
    as_new_host(b, busybox_lower)
    blind = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "--import", f"oci:{layout}:1",
                            "--bundle", str(b.path), "-d"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           env=env, timeout=120, check=False)
    assert blind.returncode != 0 and "encrypted" in blind.stderr
    assert containers.status(cid) is None
    ok = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "--import", f"oci:{layout}:1",
                         "--decryption-key", str(keydir / "encryption.key"), "--bundle", str(b.path), "-d"],
                        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    assert containers.status(cid) == "running"
    wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")


def test_an_encrypted_pre_copy_stream_with_handshake_over_tcp(make_bundle, containers, busybox_lower, tmp_path,
                                                             runc_ckpt_bin):
    """The back channel waits on the hello and the end of phase 1: each must open on the receiver as soon as
    it is flushed, so a sealed stream may not hold a record back until more bytes come."""
    keydir = _keys(runc_ckpt_bin, tmp_path / "keys")
    a, b, src, dst, cid = running_pair(make_bundle, containers, tmp_path, busybox_lower, SCRIPT)
    try:
        started = time.monotonic()
        s, r = socket_pair(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", "-", "--pre-copy", "--handshake",
                                       "--stream-timeout", "20", "--encryption-key",
                                       f"jwe:{keydir / 'encryption.pub'}", cid),
                           b.runc_ckpt(runc_ckpt_bin, "restore", "--import", "-", "--handshake",
                                       "--decryption-key",
                                       str(keydir / "encryption.key"), "--bundle", str(dst.path), "-d", cid),
                           a.env, b.env, timeout=90)
        assert s.returncode == 0, s.stderr + r.stderr
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - started < 20, "a flushed record waited for the stream timeout"
        assert _state(b.root, cid) == "running"
    finally:
        for root in (a.root, b.root):
            subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], capture_output=True, check=False)
