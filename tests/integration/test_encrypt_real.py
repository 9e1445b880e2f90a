"""Encrypted archives on the real stack: `checkpoint --export --encryption-key jwe:PUB`, then inspect and
`restore --import --decryption-key` (trust.seal); without the key nothing is read and nothing changes."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import zstandard

from tests.integration.conftest import wait_for
from tests.integration.test_restore_import_real import SCRIPT, as_new_host, restore_env
from tests.integration.test_trust_real import _keys, _tree


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
