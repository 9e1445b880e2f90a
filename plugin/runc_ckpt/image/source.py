"""What `restore --import` and `inspect` read: an archive file, or the layer of a checkpoint image.

An argument that names a transport (oci:, oci-archive:, docker://,
containers-storage:) is an image; so is a bare NAME that is not a file
here and does not look like one (podman's meaning: containers-storage).
The image's layer is handed to the archive reader like any archive, with
its digest to check on the way; verify() then ties the layer to the
manifest annotations, so a layer swapped under an image is refused.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from types import MappingProxyType

from runc_ckpt.archive import layout
from runc_ckpt.archive.manifest import MemberDigest
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import GlobalFlags
from runc_ckpt.base.jsondoc import JSONObject
from runc_ckpt.base.record import Record
from runc_ckpt.image import annotations as image_annotations
from runc_ckpt.image import reference

_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst", ".zst", ".gz")


class Source(Record):
    """A checkpoint to read: path of the tar stream, and for an image its reference and annotations."""

    path: str
    reference: str | None = None
    sha256: str | None = None
    annotations: Mapping[str, str] = MappingProxyType({})
    manifest_digest: str | None = None

    @property
    def what(self) -> str:
        return f"image {self.reference}" if self.reference else f"archive {self.path}"

    def trust_scope(self) -> tuple[str, str]:
        """(transport, scope) under which the trust policy (trust.policy) judges this checkpoint."""
        if self.reference is None:
            return "archive", self.path
        ref = reference.parse(self.reference)
        if ref.transport in (reference.OCI, reference.OCI_ARCHIVE):
            return "oci", os.path.abspath(ref.target)
        if ref.transport == reference.DOCKER:
            return "docker", ref.target          # HOST/REPO[:TAG]
        return ref.transport, ref.target


def is_image(text: str) -> bool:
    """A transport prefix, or a bare NAME that is no file here and does not look like a path or archive."""
    if reference.looks_like_image(text):
        return True
    return not (os.path.exists(text) or text.startswith(("/", ".", "~")) or text.endswith(_ARCHIVE_SUFFIXES))


def open_source(text: str, scratch_parent: str, flags: GlobalFlags | None,
                stack: contextlib.ExitStack, decryption_keys: tuple[str, ...] = ()) -> Source:
    """The Source for an --import/inspect argument; an image's scratch copy lives until `stack` closes."""
    if not is_image(text):
        return Source(os.path.abspath(text))
    from runc_ckpt.image import transport
    ref = reference.parse(text)
    fetched = stack.enter_context(transport.fetch(ref, scratch_parent, flags, decryption_keys))
    img = fetched.image
    if not image_annotations.is_checkpoint(img.annotations):
        raise RuncCkptError(f"image {ref} is not a checkpoint image (it has no {image_annotations.PODMAN_NAME} or "
                            f"{image_annotations.CRIO_NAME} annotation)")
    return Source(img.layer_path, str(ref), img.layer_sha256, img.annotations, img.manifest_digest)


def verify(src: Source, members: dict[str, MemberDigest], config_dump: JSONObject | None) -> None:
    """For an image: its annotations must describe the layer that was read."""
    if src.reference is None:
        return
    want = src.annotations.get(image_annotations.MANIFEST_DIGEST)
    if want is not None:
        got = members.get(layout.MANIFEST)
        if got is None or f"sha256:{got.sha256}" != want:
            raise RuncCkptError(f"image {src.reference}: the layer's {layout.MANIFEST} is not the one its "
                                f"{image_annotations.MANIFEST_DIGEST} annotation names ({want})")
    name = src.annotations.get(image_annotations.PODMAN_NAME) or src.annotations.get(image_annotations.CRIO_NAME)
    dumped = (config_dump or {}).get("name")
    if name and dumped and name != dumped:
        raise RuncCkptError(f"image {src.reference}: its annotations name container {name!r}, but the "
                            f"layer's {layout.CONFIG_DUMP} names {dumped!r}")
