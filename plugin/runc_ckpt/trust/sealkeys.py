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

from collections.abc import Sequence

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.record import Record
from runc_ckpt.trust.keys import fingerprint_of

TYPE_CHECKING = False  # typing's flag, without importing typing (base/record.py says why)
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from jwcrypto import jwk

JWE_PREFIX = "jwe:"
MIN_RSA_BITS = 2048
_CURVES = ("secp256r1", "secp384r1", "secp521r1")


class SealKey(Record):
    """One key of a pair, loaded: its JWK for jwcrypto, its fingerprint, the file it came from."""

    jwk: jwk.JWK
    fingerprint: str     # "sha256:<hex>" of the public key's SubjectPublicKeyInfo (DER)
    path: str
    is_rsa: bool


def _check_kind(key: object, path: str) -> tuple[rsa.RSAPublicKey | ec.EllipticCurvePublicKey, bool]:
    """The key's public half, and whether it is RSA; an unsupported kind is an error naming path."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa  # lazy: only where keys are used
    public = key.public_key() if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)) else key
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < MIN_RSA_BITS:
            raise RuncCkptError(f"key {path}: RSA key of {public.key_size} bits, at least {MIN_RSA_BITS} needed")
        return public, True
    if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name in _CURVES:
        return public, False
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
    from cryptography.hazmat.primitives import serialization  # lazy: ~40 ms with jwcrypto, only with keys
    from jwcrypto import jwk
    path = spec[len(JWE_PREFIX):]
    data = _read(path)
    try:
        key: object = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise RuncCkptError(f"encryption key {path}: not a PEM public key") from None
    public, is_rsa = _check_kind(key, path)
    return SealKey(jwk.JWK.from_pyca(public), fingerprint_of(public), path, is_rsa)


def load_private(path: str) -> SealKey:
    """A PEM private key (PKCS#8 or the traditional RSA/EC forms, without a passphrase)."""
    from cryptography.hazmat.primitives import serialization  # lazy: ~40 ms with jwcrypto, only with keys
    from jwcrypto import jwk
    data = _read(path)
    try:
        # The key is this host's own file, not input: cryptography's RSA consistency check (which
        # guards against keys from untrusted sources) costs ~0.3 s for 4096 bits on every restore.
        key = serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)
    except TypeError:
        raise RuncCkptError(f"decryption key {path}: protected by a passphrase, which is not supported") from None
    except ValueError:
        raise RuncCkptError(f"decryption key {path}: not a PEM private key") from None
    public, is_rsa = _check_kind(key, path)
    opener = jwk.JWK.from_pyca(key)
    # jwcrypto rebuilds the key from its numbers when it unwraps, and would run that check again.
    opener.unsafe_skip_rsa_key_validation = True
    return SealKey(opener, fingerprint_of(public), path, is_rsa)


def load_privates(paths: Sequence[str]) -> tuple[SealKey, ...]:
    """The --decryption-key files (then the node's), each once: loaded only when sealed data is met."""
    return tuple(load_private(p) for p in dict.fromkeys(paths))


def recipients(flags: Sequence[str], node_key: str | None) -> tuple[SealKey, ...]:
    """Who an archive is encrypted for: the --encryption-key recipients, else the node key; () for none."""
    return tuple(load_recipient(spec) for spec in dict.fromkeys(flags or ((node_key,) if node_key else ())))
