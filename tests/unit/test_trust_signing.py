"""Signing keys (trust.keys, trust.keygen) and signatures (trust.signature): formats, round trips, refusals."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.trust import keygen, keys, sealkeys, signature


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    fingerprint = keygen.generate(str(d), b"pw")
    return d, fingerprint


def test_generate_writes_private_files_0600_and_the_fingerprint_of_signing_pub(generated):
    d, fingerprint = generated
    for name in keygen.NAMES:
        mode = stat.S_IMODE(os.stat(d / name).st_mode)
        assert mode == (0o600 if name.endswith(".key") else 0o644), name
    pub = keys.load_public_key((d / "signing.pub").read_bytes(), "signing.pub")
    assert keys.fingerprint_of(pub) == fingerprint and fingerprint.startswith("sha256:")


def test_generate_never_overwrites(generated):
    d, _ = generated
    before = (d / "signing.key").read_bytes()
    with pytest.raises(RuncCkptError, match="never overwrites"):
        keygen.generate(str(d), b"pw")
    assert (d / "signing.key").read_bytes() == before


def test_the_sigstore_pem_is_containers_image_format(generated):
    """An "ENCRYPTED COSIGN PRIVATE KEY" PEM whose payload is go-securesystemslib's encrypted JSON."""
    d, _ = generated
    text = (d / "signing.key").read_text()
    assert text.startswith("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n")
    body = "".join(text.splitlines()[1:-1])
    doc = json.loads(base64.b64decode(body))
    assert doc["kdf"]["name"] == "scrypt" and doc["kdf"]["params"] in keys.SCRYPT_PARAMS
    assert doc["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(doc["kdf"]["salt"])) == 32 and len(base64.b64decode(doc["cipher"]["nonce"])) == 24


def test_the_private_key_opens_with_its_passphrase_only(generated, tmp_path):
    d, fingerprint = generated
    key = keys.load_private_key(str(d / "signing.key"), b"pw")
    assert keys.fingerprint_of(key.public_key()) == fingerprint
    with pytest.raises(RuncCkptError, match="wrong passphrase"):
        keys.load_private_key(str(d / "signing.key"), b"not it")
    (tmp_path / "pass").write_text("pw\nsecond line ignored\n")
    assert keys.read_passphrase_file(str(tmp_path / "pass")) == b"pw"
    assert keys.read_passphrase_file(None) == b""


@pytest.mark.parametrize("pem", [b"", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                                 b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\nbm90IGpzb24=\n"
                                 b"-----END ENCRYPTED COSIGN PRIVATE KEY-----\n"])
def test_a_bad_key_file_is_one_error_naming_it(pem, tmp_path):
    (tmp_path / "k").write_bytes(pem)
    with pytest.raises(RuncCkptError, match=f"signing key {tmp_path / 'k'}"):
        keys.load_private_key(str(tmp_path / "k"), b"")


def test_one_fingerprint_for_signing_and_encryption_keys(seal_keys, generated):
    """keys.fingerprint_of is the one definition: the encryption key's is the same kind of string."""
    recipient = sealkeys.load_recipient(f"jwe:{seal_keys['ec'][1]}")
    assert recipient.fingerprint.startswith("sha256:") and len(recipient.fingerprint) == 7 + 64


def test_sign_and_verify_round_trip_and_tamper():
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    doc = signature.sign(b"manifest bytes", key)
    sig = signature.parse(doc, "sig")
    assert sig.key == keys.fingerprint_of(key.public_key())
    assert signature.verify(sig, b"manifest bytes", [other.public_key(), key.public_key()]) == sig.key
    assert signature.verify(sig, b"manifest bytez", [key.public_key()]) is None
    assert signature.verify(sig, b"manifest bytes", [other.public_key()]) is None


@pytest.mark.parametrize("data", [b"{", b"[]", b'{"format": "x"}', b"x" * 5000,
                                  json.dumps({"format": "runc-ckpt-signature", "version": 1,
                                              "algorithm": "rsa", "key": "k", "signature": ""}).encode(),
                                  json.dumps({"format": "runc-ckpt-signature", "version": 1,
                                              "algorithm": "ecdsa-p256-sha256", "key": "k",
                                              "signature": "not base64!"}).encode()])
def test_a_malformed_signature_is_one_error(data):
    with pytest.raises(RuncCkptError, match="bad signature"):
        signature.parse(data, "archive a: signature")


# go-securesystemslib encrypted/encrypted_test.go (the package containers/image and cosign seal keys
# with): TestDecrypt (plaintext "reallyimportant") and its legacy/standard/OWASP kdfVectors, whose
# plaintext is the JSON of that []byte, a quoted base64 string. Debian's skopeo 1.9.3 is built with
# sigstore signing disabled, so these vectors are this machine's interop check of the key format.
GO_DECRYPT = (b'{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"N9a7x5JFGbrtB2uBR81jPwp0eiLR4A7FV3mjVAQrg1g="},'
              b'"cipher":{"name":"nacl/secretbox","nonce":"2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik"},'
              b'"ciphertext":"SEW6sUh0jf2wfdjJGPNS9+bkk2uB+Cxamf32zR8XkQ=="}')
GO_KDF_VECTORS = [
    b'{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"WO3mVvyTwJ9vwT5/Tk5OW5WPIBUofMjcpEfrLnfY4uA="},'
    b'"cipher":{"name":"nacl/secretbox","nonce":"tCy7HcTFr4uxv4Nrg/DWmncuZ148U1MX"},'
    b'"ciphertext":"08n43p5G5yviPEZpO7tPPF4aZQkWiWjkv4taFdhDBA0tamKH4nw="}',
    b'{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"FhzPOt9/bJG4PTq6lQ6ecG6GzaOuOy/ynG5+yRiFlNs="},'
    b'"cipher":{"name":"nacl/secretbox","nonce":"aw1ng1jHaDz/tQ7V2gR9O2+IGQ8xJEuE"},'
    b'"ciphertext":"HycvuLZL4sYH0BrYTh4E/H20VtAW6u5zL5Pr+IBjYLYnCPzDkq8="}',
    b'{"kdf":{"name":"scrypt","params":{"N":131072,"r":8,"p":1},"salt":"m38E3kouJTtiheLQN22NQ8DTito5hrjpUIskqcd375k="},'
    b'"cipher":{"name":"nacl/secretbox","nonce":"Y6PM13yA+o44pE/W1ZBwczeGnTV/m9Zc"},'
    b'"ciphertext":"6H8sqj1K6B6yDjtH5AQ6lbFigg/C2yDDJc4rYJ79w9aVPImFIPI="}',
]


def test_unseal_reads_go_securesystemslib_vectors():
    assert keys.unseal(GO_DECRYPT, b"supersecret") == b"reallyimportant"
    for vector in GO_KDF_VECTORS:
        assert json.loads(keys.unseal(vector, b"supersecret")) == base64.b64encode(b"reallyimportant").decode()
    with pytest.raises(ValueError, match="wrong passphrase"):
        keys.unseal(GO_DECRYPT, b"supersecreT")


def test_seal_writes_the_fields_go_unmarshals():
    doc = json.loads(keys.seal(b"x", b"pw"))
    assert set(doc) == {"kdf", "cipher", "ciphertext"} and set(doc["kdf"]) == {"name", "params", "salt"}
    assert set(doc["cipher"]) == {"name", "nonce"}
    assert keys.unseal(keys.seal(b"payload", b"pw"), b"pw") == b"payload"
