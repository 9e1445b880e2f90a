"""Bind mounts of an imported spec: named volumes, and podman's per-container files.

A podman spec bind-mounts files podman keeps per container (/etc/hosts,
/etc/hostname, /run/.containerenv, /etc/resolv.conf, /dev/shm) from its own
storage dirs. On another host those sources do not exist, so restore
recreates them under the bundle and points the spec at them. Named volumes
are found by name (podman's config.dump `namedVolumes`, our manifest's
`bind_mounts`, or a `<volume root>/<name>/_data` source) and restored to the
source their mount has in the bundle's config. A host directory our export
archived because io.runc-ckpt.volumes listed it is found by its bind-<path>
name among the archived spec's bind mounts, and restored to the source its
destination has in the bundle's config. Any other missing bind source is the
user's own host path: that is an error naming it, never guessed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.record import Record
from runc_ckpt.runtime import atomicfile, volumes

BINDS_DIR = ".runc-ckpt-binds"
# Destination in the container -> file (or dir) name under BINDS_DIR.
PODMAN_FILES = {"/etc/hosts": "hosts", "/etc/hostname": "hostname", "/run/.containerenv": ".containerenv",
                "/etc/resolv.conf": "resolv.conf", "/dev/shm": "shm"}


def volume_destinations(spec: dict | None, config_dump: dict | None, manifest: dict | None,
                        volume_roots: Sequence[str]) -> dict[str, str]:
    """Named volume -> its destination in the container, from what the archive says."""
    found: dict[str, str] = {}
    for m in (manifest or {}).get("bind_mounts") or []:
        if isinstance(m, dict) and m.get("archived_as") and m.get("destination"):
            found.setdefault(str(m["archived_as"]), str(m["destination"]))
    for v in (config_dump or {}).get("namedVolumes") or []:
        if isinstance(v, dict) and v.get("volumeName") and v.get("dest"):
            found.setdefault(str(v["volumeName"]), str(v["dest"]))
    for m in volumes.bind_entries(spec or {}):
        name = volumes.volume_name(str(m.get("source", "")), volume_roots)
        if name and m.get("destination"):
            found.setdefault(name, str(m["destination"]))
    return found


def bind_volume_destination(spec: dict | None, name: str) -> str | None:
    """The destination of the spec's bind mount that io.runc-ckpt.volumes archived as `name`, if any."""
    return next((str(m["destination"]) for m in volumes.bind_entries(spec or {})
                 if m.get("destination") and volumes.bind_volume_name(str(m["destination"])) == name), None)


def source_for(spec: dict, destination: str) -> str | None:
    """The bind source the spec gives for a destination (last mount wins, as in the kernel)."""
    source = None
    for m in volumes.bind_entries(spec):
        if os.path.normpath(str(m.get("destination", ""))) == os.path.normpath(destination):
            source = str(m.get("source", ""))
    return source


class Remap(Record):
    destination: str
    old_source: str
    new_source: str
    is_dir: bool


def plan_remaps(spec: dict, bundle: str, known_sources: set[str], recreate_all: bool = False) -> list[Remap]:
    """Which missing bind sources to recreate under the bundle; a missing other source is an error.

    known_sources: sources restore creates itself (named volumes).
    recreate_all: recreate podman's per-container files even where their source exists
    (an untrusted archived spec must not bind host files).
    """
    remaps = []
    for m in volumes.bind_entries(spec):
        source = str(m.get("source", ""))
        dest = os.path.normpath(str(m.get("destination", "")))
        if recreate_all and dest in PODMAN_FILES and source:
            remaps.append(Remap(dest, source, os.path.join(bundle, BINDS_DIR, PODMAN_FILES[dest]),
                                is_dir=dest == "/dev/shm"))
            continue
        if not source or not os.path.isabs(source) or os.path.lexists(source) \
                or os.path.normpath(source) in known_sources:
            continue
        if dest in PODMAN_FILES:
            new = os.path.join(bundle, BINDS_DIR, PODMAN_FILES[dest])
            remaps.append(Remap(dest, source, new, is_dir=dest == "/dev/shm"))
        else:
            raise RuncCkptError(f"bind mount source {source} (mounted at {dest}) does not exist on this host: "
                                f"create it, or change that mount in the bundle's config.json")
    return remaps


def check_namespace_paths(spec: dict) -> None:
    """A namespace to join (CRI-O's and containerd's netns paths) must exist here: say which one is missing."""
    linux = v if isinstance(v := spec.get("linux"), dict) else {}
    for ns in linux.get("namespaces") or []:
        path = ns.get("path") if isinstance(ns, dict) else None
        if path and not os.path.exists(path):
            raise RuncCkptError(f"{ns.get('type', '?')} namespace {path} does not exist on this host: create it "
                                f"(e.g. `ip netns add`), or remove its path from the bundle's config.json")


def remap_paths(bundle: str, remaps: list[Remap]) -> list[str]:
    """What apply_remaps creates, parents first (restore journals what did not exist)."""
    return [os.path.join(bundle, BINDS_DIR), *[r.new_source for r in remaps]] if remaps else []


def apply_remaps(spec: dict, remaps: list[Remap], container_id: str) -> None:
    """Create the per-container files under the bundle and point the spec's mounts at them."""
    if not remaps:
        return
    hostname = str(spec.get("hostname") or container_id[:12])
    contents = {
        "/etc/hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{hostname}\n",
        "/etc/hostname": f"{hostname}\n",
        "/run/.containerenv": 'engine="runc-ckpt"\n',
        "/etc/resolv.conf": _host_resolv_conf(),
    }
    by_old = {r.old_source: r for r in remaps}
    for r in remaps:
        os.makedirs(os.path.dirname(r.new_source), mode=0o755, exist_ok=True)
        if r.is_dir:
            os.makedirs(r.new_source, mode=0o1777, exist_ok=True)
            os.chmod(r.new_source, 0o1777)
        else:
            with open(r.new_source, "w", encoding="utf-8") as f:
                f.write(contents.get(r.destination, ""))
            os.chmod(r.new_source, 0o644)
    for m in volumes.bind_entries(spec):
        remap = by_old.get(str(m.get("source", "")))
        if remap is not None and os.path.normpath(str(m.get("destination", ""))) == remap.destination:
            m["source"] = remap.new_source


def _host_resolv_conf() -> str:
    try:
        with open("/etc/resolv.conf", encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def write_config(path: str, spec: dict) -> None:
    """Write config.json atomically and durably (a crash leaves the old file or the new one)."""
    atomicfile.write_json(path, spec, mode=0o644)
