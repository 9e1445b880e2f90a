"""The images dir's signed manifest (trust.imagesdir): what it lists, and every way a changed dir is refused."""

from __future__ import annotations

import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.trust import imagesdir, keys, signature


@pytest.fixture
def signed(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    (d / "inventory.img").write_bytes(b"inv")
    (d / "pages-1.img").write_bytes(b"p" * 8192)
    os.symlink("../parent-images", d / "parent")
    key = ec.generate_private_key(ec.SECP256R1())
    imagesdir.sign(str(d), "web", key)
    return d, key


def test_sign_lists_files_and_links_and_the_signature_verifies(signed):
    d, key = signed
    manifest, sig = imagesdir.read(str(d))
    doc = json.loads(manifest)
    assert doc["container"] == "web" and sorted(doc["files"]) == ["inventory.img", "pages-1.img"]
    assert doc["links"] == {"parent": "../parent-images"}
    assert signature.verify(signature.parse(sig, "s"), manifest, [key.public_key()]) == \
        keys.fingerprint_of(key.public_key())


def test_logs_written_by_the_restore_itself_do_not_count(signed):
    d, _ = signed
    (d / "restore.log").write_text("criu says hi")
    imagesdir.read(str(d))


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: (d / "pages-1.img").write_bytes(b"q" * 8192), "pages-1.img: size/sha256 differ"),
    (lambda d: (d / "pages-2.img").write_bytes(b"x"), "pages-2.img: not listed"),
    (lambda d: (d / "inventory.img").unlink(), "inventory.img: listed but missing"),
    (lambda d: ((d / "parent").unlink(), os.symlink("/elsewhere", d / "parent")), "links differ"),
    (lambda d: (d / imagesdir.MANIFEST).write_text("{"), "runc-ckpt.images.json"),
])
def test_a_changed_dir_is_refused(signed, change, message):
    d, _ = signed
    change(d)
    with pytest.raises(RuncCkptError, match=message):
        imagesdir.read(str(d))


def test_an_unsigned_dir_reads_as_nothing(tmp_path):
    assert imagesdir.read(str(tmp_path)) == (None, None)
