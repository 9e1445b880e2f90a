"""The OCI image layout (image-spec v1.1): write a one-layer checkpoint image, read one back.

Everything read is untrusted: index.json, the manifest and the config are
size-capped, digest-checked and validated against the image-spec's JSON
schemas (compact copies in settings/schemas) before a field is used; blob
names must be sha256 digests, so no name can lead outside blobs/. The layer
itself is checked by the archive reader as it streams (reader.stage's
sha256), never here by a separate pass.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypedDict

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.jsondoc import JSONObject
from runc_ckpt.runtime import atomicfile
from runc_ckpt.settings import config as settings

INDEX_MT = "application/vnd.oci.image.index.v1+json"
MANIFEST_MT = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MT = "application/vnd.oci.image.config.v1+json"
LAYER_MT = {"none": "application/vnd.oci.image.layer.v1.tar",
            "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
            "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
# Docker's layer type, which registries and skopeo may hand back.
_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
MAX_JSON_BLOB = 4 << 20
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")


@dataclass(frozen=True)
class Layer:
    """The layer as written: its file, sha256 of the file, sha256 of the tar inside, size, compression."""

    path: str
    sha256: str
    diff_id: str
    size: int
    compression: str


@dataclass
class Image:
    """A checkpoint image read from a layout: its manifest's annotations and its one layer."""

    layout: str
    manifest_digest: str
    annotations: dict[str, str]
    config: JSONObject
    layer_path: str
    layer_sha256: str
    layer_size: int
    layer_media_type: str


def blob_path(layout: str, digest: str) -> str:
    m = _DIGEST.match(digest)
    if not m:
        raise RuncCkptError(f"image {layout}: digest {digest!r} is not a sha256 digest")
    return os.path.join(layout, "blobs", "sha256", m.group(1))


def _json_bytes(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


class BlobRef(TypedDict):
    """The digest and size a descriptor gives a blob."""

    digest: str
    size: int


def _put_blob(layout: str, data: bytes) -> BlobRef:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = blob_path(layout, digest)
    if not os.path.exists(path):
        atomicfile.write_bytes(path, data)
    return {"digest": digest, "size": len(data)}


def layer_dir(layout: str) -> str:
    """Where a layer file is written before write() renames it to its digest (created)."""
    d = os.path.join(layout, "blobs", "sha256")
    os.makedirs(d, mode=0o755, exist_ok=True)
    return d


def build_documents(layer: Layer, annotations: dict[str, str], created: str,
                    arch: str) -> tuple[JSONObject, JSONObject]:
    """(config, manifest) of a one-layer checkpoint image, as podman's buildah commit makes them."""
    cfg = {"created": created, "architecture": arch, "os": "linux", "config": {},
           "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer.diff_id}"]},
           "history": [{"created": created, "created_by": "runc-ckpt checkpoint --create-image"}]}
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_MT,
                "config": {"mediaType": CONFIG_MT},  # digest and size filled in by write()
                "layers": [{"mediaType": LAYER_MT[layer.compression], "digest": f"sha256:{layer.sha256}",
                            "size": layer.size}],
                "annotations": dict(sorted(annotations.items()))}
    return cfg, manifest


def write(layout: str, layer: Layer, annotations: dict[str, str], tag: str | None, created: str,
          arch: str) -> str:
    """Add the image to the layout at `layout` (created if missing); returns the manifest digest.

    Blobs first, index.json last and atomically: a crash leaves the old index
    (and at worst unreferenced blobs), never an index naming a missing blob.
    An existing image with the same tag is replaced in the index, as skopeo does.
    """
    layer_dir(layout)
    os.rename(layer.path, blob_path(layout, f"sha256:{layer.sha256}"))
    with _locked(layout):
        return _add_to_index(layout, layer, annotations, tag, created, arch)


@contextlib.contextmanager
def _locked(layout: str) -> Iterator[None]:
    """index.json is read, changed and replaced: two writers of one layout take turns (flock on the dir)."""
    fd = os.open(layout, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _add_to_index(layout: str, layer: Layer, annotations: dict[str, str], tag: str | None, created: str,
                  arch: str) -> str:
    index = _load_index(layout) if os.path.exists(os.path.join(layout, INDEX_FILE)) else None
    cfg, manifest = build_documents(layer, annotations, created, arch)
    manifest["config"].update(_put_blob(layout, _json_bytes(cfg)))
    settings.validate(cfg, "oci-image-config.schema.json", "image config")
    settings.validate(manifest, "oci-image-manifest.schema.json", "image manifest")
    blob = _put_blob(layout, _json_bytes(manifest))
    desc: JSONObject = {"mediaType": MANIFEST_MT, **blob}
    if tag:
        desc["annotations"] = {REF_NAME: tag}
    kept = [m for m in (index or {}).get("manifests", [])
            if tag is None or (m.get("annotations") or {}).get(REF_NAME) != tag]
    new_index = {"schemaVersion": 2, "mediaType": INDEX_MT, "manifests": [*kept, desc]}
    settings.validate(new_index, "oci-image-index.schema.json", "image index")
    if not os.path.exists(os.path.join(layout, LAYOUT_FILE)):
        atomicfile.write_bytes(os.path.join(layout, LAYOUT_FILE), _json_bytes({"imageLayoutVersion": "1.0.0"}))
    atomicfile.write_bytes(os.path.join(layout, INDEX_FILE), _json_bytes(new_index))
    return blob["digest"]


def _read_json(path: str, what: str, limit: int = MAX_JSON_BLOB, sha256: str | None = None,
               size: int | None = None) -> JSONObject:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise RuncCkptError(f"{what} is missing ({path})") from None
    except OSError as e:
        raise RuncCkptError(f"{what}: {e.strerror}") from None
    if len(data) > limit:
        raise RuncCkptError(f"{what} is larger than {limit} bytes: not an image document")
    if size is not None and len(data) != size:
        raise RuncCkptError(f"{what}: {len(data)} bytes, but its descriptor says {size}")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise RuncCkptError(f"{what} does not match its digest sha256:{sha256}")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RuncCkptError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise RuncCkptError(f"{what} is not a JSON object")
    return doc


def _load_index(layout: str) -> JSONObject:
    if not os.path.isdir(layout):
        raise RuncCkptError(f"image layout {layout} does not exist")
    marker = _read_json(os.path.join(layout, LAYOUT_FILE), f"image layout {layout}: {LAYOUT_FILE}")
    settings.validate(marker, "oci-layout.schema.json", f"image layout {layout}: {LAYOUT_FILE}")
    index = _read_json(os.path.join(layout, INDEX_FILE), f"image layout {layout}: {INDEX_FILE}")
    settings.validate(index, "oci-image-index.schema.json", f"image layout {layout}: {INDEX_FILE}")
    return index


def _blob_json(layout: str, desc: JSONObject, what: str) -> JSONObject:
    path = blob_path(layout, desc["digest"])
    return _read_json(path, what, sha256=desc["digest"][7:], size=desc["size"])


def read(layout: str, tag: str | None) -> Image:
    """The checkpoint image tagged `tag` (or the layout's only image) in the layout at `layout`."""
    index = _load_index(layout)
    manifests = [m for m in index["manifests"] if m["mediaType"] == MANIFEST_MT]
    if tag is not None:
        manifests = [m for m in manifests if (m.get("annotations") or {}).get(REF_NAME) == tag]
        if not manifests:
            raise RuncCkptError(f"image layout {layout} has no image tagged {tag!r}")
    if len(manifests) != 1:
        raise RuncCkptError(f"image layout {layout} holds {len(manifests)} images: name one as "
                            f"oci:{layout}:TAG" if manifests else f"image layout {layout} holds no image")
    desc = manifests[0]
    manifest = _blob_json(layout, desc, f"image {layout}: manifest")
    settings.validate(manifest, "oci-image-manifest.schema.json", f"image {layout}: manifest")
    cfg = _blob_json(layout, manifest["config"], f"image {layout}: config")
    settings.validate(cfg, "oci-image-config.schema.json", f"image {layout}: config")
    layers = manifest["layers"]
    if len(layers) != 1:
        raise RuncCkptError(f"image {layout}: {len(layers)} layers; a checkpoint image has exactly one")
    layer = layers[0]
    if str(layer["mediaType"]).endswith("+encrypted"):
        raise RuncCkptError(f"image {layout}: its layer is encrypted (ocicrypt): give --decryption-key")
    if layer["mediaType"] not in (*LAYER_MT.values(), _DOCKER_LAYER):
        raise RuncCkptError(f"image {layout}: layer media type {layer['mediaType']!r} is not a tar layer")
    path = blob_path(layout, layer["digest"])
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise RuncCkptError(f"image {layout}: layer blob {layer['digest']} is missing") from None
    if size != layer["size"]:
        raise RuncCkptError(f"image {layout}: layer blob is {size} bytes, but the manifest says {layer['size']}")
    return Image(layout, desc["digest"], dict(manifest.get("annotations") or {}), cfg, path,
                 layer["digest"][7:], size, layer["mediaType"])
