"""The sealed format (trust.seal): round trips for every key kind, and every way sealed data is refused."""

from __future__ import annotations

import io
import os

import pytest

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.trust import seal, sealkeys

CHUNK = 1024   # small records, so a few KiB make many


def _seal(data: bytes, keys: list[str], writes: int = 7, chunk: int = CHUNK) -> bytes:
    out = io.BytesIO()
    w = seal.SealWriter(out, [sealkeys.load_recipient(f"jwe:{k}") for k in keys], chunk)
    step = max(1, len(data) // writes)
    for i in range(0, len(data), step):
        w.write(data[i:i + step])
    w.close()
    return out.getvalue()


def _open(sealed: bytes, keys: list[str], read: int = 1000) -> bytes:
    r = seal.SealReader(io.BytesIO(sealed), sealkeys.load_privates(keys), "test.sealed")
    return b"".join(iter(lambda: r.read(read), b""))


def _records(sealed: bytes) -> tuple[bytes, list[bytes]]:
    """The header and each record (length + ciphertext), split as the reader does."""
    size = int.from_bytes(sealed[len(seal.MAGIC):len(seal.MAGIC) + 4], "big")
    pos = len(seal.MAGIC) + 4 + size
    head, records = sealed[:pos], []
    while pos < len(sealed):
        n = (int.from_bytes(sealed[pos:pos + 4], "big") & 0x7FFF_FFFF) + 4 + 16
        records.append(sealed[pos:pos + n])
        pos += n
    return head, records


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 5 * CHUNK + 17])
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_round_trip(seal_keys, kind, size):
    data = os.urandom(size)
    priv, pub = seal_keys[kind]
    sealed = _seal(data, [pub])
    assert seal.is_sealed(sealed)
    assert size < 16 or data[:64] not in sealed   # a byte or two occur in any ciphertext by chance
    assert _open(sealed, [priv]) == data


def test_several_recipients_each_opens(seal_keys):
    data = os.urandom(3 * CHUNK)
    sealed = _seal(data, [seal_keys["rsa"][1], seal_keys["ec"][1]])
    assert _open(sealed, [seal_keys["ec"][0]]) == data
    assert _open(sealed, [seal_keys["other"][0], seal_keys["rsa"][0]]) == data
    header = seal.Header(io.BytesIO(sealed), "x")
    assert header.fingerprints == [sealkeys.load_recipient(f"jwe:{seal_keys[k][1]}").fingerprint for k in ("rsa", "ec")]


def test_flush_makes_short_records_that_still_open(seal_keys):
    out = io.BytesIO()
    w = seal.SealWriter(out, [sealkeys.load_recipient(f"jwe:{seal_keys['rsa'][1]}")], CHUNK)
    w.write(b"hello")
    w.flush()
    first = out.getvalue()
    w.write(b" world")
    w.close()
    r = seal.SealReader(io.BytesIO(first), sealkeys.load_privates([seal_keys["rsa"][0]]), "s")
    assert r.read1() == b"hello"          # what was flushed opens before the rest arrives
    assert _open(out.getvalue(), [seal_keys["rsa"][0]]) == b"hello world"


def _with_reserved(seal_keys: dict, fill: bool = True) -> tuple[bytes, bytes]:
    """"head" + a reserved record + "tail", the reserved one filled last and written over its place."""
    out = io.BytesIO()
    w = seal.SealWriter(out, [sealkeys.load_recipient(f"jwe:{seal_keys['ec'][1]}")], CHUNK)
    w.write(b"head")
    w.flush()
    at = out.tell()
    record = w.reserve(5)
    w.write(b"tail" * 300)
    if fill:
        sealed = w.fill(record, b"slot!")
        out.seek(at)
        out.write(sealed)
        out.seek(0, io.SEEK_END)
    w._reserved.clear()     # an unfilled place: close() refuses it (below); here its zeros are what is read
    w.close()
    return out.getvalue(), b"head" + b"slot!" + b"tail" * 300


def test_a_reserved_record_filled_later_opens_in_its_place(seal_keys):
    sealed, plain = _with_reserved(seal_keys)
    assert _open(sealed, [seal_keys["ec"][0]]) == plain
    _, records = _records(sealed)
    assert len(records[1]) == 4 + 5 + 16                  # the slot is a record of its own


def test_a_reserved_record_left_unfilled_is_refused(seal_keys):
    sealed, _ = _with_reserved(seal_keys, fill=False)
    with pytest.raises(seal.SealError, match="record 1"):
        _open(sealed, [seal_keys["ec"][0]])


def test_a_reserved_record_is_sealed_once_and_only_at_a_record_boundary(seal_keys):
    w = seal.SealWriter(io.BytesIO(), [sealkeys.load_recipient(f"jwe:{seal_keys['ec'][1]}")], CHUNK)
    w.write(b"buffered")
    with pytest.raises(RuncCkptError, match="mid-record"):
        w.reserve(5)                                     # not right after flush(): a record would be cut
    w.flush()
    record = w.reserve(5)
    with pytest.raises(RuncCkptError, match="wrong size"):
        w.fill(record, b"six b!")
    w.fill(record, b"five!")
    with pytest.raises(RuncCkptError, match="filled twice"):
        w.fill(record, b"five!")                         # its nonce is used once
    w.reserve(5)
    with pytest.raises(RuncCkptError, match="unfilled"):
        w.close()


def test_wrong_key_names_the_file_and_the_key(seal_keys):
    sealed = _seal(b"secret", [seal_keys["rsa"][1]])
    fp = sealkeys.load_recipient(f"jwe:{seal_keys['rsa'][1]}").fingerprint
    with pytest.raises(seal.SealError, match=f"test.sealed is encrypted for {fp}; no decryption key"):
        _open(sealed, [seal_keys["other"][0]])
    with pytest.raises(seal.SealError, match="no --decryption-key given"):
        _open(sealed, [])


def test_a_swapped_wrapped_key_does_not_open(seal_keys):
    """A header whose JWE for our kid was replaced by one for another key: refused, not misread."""
    a = _seal(b"x" * 10, [seal_keys["rsa"][1]])
    b = _seal(b"x" * 10, [seal_keys["other"][1]])
    kid_a = sealkeys.load_recipient(f"jwe:{seal_keys['rsa'][1]}").fingerprint
    kid_b = sealkeys.load_recipient(f"jwe:{seal_keys['other'][1]}").fingerprint
    forged = b.replace(kid_b.encode(), kid_a.encode())
    with pytest.raises(seal.SealError, match="does not open with"):
        _open(forged, [seal_keys["rsa"][0]])
    assert a != forged


@pytest.mark.parametrize("cut", ["header", "record-boundary", "mid-record", "last-only"])
def test_truncation_is_refused(seal_keys, cut):
    sealed = _seal(os.urandom(4 * CHUNK), [seal_keys["rsa"][1]])
    head, records = _records(sealed)
    cuts = {"header": sealed[:len(head) - 3], "record-boundary": head + b"".join(records[:2]),
            "mid-record": sealed[:-10], "last-only": head}
    with pytest.raises(seal.SealError, match="truncated"):
        _open(cuts[cut], [seal_keys["rsa"][0]])


def test_every_flipped_byte_is_refused(seal_keys):
    sealed = _seal(os.urandom(2 * CHUNK + 5), [seal_keys["rsa"][1]])
    head, _ = _records(sealed)
    for pos in list(range(len(head) - 40, len(sealed), 97)) + [len(sealed) - 1]:
        bad = bytearray(sealed)
        bad[pos] ^= 0x01
        with pytest.raises(RuncCkptError):
            _open(bytes(bad), [seal_keys["rsa"][0]])


@pytest.mark.parametrize("change", ["swap", "repeat", "drop-first", "trailing"])
def test_reordered_repeated_dropped_or_extended_records_are_refused(seal_keys, change):
    sealed = _seal(os.urandom(4 * CHUNK), [seal_keys["rsa"][1]])
    head, r = _records(sealed)
    changed = {"swap": [r[1], r[0]] + r[2:], "repeat": r[:2] + [r[1]] + r[2:], "drop-first": r[1:],
               "trailing": r + [r[-1]]}[change]
    with pytest.raises(seal.SealError, match="fails authentication|after the end"):
        _open(head + b"".join(changed), [seal_keys["rsa"][0]])


def test_records_from_another_sealing_with_the_same_key_are_refused(seal_keys):
    data = os.urandom(2 * CHUNK)
    head1, r1 = _records(_seal(data, [seal_keys["rsa"][1]]))
    _, r2 = _records(_seal(data, [seal_keys["rsa"][1]]))
    with pytest.raises(seal.SealError, match="fails authentication"):
        _open(head1 + r2[0] + b"".join(r1[1:]), [seal_keys["rsa"][0]])


def test_hostile_headers_are_refused(seal_keys):
    priv = sealkeys.load_privates([seal_keys["rsa"][0]])
    for bad in (b"nope", seal.MAGIC + b"\xff\xff\xff\xff", seal.MAGIC + b"\x00\x00\x00\x02{}",
                seal.MAGIC + b"\x00\x00\x00\x04null",
                seal.MAGIC + b'\x00\x00\x00\x5f{"version":1,"cipher":"A256GCM-STREAM","chunk":999999999,'
                             b'"nonce_prefix":"AAAAAAAAAA==","recipients":[]}'):
        with pytest.raises(seal.SealError):
            seal.SealReader(io.BytesIO(bad), priv, "h")


def test_key_files_are_checked(seal_keys, tmp_path):
    with pytest.raises(RuncCkptError, match="expected jwe:PATH"):
        sealkeys.load_recipient(seal_keys["rsa"][1])
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(RuncCkptError, match="not a PEM public key"):
        sealkeys.load_recipient(f"jwe:{junk}")
    with pytest.raises(RuncCkptError, match="not a PEM private key"):
        sealkeys.load_private(str(junk))
    with pytest.raises(RuncCkptError, match="cannot read key"):
        sealkeys.load_private(str(tmp_path / "missing.pem"))
    # a private key file given as the recipient: its public half seals
    assert (sealkeys.load_recipient(f"jwe:{seal_keys['ec'][0]}").fingerprint
            == sealkeys.load_private(seal_keys["ec"][0]).fingerprint)
