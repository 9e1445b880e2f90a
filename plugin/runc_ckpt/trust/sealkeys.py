"""The key pairs that seal and open checkpoints: PEM files as skopeo and podman take them.

`--encryption-key jwe:PUB.pem` names a recipient exactly as skopeo's and
podman's `--encryption-key` do (ocicrypt's `jwe:` protocol prefix); a
`--decryption-key KEY.pem` is a private key. RSA (2048 bits or more; `key
generate` writes 4096) and EC P-256/P-384/P-521 keys are taken, the kinds
ocicrypt's JWE handles, so one key pair opens an archive, a stream, a sealed
images dir and an ocicrypt-encrypted image alike. A key is named by its
fingerprint, the SHA-256 of its SubjectPublicKeyInfo (what `inspect` shows,
and the JWE `kid` that picks the private key on the way back).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwcrypto import jwk

from runc_ckpt.base.errors import RuncCkptError

JWE_PREFIX = "jwe:"
MIN_RSA_BITS = 2048
_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


@dataclass(frozen=True)
class SealKey:
    """One key of a pair, loaded: its JWK for jwcrypto, its fingerprint, the file it came from."""

    jwk: jwk.JWK
    fingerprint: str     # "sha256:<hex>" of the public key's SubjectPublicKeyInfo (DER)
    path: str
    is_rsa: bool


def fingerprint_of(public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _check_kind(key: object, path: str) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    public = key.public_key() if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)) else key
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < MIN_RSA_BITS:
            raise RuncCkptError(f"key {path}: RSA key of {public.key_size} bits, at least {MIN_RSA_BITS} needed")
        return public
    if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, _CURVES):
        return public
    raise RuncCkptError(f"key {path}: not an RSA or EC P-256/P-384/P-521 key")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20)
    except OSError as e:
        raise RuncCkptError(f"cannot read key {path}: {e.strerror}") from None


def load_recipient(spec: str) -> SealKey:
    """A `jwe:PATH` public key (a private key's file is taken too: its public half is used)."""
    if not spec.startswith(JWE_PREFIX):
        raise RuncCkptError(f"encryption key {spec!r}: expected jwe:PATH (the protocol prefix skopeo takes)")
    path = spec[len(JWE_PREFIX):]
    data = _read(path)
    try:
        key: object = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise RuncCkptError(f"encryption key {path}: not a PEM public key") from None
    public = _check_kind(key, path)
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return SealKey(jwk.JWK.from_pem(pem), fingerprint_of(public), path, isinstance(public, rsa.RSAPublicKey))


def load_private(path: str) -> SealKey:
    """A PEM private key (PKCS#8 or the traditional RSA/EC forms, without a passphrase)."""
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise RuncCkptError(f"decryption key {path}: protected by a passphrase, which is not supported") from None
    except ValueError:
        raise RuncCkptError(f"decryption key {path}: not a PEM private key") from None
    public = _check_kind(key, path)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return SealKey(jwk.JWK.from_pem(pem), fingerprint_of(public), path, isinstance(public, rsa.RSAPublicKey))


def load_privates(paths: Sequence[str]) -> tuple[SealKey, ...]:
    return tuple(load_private(p) for p in paths)
