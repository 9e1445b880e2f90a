"""Named volumes among a container's bind mounts.

Podman keeps a named volume's data in <volume-root>/<name>/_data and bind-mounts
that directory into the container; docker does the same under its own root.
Such a mount is archived as volumes/<name>.tar. Any other bind mount belongs
to the host and is only listed in the manifest, never archived.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class BindMount:
    destination: str
    source: str
    volume: str | None     # the named volume's name, or None for a host bind mount

    def manifest_entry(self, archived: bool) -> dict[str, str | None]:
        return {"destination": self.destination, "source": self.source,
                "archived_as": self.volume if archived else None}


def _is_bind(mount: dict) -> bool:
    options = mount.get("options") or []
    return mount.get("type") == "bind" or "bind" in options or "rbind" in options


def volume_name(source: str, volume_roots: list[str]) -> str | None:
    """<root>/<name>/_data -> name, for any configured root."""
    source = os.path.normpath(source)
    parent, data = os.path.split(source)
    root, name = os.path.split(parent)
    if data != "_data" or not name or name in (".", ".."):
        return None
    return name if any(os.path.normpath(r) == root for r in volume_roots) else None


def bind_mounts(spec: dict, volume_roots: list[str]) -> list[BindMount]:
    """Every bind mount of the spec, in spec order, with its volume name when it is one."""
    out = []
    for mount in spec.get("mounts") or []:
        if not isinstance(mount, dict) or not _is_bind(mount):
            continue
        source, dest = str(mount.get("source", "")), str(mount.get("destination", ""))
        out.append(BindMount(dest, source, volume_name(source, volume_roots) if source else None))
    return out
