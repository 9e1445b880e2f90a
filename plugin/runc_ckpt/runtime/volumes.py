"""Which of a container's bind mounts are archived as volumes, and under what name.

Podman keeps a named volume's data in <volume-root>/<name>/_data and bind-mounts
that directory into the container; docker does the same under its own root.
Such a mount is archived as volumes/<name>.tar. A host directory bind-mounted
at a destination listed in the io.runc-ckpt.volumes annotation is archived the
same way under bind_volume_name(destination). Any other bind mount belongs to
the host and is only listed in the manifest, never archived.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.jsondoc import JSONObject
from runc_ckpt.base.record import Record
from runc_ckpt.settings.policy import ANNOTATION_PREFIX

VOLUMES_ANNOTATION = ANNOTATION_PREFIX + "volumes"
BIND_PREFIX = "bind-"
# Kept as they are in a bind volume's name (see bind_volume_name for ".").
# (string.ascii_letters + string.digits, spelled out: the string module is ~0.4 ms of every restore --import)
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class BindMount(Record):
    destination: str
    source: str
    volume: str | None     # the name it is archived under (named volume or listed bind), else None
    listed: bool = False   # archived because io.runc-ckpt.volumes lists it (a host dir, not a named volume)

    def manifest_entry(self, archived: bool) -> dict[str, str | None]:
        return {"destination": self.destination, "source": self.source,
                "archived_as": self.volume if archived else None}


def is_bind(mount: JSONObject) -> bool:
    options = mount.get("options") or []
    return mount.get("type") == "bind" or "bind" in options or "rbind" in options


def bind_entries(spec: JSONObject) -> list[JSONObject]:
    """The spec's bind mounts as they stand in it (callers may rewrite their sources)."""
    return [m for m in spec.get("mounts") or [] if isinstance(m, dict) and is_bind(m)]


def volume_name(source: str, volume_roots: Sequence[str]) -> str | None:
    """<root>/<name>/_data -> name, for any configured root."""
    source = os.path.normpath(source)
    parent, data = os.path.split(source)
    root, name = os.path.split(parent)
    if data != "_data" or not name or name in (".", ".."):
        return None
    return name if any(os.path.normpath(r) == root for r in volume_roots) else None


def bind_volume_name(destination: str) -> str:
    """The volume name of a host bind mount listed in io.runc-ckpt.volumes: bind-<destination>.

    "/" becomes "-"; letters, digits and "_" stay, and "." unless it starts a
    path component or follows another "."; every other byte (including "-" and
    "%") becomes %xx. So the name is one safe path component, never holding "/"
    or "..", and two destinations never share a name: restore can match a name
    back to its mount without knowing what else the container had listed.
    """
    out, prev = [], "/"
    for ch in os.path.normpath(destination).lstrip("/"):
        if ch == "/":
            out.append("-")
        elif ch in _PLAIN or (ch == "." and prev not in "./"):
            out.append(ch)
        else:
            out.append("".join(f"%{b:02x}" for b in ch.encode("utf-8", "surrogateescape")))
        prev = ch
    return BIND_PREFIX + "".join(out)


def bind_mounts(spec: JSONObject, volume_roots: Sequence[str], extra: Iterable[str] = ()) -> list[BindMount]:
    """Every bind mount of the spec, in spec order, with the volume name it is archived under.

    `extra` is Policy.extra_volumes. A listed destination must be a bind mount
    of the spec: a typo must not quietly leave data out of the archive. Where
    a destination is mounted twice, the last mount is the one the container
    sees, so only that one is archived.
    """
    mounts = [(str(m.get("destination", "")), str(m.get("source", ""))) for m in bind_entries(spec)]
    wanted = {os.path.normpath(d) for d in extra}
    last = {os.path.normpath(dest): i for i, (dest, _) in enumerate(mounts)}
    missing = sorted(wanted - set(last))
    if missing:
        raise RuncCkptError(f"annotation {VOLUMES_ANNOTATION}: {', '.join(missing)} "
                            f"{'is not a bind mount' if len(missing) == 1 else 'are not bind mounts'} "
                            f"of the container")
    out = []
    for i, (dest, source) in enumerate(mounts):
        name = volume_name(source, volume_roots) if source else None
        if name is None and last[os.path.normpath(dest)] == i and os.path.normpath(dest) in wanted:
            out.append(BindMount(dest, source, bind_volume_name(dest), listed=True))
        else:
            out.append(BindMount(dest, source, name))
    named = {bm.volume for bm in out if not bm.listed}
    for bm in out:
        if bm.listed and bm.volume in named:
            raise RuncCkptError(f"annotation {VOLUMES_ANNOTATION}: the bind mount at {bm.destination} would be "
                                f"archived as volume {bm.volume}, which is the name of a named volume")
    return out


def check_listed(spec: JSONObject, volume_roots: Sequence[str], extra: Iterable[str]) -> None:
    """Refuse, before the container is touched, a listed destination that cannot be archived."""
    for bm in bind_mounts(spec, volume_roots, extra):
        if bm.listed and not os.path.isdir(bm.source):
            raise RuncCkptError(f"annotation {VOLUMES_ANNOTATION}: {bm.destination} is a bind mount of "
                                f"{bm.source or 'nothing'}, which is not a directory")
