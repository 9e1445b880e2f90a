"""The checkpoint image's manifest annotations: podman's, CRI-O's, checkpointctl's and ours.

Each engine looks for its own names (podman 4.3.1 libpod/define/annotations.go,
CRI-O internal/annotations/checkpoint.go, checkpointctl lib/annotations.go),
so one image carries all of them and every engine recognises it. Ours,
MANIFEST_DIGEST, ties the image to the layer's runc-ckpt manifest: restore
refuses a layer whose manifest is not the one the annotation names.
"""

from __future__ import annotations

from collections.abc import Mapping

from runc_ckpt.base.jsondoc import JSONObject
from runc_ckpt.runtime.hostinfo import HostInfo, criu_number

PODMAN = "io.podman.annotations.checkpoint."
CRIO_NAME = "io.kubernetes.cri-o.annotations.checkpoint.name"
CRIU = "org.criu.checkpoint."
MANIFEST_DIGEST = "io.runc-ckpt.manifest.digest"
# The annotation each engine restores on: podman's name, CRI-O's name.
PODMAN_NAME = PODMAN + "name"

# Our neutral keys -> (podman's suffix, checkpointctl's suffix); None where that tool has none.
_FIELDS = {
    "name": ("name", "container.name"),
    "raw_image_name": ("rawImageName", "rawImageName"),
    "rootfs_image_id": ("rootfsImageID", "rootfsImageID"),
    "rootfs_image_name": ("rootfsImageName", "rootfsImageName"),
    "engine_version": ("podman.version", "engine.version"),
    "criu_version": ("criu.version", "criu.version"),
    "runtime_name": ("runtime.name", "runtime.name"),
    "runtime_version": ("runtime.version", "runtime.version"),
    "host_arch": ("host.arch", "host.arch"),
    "host_kernel": ("host.kernel", "host.kernel"),
    "cgroups_version": ("cgroups.version", "cgroup.version"),
    "distribution_name": ("distribution.name", "distribution.name"),
    "distribution_version": ("distribution.version", "distribution.version"),
}


def build(config_dump: JSONObject, versions: JSONObject, host: HostInfo, manifest_sha256: str | None,
          engine: str = "runc-ckpt") -> dict[str, str]:
    """All annotations of a checkpoint image made from an archive with this config.dump/manifest."""
    criu = criu_number(str(versions.get("criu", "")))
    runtime_version = versions.get("runc") or ""
    values = {
        "name": str(config_dump.get("name") or config_dump.get("id") or ""),
        "raw_image_name": str(config_dump.get("RawImageName") or config_dump.get("rootfsImageName") or ""),
        "rootfs_image_id": str(config_dump.get("rootfsImageID") or config_dump.get("rootfsImageRef") or ""),
        "rootfs_image_name": str(config_dump.get("rootfsImageName") or ""),
        "engine_version": str(versions.get("runc-ckpt", "")),
        "criu_version": str(criu) if criu is not None else "",
        "runtime_name": str(config_dump.get("runtime") or "runc-ckpt"),
        "runtime_version": str(runtime_version),
        "host_arch": host.arch,
        "host_kernel": host.kernel,
        "cgroups_version": host.cgroups,
        "distribution_name": host.distribution,
        "distribution_version": host.distribution_version,
    }
    out: dict[str, str] = {}
    for key, (podman, criu_key) in _FIELDS.items():
        out[PODMAN + podman] = values[key]
        out[CRIU + criu_key] = values[key]
    out[CRIU + "engine.name"] = engine
    out[CRIO_NAME] = values["name"]
    if manifest_sha256:
        out[MANIFEST_DIGEST] = f"sha256:{manifest_sha256}"
    return out


def is_checkpoint(annotations: dict[str, str]) -> bool:
    """podman, CRI-O and checkpointctl each recognise a checkpoint image by their name annotation."""
    return any(k in annotations for k in (PODMAN_NAME, CRIO_NAME, CRIU + "container.name"))


def recorded(annotations: Mapping[str, str]) -> dict[str, str]:
    """The host facts an image records (podman's names first, checkpointctl's as fallback)."""
    out = {}
    for key in ("host_arch", "host_kernel", "criu_version", "runtime_version", "cgroups_version"):
        podman, criu_key = _FIELDS[key]
        value = annotations.get(PODMAN + podman) or annotations.get(CRIU + criu_key)
        if value:
            out[key] = value
    return out


# CRI-O's restore (server/container_restore.go) parses this spec.dump annotation as the
# container's original annotations and fails without it; it pulls config.dump's rootfsImageName.
CRIO_SPEC_ANNOTATIONS = "io.kubernetes.cri-o.Annotations"


def spec_for_crio(spec: JSONObject) -> JSONObject:
    """spec.dump with the annotation CRI-O's restore insists on (its original annotations as JSON)."""
    current = spec.get("annotations")
    if not isinstance(current, dict):
        current = {}
    if CRIO_SPEC_ANNOTATIONS in current:
        return spec
    import json
    return {**spec, "annotations": {**current, CRIO_SPEC_ANNOTATIONS: json.dumps(current, sort_keys=True)}}


def crio_restorable(spec: JSONObject | None, config_dump: JSONObject | None) -> bool:
    """Whether CRI-O can restore the checkpoint: it needs both of the above."""
    ann = (spec or {}).get("annotations") or {}
    return CRIO_SPEC_ANNOTATIONS in ann and bool((config_dump or {}).get("rootfsImageName"))
