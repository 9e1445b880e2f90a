"""Put a checkpoint image at a reference, and fetch one from it, whatever the transport.

oci: and oci-archive: are written and read here directly; docker:// and
containers-storage: go through a private OCI layout and skopeo. Scratch
space is a hidden directory the caller names the parent of (the state dir
when checkpointing, the bundle when restoring), always removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import GlobalFlags
from runc_ckpt.image import oci, ociarchive, skopeo
from runc_ckpt.image.reference import DOCKER, OCI, OCI_ARCHIVE, Reference
from runc_ckpt.runtime import safe_remove

SCRATCH_PREFIX = ".runc-ckpt-image-"
_SCRATCH_TAG = "checkpoint"


@dataclass
class Fetched:
    """An image read from a reference; its layer is a local file until the context ends."""

    reference: Reference
    image: oci.Image


def check_target(ref: Reference) -> None:
    """Refuse a reference we cannot write before any container is touched."""
    if ref.transport == OCI:
        target = os.path.abspath(ref.target)
        if os.path.exists(target) and not os.path.isdir(target):
            raise RuncCkptError(f"--create-image {ref}: {target} exists and is not a directory")
        parent = os.path.dirname(target)
        if not os.path.isdir(parent):
            raise RuncCkptError(f"--create-image {ref}: directory {parent} does not exist")
    elif ref.transport == OCI_ARCHIVE:
        target = os.path.abspath(ref.target)
        if os.path.isdir(target):
            raise RuncCkptError(f"--create-image {ref}: {target} is a directory")
        if not os.path.isdir(os.path.dirname(target)):
            raise RuncCkptError(f"--create-image {ref}: directory {os.path.dirname(target)} does not exist")
    else:
        skopeo.find()


@contextlib.contextmanager
def _scratch(parent: str) -> Iterator[str]:
    os.makedirs(parent, mode=0o700, exist_ok=True)
    d = tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=parent)
    try:
        yield d
    finally:
        safe_remove.remove_tree(d, ignore_errors=True)


def publish(ref: Reference, make_layer: Callable[[str], tuple[oci.Layer, dict[str, str]]],
            created: str, arch: str, scratch_parent: str, flags: GlobalFlags | None,
            encrypt_for: tuple[str, ...] = ()) -> str:
    """Write the image at ref; returns the manifest digest (of the image as written here, before any encryption).

    make_layer(directory) writes the layer file in directory and returns it
    with the image's annotations (some describe the layer, so they come after it).
    encrypt_for: `jwe:PUB.pem` recipients; skopeo (ocicrypt) encrypts the layer on its way to ref,
    so `podman pull --decryption-key` and CRI-O's key directory read it too.
    """
    if ref.transport == OCI and not encrypt_for:
        layout = os.path.abspath(ref.target)
        fresh = not os.path.exists(layout)
        try:
            layer, annotations = make_layer(oci.layer_dir(layout))
            return oci.write(layout, layer, annotations, ref.tag, created, arch)
        except BaseException:
            if fresh:
                safe_remove.remove_tree(layout, ignore_errors=True)
            raise
    # Encrypted, the plain layer is written only to scratch_parent (tmpfs: state/tmpfsimages), never beside the target.
    parent = os.path.dirname(os.path.abspath(ref.target)) if ref.transport == OCI_ARCHIVE and not encrypt_for \
        else scratch_parent
    with _scratch(parent) as scratch:
        layout = os.path.join(scratch, "layout")
        layer, annotations = make_layer(oci.layer_dir(layout))
        digest = oci.write(layout, layer, annotations, ref.tag or _SCRATCH_TAG, created, arch)
        if ref.transport == OCI_ARCHIVE and not encrypt_for:
            ociarchive.pack(layout, os.path.abspath(ref.target))
        else:
            keys = tuple(a for k in encrypt_for for a in ("--encryption-key", k))
            skopeo.copy(f"oci:{layout}:{ref.tag or _SCRATCH_TAG}", str(ref), flags, keys)
        return digest


@contextlib.contextmanager
def fetch(ref: Reference, scratch_parent: str, flags: GlobalFlags | None,
          decryption_keys: tuple[str, ...] = ()) -> Iterator[Fetched]:
    """The image at ref, read and checked; remote images are copied to scratch space first.

    decryption_keys: private keys for an ocicrypt-encrypted layer; given, skopeo decrypts the image
    into scratch space whatever its transport (a key that does not fit is skopeo's error)."""
    if ref.transport == OCI and not decryption_keys:
        yield Fetched(ref, oci.read(os.path.abspath(ref.target), ref.tag))
        return
    with _scratch(scratch_parent) as scratch:
        layout = os.path.join(scratch, "layout")
        if ref.transport == OCI_ARCHIVE and not decryption_keys:
            os.mkdir(layout, 0o700)
            ociarchive.unpack(os.path.abspath(ref.target), layout)
            yield Fetched(ref, oci.read(layout, ref.tag))
            return
        # Registries and storage: skopeo writes a layout we then read like any other. Layers in
        # containers-storage are kept uncompressed; --dest-decompress saves compressing them again.
        extra: tuple[str, ...] = ("--dest-decompress",) if ref.transport != DOCKER else ()
        extra += tuple(a for k in decryption_keys for a in ("--decryption-key", k))
        skopeo.copy(str(ref), f"oci:{layout}:{_SCRATCH_TAG}", flags, extra)
        yield Fetched(ref, oci.read(layout, _SCRATCH_TAG))
