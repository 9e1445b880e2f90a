"""What a checkpoint archive says about its container: podman's config.dump and the tool versions.

runc knows a container only by ID, so the engine-level fields podman keeps
(name, image) are taken from the annotations engines put in the spec (CRI-O's
and containerd's CRI plugin), else left empty as podman accepts. The runtime
name is ours: podman insists on the same name at `restore --import`.

`podman container restore` recreates the container from the image that
config.dump names (rootfsImageID/rootfsImageName) and its named volumes
(namedVolumes). Those are written when the image is known: for a container
podman made (its storage records the image), or for a bundle annotated with
an image (io.runc-ckpt.image, or the CRI annotations) that podman's storage
holds. Otherwise the archive restores under runc-ckpt only, and
podman_restorable() says so.
"""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

from runc_ckpt import __version__
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.jsondoc import JSONObject
from runc_ckpt.runtime import hostcache, hostinfo, ocispec, podmanstore, volumes
from runc_ckpt.runtime.criu import features

if TYPE_CHECKING:       # annotations only: restore --import (versions, host) loads neither (~2 ms)
    from datetime import datetime

    from runc_ckpt.runtime.containerstate import ContainerState

RUNTIME_NAME = "runc-ckpt"
# config.dump fields from the annotations engines set (CRI-O, containerd's CRI plugin); else empty.
_ANNOTATED = {
    "name": ("io.kubernetes.cri-o.Name", "io.kubernetes.cri.container-name"),
    "rootfsImage": ("io.kubernetes.cri-o.Image", "io.kubernetes.cri.image-name"),
    "rootfsImageRef": ("io.kubernetes.cri-o.ImageRef",),
    "rootfsImageName": ("io.kubernetes.cri-o.ImageName", "io.kubernetes.cri.image-name"),
}
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"
IMAGE_ANNOTATION = "io.runc-ckpt.image"
# podman's defaults for what a container created without options holds.
_STOP_SIGNAL, _STOP_TIMEOUT = 15, 10


def config_dump(st: ContainerState, spec: JSONObject, now: datetime,
                volume_roots: list[str] | None = None) -> JSONObject:
    """podman's config.dump for a container runc knows only by ID."""
    annotations = ocispec.annotations(spec)

    def annotated(field: str, default: str = "") -> str:
        return next((annotations[k] for k in _ANNOTATED[field] if annotations.get(k)), default)

    dump = {
        "id": st.id,
        "name": annotated("name", st.id),
        "rootfsImage": annotated("rootfsImage"),
        "rootfsImageRef": annotated("rootfsImageRef"),
        "rootfsImageName": annotated("rootfsImageName"),
        "runtime": RUNTIME_NAME,
        "createdTime": st.created,
        "checkpointedTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "restoredTime": _GO_ZERO_TIME,
        "restored": False,
    }
    origin = podmanstore.container_of(st.bundle, st.id)
    image_id: str | None
    if origin is not None:
        image_id, image_name = origin.image_id, origin.image_name
        dump["name"] = origin.name
    else:
        image_name = annotations.get(IMAGE_ANNOTATION) or annotated("rootfsImageName")
        image_id = podmanstore.image_id(image_name) if image_name else None
    if image_id and image_name:
        dump.update(_podman_fields(spec, image_id, image_name, volume_roots or []))
    return dump


def volume_roots(st: ContainerState, roots: list[str]) -> list[str]:
    """The configured volume roots, plus the volume dir of the podman storage that made the container."""
    origin = podmanstore.container_of(st.bundle, st.id)
    return [*roots, origin.volume_root] if origin is not None and origin.volume_root not in roots else roots


def _podman_fields(spec: JSONObject, image_id: str, image_name: str, volume_roots: list[str]) -> JSONObject:
    """The fields podman 4.3.1's restore needs to recreate the container from its image."""
    named = []
    for bm in volumes.bind_mounts(spec, volume_roots):
        if bm.volume is not None and not bm.listed:
            m = next(m for m in volumes.bind_entries(spec) if m.get("destination") == bm.destination)
            named.append({"volumeName": bm.volume, "dest": bm.destination,
                          "options": [o for o in m.get("options") or [] if o not in ("bind",)]})
    return {"RawImageName": image_name, "rootfsImageID": image_id, "rootfsImageName": image_name,
            "namedVolumes": named, "userVolumes": [v["dest"] for v in named],
            "createNetNS": False, "stopSignal": _STOP_SIGNAL, "stopTimeout": _STOP_TIMEOUT,
            "createWorkingDir": True, "logDriver": "k8s-file"}


def podman_restorable(dump: JSONObject | None) -> bool:
    """Whether `podman container restore` can take an archive with this config.dump."""
    return bool(dump and dump.get("rootfsImageID") and dump.get("rootfsImageName"))


def _first_line_version(argv: list[str], prefix: str) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             check=False, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        if line.lower().startswith(prefix):
            return line[len(prefix):].strip()
    return None


def versions(runc: str, criu: str, cache_dir: str | None = None) -> dict[str, str]:
    """runc-ckpt's, runc's and CRIU's versions, for the manifest and the restore's comparison;
    cached per binary in cache_dir (runtime.hostcache; None: asked every time)."""
    try:
        criu_path = features.resolve(criu)
    except RuncCkptError:
        criu_path = criu
    return {"runc-ckpt": __version__,
            "runc": _tool_version(runc, "runc version", cache_dir),
            "criu": _tool_version(criu_path, "version:", cache_dir)}


def _tool_version(binary: str, prefix: str, cache_dir: str | None) -> str:
    """The version `binary --version` prints after prefix; "unknown" (never cached) when it prints none."""
    found = hostcache.remember(cache_dir, "version-" + os.path.basename(binary), binary, {},
                               lambda: _first_line_version([binary, "--version"], prefix))
    return found if isinstance(found, str) else "unknown"


def host() -> dict[str, str]:
    """The manifest's record of this host, for restore's pre-flight check."""
    here = hostinfo.current()
    return {"arch": here.arch, "kernel": here.kernel, "cgroups": here.cgroups,
            "distribution": f"{here.distribution} {here.distribution_version}".strip()}
