"""`runc-ckpt key generate`: a node's signing pair and encryption pair, in the formats skopeo reads.

signing.key (0600): ECDSA P-256 sealed as a sigstore private key (trust.keys),
what `--sign-by-sigstore-private-key` takes here and in skopeo/podman;
signing.pub: its PEM public key, what a policy's sigstoreSigned keyPath names.
encryption.key (0600): RSA 4096 PKCS#8 PEM, what `--decryption-key` takes;
encryption.pub: its SubjectPublicKeyInfo PEM, what `--encryption-key jwe:` takes
(ocicrypt's JWE recipients). Nothing existing is overwritten: all four names
are checked first, and each file is written atomically.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.runtime import atomicfile
from runc_ckpt.trust import keys

SIGNING_KEY, SIGNING_PUB = "signing.key", "signing.pub"
ENCRYPTION_KEY, ENCRYPTION_PUB = "encryption.key", "encryption.pub"
NAMES = (SIGNING_KEY, SIGNING_PUB, ENCRYPTION_KEY, ENCRYPTION_PUB)
RSA_BITS = 4096


def generate(directory: str, passphrase: bytes) -> str:
    """Write the four files into directory; returns the signing key's fingerprint."""
    if not os.path.isdir(directory):
        raise RuncCkptError(f"key generate: {directory} is not a directory")
    existing = [n for n in NAMES if os.path.lexists(os.path.join(directory, n))]
    if existing:
        raise RuncCkptError(f"key generate: {os.path.join(directory, existing[0])} exists; "
                            f"runc-ckpt never overwrites a key")
    signing = ec.generate_private_key(ec.SECP256R1())
    encryption = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    files = {
        SIGNING_KEY: (keys.encrypt_private_key(signing, passphrase), 0o600),
        SIGNING_PUB: (keys.public_pem(signing.public_key()), 0o644),
        ENCRYPTION_KEY: (encryption.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()), 0o600),
        ENCRYPTION_PUB: (encryption.public_key().public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo), 0o644),
    }
    for name, (data, mode) in files.items():
        atomicfile.write_bytes(os.path.join(directory, name), data, mode)
    return keys.fingerprint_of(signing.public_key())
