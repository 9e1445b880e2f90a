"""Signing keys in the formats skopeo and cosign use: who a key is, and how it is read.

A sigstore private key is a PEM block of type "ENCRYPTED SIGSTORE PRIVATE
KEY" (or cosign's older "ENCRYPTED COSIGN PRIVATE KEY", which containers/image
still writes and every skopeo reads) whose payload is go-securesystemslib's
`encrypted` JSON:

  {"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": B64},
   "cipher": {"name": "nacl/secretbox", "nonce": B64}, "ciphertext": B64}

(B64: standard base64 with padding, as Go's encoding/json writes []byte.)
The secretbox key is scrypt(passphrase, salt, N, r, p, 32 bytes); the sealed
plaintext is the PKCS#8 DER private key. We sign with ECDSA P-256/SHA-256,
the one scheme sigstore requires, so only EC P-256 keys are accepted.
Public keys are PEM SubjectPublicKeyInfo, as cosign writes `cosign.pub`.

A key's fingerprint, shown by inspect and named in error lines, is
"sha256:" + the hex SHA-256 of its DER SubjectPublicKeyInfo (fingerprint_of:
the one definition, for signing and encryption keys alike).
"""

from __future__ import annotations

import base64
import binascii
import json
import os

from runc_ckpt.base.errors import RuncCkptError

TYPE_CHECKING = False  # typing's flag, without importing typing (base/record.py says why)
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

# cryptography and PyNaCl are imported in the functions that use them: ~40 ms of
# start-up that a checkpoint or restore without keys must not pay.

PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"   # what containers/image's GenerateKeyPair writes
PEM_TYPES = (PEM_TYPE, "ENCRYPTED SIGSTORE PRIVATE KEY")
# go-securesystemslib's legacy, standard and OWASP parameters: the only ones its Decrypt accepts.
SCRYPT_PARAMS = ({"N": 32768, "r": 8, "p": 1}, {"N": 65536, "r": 8, "p": 1}, {"N": 131072, "r": 8, "p": 1})
WRITE_PARAMS = SCRYPT_PARAMS[1]
SALT_SIZE = 32


def read_passphrase_file(path: str | None) -> bytes:
    """skopeo's --sign-passphrase-file: the file's first line, without its newline; no file: empty."""
    if path is None:
        return b""
    try:
        with open(path, "rb") as f:
            line = f.readline()
    except OSError as e:
        raise RuncCkptError(f"passphrase file {path}: {e.strerror}") from None
    return line.removesuffix(b"\n")


def load_private_key(path: str, passphrase: bytes) -> ec.EllipticCurvePrivateKey:
    """Open a sigstore private key file; a wrong passphrase or format is one error naming the file."""
    try:
        with open(path, "rb") as f:
            pem = f.read(1 << 20)
    except OSError as e:
        raise RuncCkptError(f"signing key {path}: {e.strerror}") from None
    try:
        return decrypt_private_key(pem, passphrase)
    except ValueError as e:
        raise RuncCkptError(f"signing key {path}: {e}") from None


def decrypt_private_key(pem: bytes, passphrase: bytes) -> ec.EllipticCurvePrivateKey:
    """The EC P-256 key sealed in a sigstore PEM; ValueError says what is wrong."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    kind, payload = _pem_block(pem)
    if kind not in PEM_TYPES:
        raise ValueError(f"PEM type {kind!r} is not a sigstore private key ({' or '.join(PEM_TYPES)})")
    der = unseal(payload, passphrase)
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 key (the scheme runc-ckpt signs with)")  # noqa: TRY004  # ValueError: what load_private_key reports
    return key


def unseal(payload: bytes, passphrase: bytes) -> bytes:
    """go-securesystemslib's encrypted.Decrypt: the plaintext of its JSON document; ValueError if it fails."""
    import nacl.exceptions
    import nacl.secret
    try:
        doc = json.loads(payload)
        kdf, cipher = doc["kdf"], doc["cipher"]
        params = kdf["params"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise ValueError(f"unknown kdf/cipher {kdf['name']!r}/{cipher['name']!r}")
        if params not in SCRYPT_PARAMS:
            raise ValueError("unsupported scrypt parameters")
        salt, nonce = base64.b64decode(kdf["salt"], validate=True), base64.b64decode(cipher["nonce"], validate=True)
        sealed = base64.b64decode(doc["ciphertext"], validate=True)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, binascii.Error) as e:
        raise ValueError(f"not an encrypted sigstore key ({type(e).__name__})") from None
    box = nacl.secret.SecretBox(_derive(passphrase, salt, params))
    try:
        return bytes(box.decrypt(sealed, nonce))
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise ValueError("decryption failed: wrong passphrase (--sign-passphrase-file) or a damaged key") from None


def encrypt_private_key(key: ec.EllipticCurvePrivateKey, passphrase: bytes) -> bytes:
    """The sigstore PEM of key sealed under passphrase, as containers/image's GenerateKeyPair writes it."""
    from cryptography.hazmat.primitives import serialization
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    body = base64.b64encode(seal(der, passphrase)).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return ("\n".join([f"-----BEGIN {PEM_TYPE}-----", *lines, f"-----END {PEM_TYPE}-----"]) + "\n").encode()


def seal(plaintext: bytes, passphrase: bytes) -> bytes:
    """go-securesystemslib's encrypted.Encrypt: scrypt-derived key, NaCl secretbox, its JSON document."""
    import nacl.secret
    import nacl.utils
    salt = os.urandom(SALT_SIZE)
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    sealed = nacl.secret.SecretBox(_derive(passphrase, salt, WRITE_PARAMS)).encrypt(plaintext, nonce).ciphertext
    doc = {"kdf": {"name": "scrypt", "params": WRITE_PARAMS, "salt": _b64(salt)},
           "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)}, "ciphertext": _b64(sealed)}
    return json.dumps(doc, separators=(",", ":")).encode()


def load_public_key(pem: bytes, what: str) -> ec.EllipticCurvePublicKey:
    """A PEM public key (cosign.pub, our signing.pub); what names its source in the error."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as e:
        raise RuncCkptError(f"{what}: not a PEM public key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise RuncCkptError(f"{what}: not an ECDSA P-256 public key (the scheme runc-ckpt verifies)")
    return key


def public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint_of(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> str:
    """sha256:<hex of the DER SubjectPublicKeyInfo>: one string for display and error lines."""
    from cryptography.hazmat.primitives import serialization
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib  # here, not at the top: the flow loads this module before runc, keys are rare (~2.5 ms)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _derive(passphrase: bytes, salt: bytes, params: dict[str, int]) -> bytes:
    import nacl.secret
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    return Scrypt(salt=salt, length=nacl.secret.SecretBox.KEY_SIZE,
                  n=params["N"], r=params["r"], p=params["p"]).derive(passphrase)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _pem_block(pem: bytes) -> tuple[str, bytes]:
    """The type and decoded payload of the first PEM block; ValueError if there is none."""
    text = pem.decode("ascii", errors="replace")
    start = text.find("-----BEGIN ")
    if start < 0:
        raise ValueError("no PEM block")
    head_end = text.find("-----", start + 11)
    kind = text[start + 11:head_end]
    end = text.find(f"-----END {kind}-----", head_end)
    if head_end < 0 or end < 0:
        raise ValueError("unterminated PEM block")
    try:
        return kind, base64.b64decode("".join(text[head_end + 5:end].split()), validate=True)
    except binascii.Error:
        raise ValueError("PEM payload is not base64") from None
