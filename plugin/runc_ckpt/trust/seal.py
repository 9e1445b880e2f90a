"""The sealed format: a checkpoint's bytes encrypted for one or more key pairs, as a stream.

A checkpoint holds the process's secrets in plain pages; a sealed archive,
stream or image file can be read only with a recipient's private key.

Scheme (no primitive of our own; the construction is age's and Tink's
"STREAM", Hoang-Reyhanitabar-Rogaway-Vizar 2015):

- a random 256-bit content key per sealed file, wrapped for each recipient
  as a compact JWE (RFC 7516, jwcrypto): RSA-OAEP-256 for RSA keys,
  ECDH-ES+A256KW for EC keys, A256GCM content encryption -- the JWE
  algorithms ocicrypt uses for image layers, so one key pair opens both;
- the data in records of at most `chunk` plaintext bytes (64 KiB), each
  AES-256-GCM (`cryptography`) under the content key with the nonce
  prefix(7 random bytes) || record counter (4 bytes) || last flag (1 byte).
  Each record's associated data binds the SHA-256 of the header and the
  record's length. A reordered, dropped, repeated or modified record fails
  its tag; a stream cut anywhere fails (EOF before the record flagged last,
  or a cut record); bytes after the last record are refused.

Why not ocicrypt's own layer cipher (AES-256-CTR + HMAC-SHA256 over the
whole blob): it authenticates only at the end, so a reader must buffer or
hand on unverified plaintext; STREAM verifies every 64 KiB record before a
byte of it is handed on, in constant memory, which a restore that extracts
as it reads needs. Images still use ocicrypt itself (through skopeo).

Layout: MAGIC, a 4-byte big-endian header length, the header (JSON:
version, cipher, chunk, nonce prefix, recipients [{kid, jwe}]), then
records: a 4-byte big-endian plaintext length with the last flag in its top
bit, and the ciphertext with its 16-byte tag.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Callable, Sequence

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.runtime import faults

TYPE_CHECKING = False  # typing's flag, without importing typing (base/record.py says why)
if TYPE_CHECKING:
    from typing import Protocol

    from runc_ckpt.trust.sealkeys import SealKey

    class Sink(Protocol):
        def write(self, data: bytes, /) -> int: ...

        def flush(self) -> None: ...

    class Source(Protocol):
        def read(self, n: int = -1, /) -> bytes: ...

MAGIC = b"runc-ckpt sealed\n"
VERSION = 1
CIPHER = "A256GCM-STREAM"
CHUNK = 64 << 10
MAX_CHUNK = 16 << 20              # an untrusted header's chunk size is bounded
MAX_HEADER = 1 << 20
MAX_RECIPIENTS = 64
_TAG = 16
_LAST = 0x8000_0000
_LEN = struct.Struct(">I")
_RSA_ALG = "RSA-OAEP-256"
_EC_ALG = "ECDH-ES+A256KW"
_ENC = "A256GCM"
# What an opener accepts: ours, and ocicrypt's RSA-OAEP (SHA-1) for keys wrapped by it.
_OPEN_ALGS = [_RSA_ALG, "RSA-OAEP", _EC_ALG, _ENC]


class SealError(RuncCkptError):
    """Sealed data that cannot be opened: no matching key, or modified, truncated or reordered records."""


def is_sealed(head: bytes) -> bool:
    """Whether a file or stream starts like sealed data (its first len(MAGIC) bytes)."""
    return head.startswith(MAGIC)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class SealWriter:
    """Seal what is written to it into raw: header at once, a record per `chunk` bytes, the last at close().

    flush() seals what is buffered as a short record and flushes raw: a
    stream's peer must see the bytes written so far (a hello). close() writes
    the record flagged last and leaves raw open; without it the sealed data
    is truncated by construction and no reader accepts it.
    """

    def __init__(self, raw: Sink, recipients: Sequence[SealKey], chunk: int = CHUNK) -> None:
        if not recipients:
            raise RuncCkptError("internal error: sealing for no recipient")
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # lazy: ~20 ms, only when sealing
        key = AESGCM.generate_key(bit_length=256)
        self._prefix = os.urandom(7)
        header = json.dumps({
            "version": VERSION, "cipher": CIPHER, "chunk": chunk,
            "nonce_prefix": base64.b64encode(self._prefix).decode(),
            "recipients": [{"kid": r.fingerprint, "jwe": _wrap(key, r)} for r in recipients],
        }, sort_keys=True).encode()
        head = MAGIC + _LEN.pack(len(header)) + header
        self._aad = _sha256(head)
        self._aead = AESGCM(key)
        self._raw = raw
        self._chunk = chunk
        self._buf = bytearray()
        self._counter = 0
        self._reserved: dict[int, int] = {}      # record number -> plaintext size, kept by reserve() for fill()
        self._closed = False
        self._put(head)

    def _put(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self._raw.write(view)  # type: ignore[arg-type]  # every sink takes a buffer
            if not n:
                raise OSError("short write of sealed data")
            view = view[n:]

    def _take_counter(self) -> int:
        if self._counter >= 1 << 32:
            raise RuncCkptError("sealed data too long (record counter exhausted)")
        self._counter += 1
        return self._counter - 1

    def _record(self, data: bytes | bytearray | memoryview, counter: int, last: bool) -> bytes:
        length = _LEN.pack(len(data) | (_LAST if last else 0))
        return length + self._aead.encrypt(_nonce(self._prefix, counter, last), data, self._aad + length)

    def _seal(self, data: bytes | bytearray | memoryview, last: bool) -> None:
        self._put(self._record(data, self._take_counter(), last))
        if self._counter == 1:
            faults.point("seal")

    def reserve(self, size: int) -> int:
        """Keep the next record, of exactly `size` plaintext bytes, for fill(); returns its number.

        Call right after flush() (a record ends there). Zero bytes of the record's length hold its place in
        raw; fill() seals the data with that record's nonce then, once (a nonce is never used twice), and the
        caller writes the record over them (an archive's header known only after what follows it). A place
        never filled stays zeros, which no reader accepts.
        """
        if self._buf or self._closed:
            raise RuncCkptError("internal error: a sealed record reserved mid-record")
        counter = self._take_counter()
        self._reserved[counter] = size
        self._put(bytes(_LEN.size + size + _TAG))
        return counter

    def fill(self, counter: int, data: bytes) -> bytes:
        """The record reserve() kept, sealed around data (exactly its size), to be written over its place."""
        if self._reserved.get(counter) != len(data):
            raise RuncCkptError("internal error: a sealed record filled twice, or with the wrong size")
        del self._reserved[counter]
        return self._record(data, counter, False)

    def write(self, data: bytes) -> int:
        n = len(data)
        view = memoryview(data)
        if self._buf:
            take = self._chunk - len(self._buf)
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) < self._chunk or not view:
                return n             # a full buffer is kept while nothing follows it: it may be the last
            self._seal(self._buf, False)
            self._buf = bytearray()
        while len(view) > self._chunk:
            self._seal(view[:self._chunk], False)
            view = view[self._chunk:]
        self._buf += view
        return n

    def flush(self) -> None:
        if self._buf:
            self._seal(self._buf, False)
            self._buf = bytearray()
        self._raw.flush()

    def close(self) -> None:
        if self._closed:
            return
        if self._reserved:
            raise RuncCkptError("internal error: sealed data closed with a reserved record left unfilled")
        self._closed = True
        self._seal(self._buf, True)
        self._buf = bytearray()
        self._raw.flush()


def _wrap(key: bytes, recipient: SealKey) -> str:
    from jwcrypto import jwe  # lazy: ~60 ms, only when sealing
    alg = _RSA_ALG if recipient.is_rsa else _EC_ALG
    token = jwe.JWE(key, json.dumps({"alg": alg, "enc": _ENC, "kid": recipient.fingerprint}))
    token.add_recipient(recipient.jwk)
    return str(token.serialize(compact=True))


def _read_exact(read: Callable[[int], bytes], n: int) -> bytes:
    """n bytes from read (fewer only at EOF): the one loop over short reads here."""
    parts = []
    while n > 0:
        got = read(n)
        if not got:
            break
        parts.append(got)
        n -= len(got)
    return b"".join(parts)


class Header:
    """A sealed file's header, parsed from untrusted bytes: who it is sealed for, and how."""

    def __init__(self, raw: Source, name: str) -> None:
        self.name = name
        magic = _read_exact(raw.read, len(MAGIC))
        if magic != MAGIC:
            raise SealError(f"{name}: not sealed data")
        size_bytes = _read_exact(raw.read, _LEN.size)
        size = _LEN.unpack(size_bytes)[0] if len(size_bytes) == _LEN.size else -1
        if not 0 < size <= MAX_HEADER:
            raise SealError(f"{name}: sealed data with a bad header length")
        body = _read_exact(raw.read, size)
        if len(body) != size:
            raise SealError(f"{name}: sealed data is truncated (in its header)")
        self.aad = _sha256(magic + size_bytes + body)
        try:
            doc = json.loads(body)
            if doc["version"] != VERSION or doc["cipher"] != CIPHER:
                raise SealError(f"{name}: sealed with version {doc['version']!r}, cipher {doc['cipher']!r}; "
                                f"this runc-ckpt reads version {VERSION}, {CIPHER}")
            self.chunk = int(doc["chunk"])
            self.prefix = base64.b64decode(doc["nonce_prefix"], validate=True)
            self.recipients = [(str(r["kid"]), str(r["jwe"])) for r in doc["recipients"]]
        except SealError:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise SealError(f"{name}: sealed data with a malformed header ({e})") from None
        if not 0 < self.chunk <= MAX_CHUNK or len(self.prefix) != 7 or not 0 < len(self.recipients) <= MAX_RECIPIENTS:
            raise SealError(f"{name}: sealed data with a malformed header")

    @property
    def fingerprints(self) -> list[str]:
        return [kid for kid, _ in self.recipients]

    def content_key(self, keys: Sequence[SealKey]) -> bytes:
        """Unwrap the content key with the first of keys it is sealed for; SealError if none is."""
        from jwcrypto import jwe  # lazy: ~60 ms, only when sealed data is opened
        from jwcrypto.common import JWException
        have = {k.fingerprint: k for k in keys}
        for kid, token in self.recipients:
            key = have.get(kid)
            if key is None:
                continue
            try:
                opened = jwe.JWE(algs=_OPEN_ALGS)
                opened.deserialize(token, key=key.jwk)
                content = bytes(opened.payload)
            except (JWException, ValueError) as e:
                raise SealError(f"{self.name}: the key for {kid} in its header does not open with "
                                f"{key.path} ({e})") from None
            if len(content) != 32:
                raise SealError(f"{self.name}: sealed data with a malformed content key")
            return content
        sealed_for = ", ".join(self.fingerprints)
        given = f" (given: {', '.join(k.fingerprint for k in keys)})" if keys else " (no --decryption-key given)"
        raise SealError(f"{self.name} is encrypted for {sealed_for}; no decryption key given opens it{given}")


class SealReader:
    """The plaintext of sealed data, read as a file: every record verified before any byte of it is handed on.

    read()/read1()/peek() as a buffered file has them (the decompressors
    and a stream's reader use them). Any failure raises SealError naming
    the file; EOF is reported only after the record flagged last.
    """

    def __init__(self, raw: Source, keys: Sequence[SealKey], name: str) -> None:
        from cryptography.exceptions import InvalidTag  # lazy: ~20 ms, only when sealed data is opened
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        self._invalid_tag = InvalidTag
        self.header = Header(raw, name)
        self._aead = AESGCM(self.header.content_key(keys))
        self._raw = raw
        self._name = name
        self._counter = 0
        self._buf = memoryview(b"")
        self._done = False

    def _next(self) -> bool:
        """Open the next record into the buffer; False at the (verified) end."""
        while not self._buf:
            if self._done:
                if self._raw.read(1):
                    raise SealError(f"{self._name}: data after the end of the sealed data")
                return False
            length = _read_exact(self._raw.read, _LEN.size)
            if len(length) != _LEN.size:
                raise SealError(f"{self._name}: sealed data is truncated (record {self._counter} missing)")
            size = _LEN.unpack(length)[0]
            last = bool(size & _LAST)
            size &= ~_LAST
            if size > self.header.chunk:
                raise SealError(f"{self._name}: sealed data is corrupt (record {self._counter} too long)")
            record = _read_exact(self._raw.read, size + _TAG)
            if len(record) != size + _TAG:
                raise SealError(f"{self._name}: sealed data is truncated (in record {self._counter})")
            try:
                plain = self._aead.decrypt(_nonce(self.header.prefix, self._counter, last), record,
                                           self.header.aad + length)
            except self._invalid_tag:
                raise SealError(f"{self._name}: sealed data was modified, reordered or corrupted "
                                f"(record {self._counter} fails authentication)") from None
            self._counter += 1
            self._done = last
            self._buf = memoryview(plain)
        return True

    def read1(self, n: int = -1) -> bytes:
        if not self._next():
            return b""
        whole = self._buf.obj
        if isinstance(whole, bytes) and len(self._buf) == len(whole) and (n < 0 or n >= len(whole)):
            self._buf = memoryview(b"")
            return whole        # a whole record, the usual case: handed on without a copy
        take = self._buf if n < 0 else self._buf[:n]
        self._buf = self._buf[len(take):]
        return bytes(take)

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            return b"".join(iter(self.read1, b""))
        # A short read, as a pipe's: what the current record holds. Waiting for n bytes would hold
        # a flushed record (a stream's hello) back until more arrives, while the sender waits for
        # the receiver's reply to it.
        return self.read1(n)

    def peek(self, n: int = 1) -> bytes:
        self._next()
        return bytes(self._buf[:max(n, 1)])

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing of its own to release: the caller closes raw."""


def _sha256(data: bytes) -> bytes:
    """The header's digest (the AEAD's associated data). hashlib is imported here, not at the top: the checkpoint
    flow loads this module before runc is forked, and only sealing needs it (~2.5 ms with OpenSSL)."""
    import hashlib
    return hashlib.sha256(data).digest()
