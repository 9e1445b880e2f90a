"""Detached signatures over the bytes we package: one small JSON document beside what it signs.

Format (UTF-8 JSON, e.g. archive member runc-ckpt.manifest.sig):
  {"format": "runc-ckpt-signature", "version": 1,
   "algorithm": "ecdsa-p256-sha256",
   "key": "SHA256:<hex of the signer's DER SubjectPublicKeyInfo>",
   "signature": "<base64 of the ASN.1 DER ECDSA signature>"}
The signed bytes are the manifest exactly as stored. The manifest lists every
member's size and SHA-256 (hashed while writing), so one signature covers the
whole checkpoint and signing costs one ECDSA operation. `key` only says which
trusted key to try first; what decides is the policy's keys (trust.policy).
"""

from __future__ import annotations

import base64
import binascii
import json

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.record import Record
from runc_ckpt.trust import keys

TYPE_CHECKING = False  # typing's flag, without importing typing (base/record.py says why)
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

# cryptography is imported where a signature is made or checked (~30 ms a call without keys would pay).

FORMAT = "runc-ckpt-signature"
VERSION = 1
ALGORITHM = "ecdsa-p256-sha256"
MAX_SIZE = 4096   # a signature document is ~250 bytes; anything larger is not one


class Signature(Record):
    key: str          # the fingerprint the signer claims
    value: bytes      # DER ECDSA signature


def sign(data: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The signature document for data."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    value = key.sign(data, ec.ECDSA(hashes.SHA256()))
    doc = {"format": FORMAT, "version": VERSION, "algorithm": ALGORITHM,
           "key": keys.fingerprint_of(key.public_key()), "signature": base64.b64encode(value).decode()}
    return json.dumps(doc, indent=1).encode() + b"\n"


def parse(data: bytes, what: str) -> Signature:
    """Read a signature document (untrusted); what names it in the error."""
    try:
        if len(data) > MAX_SIZE:
            raise ValueError("too large")
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT} version {VERSION} document")
        if doc.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm {doc.get('algorithm')!r} is not {ALGORITHM}")
        fp, value = doc.get("key"), doc.get("signature")
        if not isinstance(fp, str) or not isinstance(value, str):
            raise ValueError("key and signature must be strings")  # noqa: TRY004  # collected into one error line below
        return Signature(fp, base64.b64decode(value, validate=True))
    except (UnicodeDecodeError, ValueError, binascii.Error) as e:
        raise RuncCkptError(f"{what}: bad signature: {e}") from None


def verify(sig: Signature, data: bytes, trusted: list[ec.EllipticCurvePublicKey]) -> str | None:
    """The fingerprint of the trusted key that made sig over data; None if none of them did."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    ordered = sorted(trusted, key=lambda k: keys.fingerprint_of(k) != sig.key)
    for key in ordered:
        try:
            key.verify(sig.value, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return keys.fingerprint_of(key)
    return None
