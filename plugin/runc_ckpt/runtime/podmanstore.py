"""What podman's containers-storage knows about a container or an image, read from its JSON files.

A podman-made container's bundle is <graphroot>/<driver>-containers/<id>/userdata,
and <driver>-containers/containers.json records the image it was made from
(podman's metadata: name, image-name, image-id); <driver>-images/images.json
names the images the storage holds. These are what podman's config.dump
needs (rootfsImageID/Name) for `podman container restore` to take our
archive. Read-only, and any unreadable file just means "not known".
"""

from __future__ import annotations

import json
import os

from runc_ckpt.base.record import Record

DEFAULT_STORAGE_CONF = "/etc/containers/storage.conf"
MAX_JSON = 64 << 20


class PodmanOrigin(Record):
    """A container podman created: its storage, name and image."""

    graphroot: str
    name: str
    image_id: str
    image_name: str

    @property
    def volume_root(self) -> str:
        """podman's default volume_path: named volumes live in <graphroot>/volumes/<name>/_data."""
        return os.path.join(self.graphroot, "volumes")


def _load(path: str) -> object:
    try:
        if os.path.getsize(path) > MAX_JSON:
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def container_of(bundle: str, cid: str) -> PodmanOrigin | None:
    """The podman container whose bundle this is, or None."""
    userdata = os.path.normpath(bundle)
    ctr_dir, leaf = os.path.split(userdata)
    containers_dir, dir_id = os.path.split(ctr_dir)
    graphroot, kind = os.path.split(containers_dir)
    if leaf != "userdata" or dir_id != cid or not kind.endswith("-containers"):
        return None
    entries = _load(os.path.join(containers_dir, "containers.json"))
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("id") == cid:
            try:
                meta = json.loads(entry.get("metadata") or "{}")
            except (ValueError, TypeError):   # not JSON text
                return None
            if not isinstance(meta, dict):
                return None
            image_id = str(entry.get("image") or meta.get("image-id") or "")
            image_name = str(meta.get("image-name") or "")
            if not image_id:
                return None
            names = entry.get("names")
            name = str(meta.get("name") or (names[0] if isinstance(names, list) and names else cid))
            return PodmanOrigin(graphroot, name, image_id, image_name)
    return None


def storage_graphroot() -> tuple[str, str] | None:
    """(graphroot, driver) of the storage podman would use here ($CONTAINERS_STORAGE_CONF or the default)."""
    path = os.environ.get("CONTAINERS_STORAGE_CONF") or DEFAULT_STORAGE_CONF
    import tomllib  # ~12 ms of start-up, needed only for an image name: kept off every checkpoint's path (test_layering LAZY)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return None
    storage = doc.get("storage")
    if not isinstance(storage, dict):
        storage = {}
    root = storage.get("graphroot")
    driver = storage.get("driver") or "overlay"
    return (str(root), str(driver)) if root else None


def image_id(name: str) -> str | None:
    """The ID of the image `name` (or `localhost/name:latest` etc.) in podman's storage, or None."""
    where = storage_graphroot()
    if where is None or not name:
        return None
    graphroot, driver = where
    entries = _load(os.path.join(graphroot, f"{driver}-images", "images.json"))
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and (name in (entry.get("names") or []) or entry.get("id") == name):
            return str(entry.get("id"))
    return None
