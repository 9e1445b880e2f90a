"""containers-transports references parse as podman and skopeo read them; bad ones get one clear error."""

from __future__ import annotations

import pytest

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.image import reference
from runc_ckpt.image.reference import Reference


@pytest.mark.parametrize("text, want", [
    ("oci:/srv/img", Reference("oci", "/srv/img")),
    ("oci:/srv/img:v1", Reference("oci", "/srv/img", "v1")),
    ("oci:rel/dir:latest", Reference("oci", "rel/dir", "latest")),
    ("oci-archive:/tmp/x.tar", Reference("oci-archive", "/tmp/x.tar")),
    ("oci-archive:/tmp/x.tar:ckpt", Reference("oci-archive", "/tmp/x.tar", "ckpt")),
    ("docker://127.0.0.1:5000/ckpt:1", Reference("docker", "127.0.0.1:5000/ckpt:1")),
    ("containers-storage:localhost/ck:1", Reference("containers-storage", "localhost/ck:1")),
    ("containers-storage:ck", Reference("containers-storage", "localhost/ck:latest")),
    ("ck", Reference("containers-storage", "localhost/ck:latest")),
    ("ck:2", Reference("containers-storage", "localhost/ck:2")),
    ("quay.io/me/ck:2", Reference("containers-storage", "quay.io/me/ck:2")),
    ("localhost/ck", Reference("containers-storage", "localhost/ck:latest")),
    ("containers-storage:[overlay@/g+/r]localhost/ck:1", Reference("containers-storage", "[overlay@/g+/r]localhost/ck:1")),
])
def test_parse(text, want):
    assert reference.parse(text) == want


def test_round_trip_spelling():
    for text in ("oci:/a/b:t", "oci-archive:/x.tar", "docker://h:1/r:t", "containers-storage:localhost/x:1"):
        assert str(reference.parse(text)) == text


@pytest.mark.parametrize("text, fragment", [
    ("", "empty reference"),
    ("docker:/nohost", "docker://HOST/REPO"),
    ("docker://UPPER/x", "not a valid image name"),
    ("oci:", "needs a path"),
    ("http://example.com/x", "unknown transport"),
    ("containers-storage:", "needs an image name"),
    ("Bad Name", "not a valid image name"),
])
def test_bad_references(text, fragment):
    with pytest.raises(RuncCkptError) as e:
        reference.parse(text, "--create-image")
    assert fragment in str(e.value)
    assert "--create-image" in str(e.value)


def test_looks_like_image():
    assert reference.looks_like_image("oci:/x")
    assert reference.looks_like_image("docker://h/r")
    assert not reference.looks_like_image("/tmp/a.tar.zst")
