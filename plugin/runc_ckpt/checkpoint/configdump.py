"""What a checkpoint archive says about its container: podman's config.dump and the tool versions.

runc knows a container only by ID, so the engine-level fields podman keeps
(name, image) are taken from the annotations engines put in the spec (CRI-O's
and containerd's CRI plugin), else left empty as podman accepts. The runtime
name is ours: podman insists on the same name at `restore --import`.
"""

from __future__ import annotations

import subprocess
from datetime import datetime

from runc_ckpt import __version__
from runc_ckpt.frontend.errors import RuncCkptError
from runc_ckpt.runtime import ocispec
from runc_ckpt.runtime.containerstate import ContainerState
from runc_ckpt.runtime.criu import features

RUNTIME_NAME = "runc-ckpt"
# config.dump fields from the annotations engines set (CRI-O, containerd's CRI plugin); else empty.
_ANNOTATED = {
    "name": ("io.kubernetes.cri-o.Name", "io.kubernetes.cri.container-name"),
    "rootfsImage": ("io.kubernetes.cri-o.Image", "io.kubernetes.cri.image-name"),
    "rootfsImageRef": ("io.kubernetes.cri-o.ImageRef",),
    "rootfsImageName": ("io.kubernetes.cri-o.ImageName", "io.kubernetes.cri.image-name"),
}
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def config_dump(st: ContainerState, spec: dict, now: datetime) -> dict:
    """podman's config.dump for a container runc knows only by ID."""
    annotations = ocispec.annotations(spec)

    def annotated(field: str, default: str = "") -> str:
        return next((annotations[k] for k in _ANNOTATED[field] if annotations.get(k)), default)

    return {
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


def _first_line_version(argv: list[str], prefix: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             check=False, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in out.splitlines():
        if line.lower().startswith(prefix):
            return line[len(prefix):].strip()
    return "unknown"


def versions(runc: str, criu: str) -> dict[str, str]:
    try:
        criu_path = features.resolve(criu)
    except RuncCkptError:
        criu_path = criu
    return {"runc-ckpt": __version__,
            "runc": _first_line_version([runc, "--version"], "runc version"),
            "criu": _first_line_version([criu_path, "--version"], "version:")}
