"""Encrypted archives (trust.seal around the whole file): restore --import and inspect open them with
--decryption-key or the node's decryption_key; without a key they refuse, naming the key fingerprints,
and nothing is touched."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from runc_ckpt.trust import seal, sealkeys
from tests.hostile import builder
from tests.hostile.harness import make_target, snapshot
from tests.unit.test_restore_badinput import SKIP, _refused


def _sealed(plain, keys, out):
    """`plain` (an archive file) encrypted for the public keys `keys` into `out`."""
    with open(out, "wb") as f:
        w = seal.SealWriter(f, [sealkeys.load_recipient(f"jwe:{k}") for k in keys])
        w.write(plain.read_bytes())
        w.close()
    return out


@pytest.fixture
def t(tmp_path, runc_ckpt_bin):
    return make_target(tmp_path, runc_ckpt_bin)


@pytest.fixture
def sealed(t, seal_keys):
    a = builder.base(str(t.volume), rootfs_diff=builder.tar_bytes([builder.f("secret", b"s3cr3t\n")]))
    plain = builder.write(a, t.tmp / "plain.tar.zst")
    path = _sealed(plain, [seal_keys["rsa"][1], seal_keys["ec"][1]], t.tmp / "archive.tar")
    plain.unlink()
    return path


def _fingerprint(pub):
    return sealkeys.load_recipient(f"jwe:{pub}").fingerprint


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_restore_opens_with_either_key(t, sealed, seal_keys, kind):
    out = t.restore("--import", str(sealed), "--decryption-key", seal_keys[kind][0])
    assert out.returncode == 0, out.stderr
    assert (t.rootfs / "secret").read_bytes() == b"s3cr3t\n"


def test_restore_with_the_node_key(t, sealed, seal_keys):
    with open(t.env["RUNC_CKPT_CONFIG"], "a") as f:
        f.write(f"\ndecryption_key: [{seal_keys['other'][0]}, {seal_keys['rsa'][0]}]\n")
    out = t.restore("--import", str(sealed))
    assert out.returncode == 0, out.stderr
    assert (t.rootfs / "secret").exists()


@pytest.mark.parametrize("key", [None, "other"])
def test_restore_without_the_key_touches_nothing(t, sealed, seal_keys, key):
    before = snapshot(t.tmp, skip=SKIP)
    extra = ("--decryption-key", seal_keys[key][0]) if key else ()
    out = t.restore("--import", str(sealed), *extra)
    _refused(t, out, "is encrypted for")
    assert _fingerprint(seal_keys["rsa"][1]) in out.stderr
    assert snapshot(t.tmp, skip=SKIP) == before


def test_restore_of_a_tampered_archive_applies_nothing(t, sealed, seal_keys):
    raw = bytearray(sealed.read_bytes())
    raw[-100] ^= 1
    sealed.write_bytes(bytes(raw))
    before = snapshot(t.tmp, skip=SKIP)
    out = t.restore("--import", str(sealed), "--decryption-key", seal_keys["rsa"][0])
    _refused(t, out, "modified")
    assert snapshot(t.tmp, skip=SKIP) == before


def test_restore_of_a_truncated_archive_applies_nothing(t, sealed, seal_keys):
    sealed.write_bytes(sealed.read_bytes()[:-40])
    out = t.restore("--import", str(sealed), "--decryption-key", seal_keys["rsa"][0])
    _refused(t, out, "truncated")


def _inspect(runc_ckpt_bin, *args):
    return subprocess.run([runc_ckpt_bin, "inspect", *args], capture_output=True, text=True, check=False)


def test_inspect_shows_the_recipients(sealed, seal_keys, runc_ckpt_bin):
    out = _inspect(runc_ckpt_bin, "--format", "json", "--decryption-key", seal_keys["ec"][0], str(sealed))
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["encrypted_for"] == [_fingerprint(seal_keys["rsa"][1]), _fingerprint(seal_keys["ec"][1])]
    assert info["verified"] is True
    text = _inspect(runc_ckpt_bin, "--decryption-key", seal_keys["rsa"][0], str(sealed))
    assert "Encryption:" in text.stdout and _fingerprint(seal_keys["ec"][1]) in text.stdout


def test_inspect_without_the_key_names_the_fingerprints(sealed, seal_keys, runc_ckpt_bin):
    out = _inspect(runc_ckpt_bin, str(sealed))
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.count("level=error") == 1
    assert "is encrypted for" in out.stderr and _fingerprint(seal_keys["ec"][1]) in out.stderr


def test_a_plain_archive_shows_no_encryption(t, runc_ckpt_bin):
    path = builder.write(builder.base(str(t.volume)), t.tmp / "plain.tar.zst")
    info = json.loads(_inspect(runc_ckpt_bin, "--format", "json", str(path)).stdout)
    assert info["encrypted_for"] == []
    assert os.path.exists(path)
