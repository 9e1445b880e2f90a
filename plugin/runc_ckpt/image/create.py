"""`checkpoint --create-image REF`: the export archive written as the one layer of an OCI image.

The layer is the archive's own tar stream (same writer, same streaming, same
manifest), hashed on the way for the layer digest and diff_id, so the image
costs no second pass over the checkpoint; the annotations are podman's,
CRI-O's, checkpointctl's and ours (image.annotations).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from runc_ckpt.archive.export import ExportRequest, write_archive
from runc_ckpt.base import runclog
from runc_ckpt.base.globalflags import GlobalFlags
from runc_ckpt.image import annotations as image_annotations
from runc_ckpt.image import oci, transport
from runc_ckpt.image.reference import Reference
from runc_ckpt.runtime import hostinfo


def create(ref: Reference, req: ExportRequest, scratch_parent: str, flags: GlobalFlags | None) -> Sequence[str]:
    """Write the checkpoint described by req as an image at ref; returns the export's warnings."""
    host = hostinfo.current()
    warnings: list[str] = []
    # Encrypted: skopeo seals the layer with ocicrypt, the format image tools read; the layer
    # itself is our plain archive, as in any checkpoint image.
    encrypt_for = tuple(f"jwe:{k.path}" for k in req.seal_for)
    req = req._replace(spec=image_annotations.spec_for_crio(req.spec), seal_for=(), digests=True)

    def make_layer(directory: str) -> tuple[oci.Layer, dict[str, str]]:
        result = write_archive(req._replace(archive=os.path.join(directory, f".runc-ckpt-layer-{os.getpid()}")))
        warnings.extend(result.warnings)
        assert result.sha256 and result.diff_id
        layer = oci.Layer(result.archive, result.sha256, result.diff_id, result.size, req.compress)
        versions = req.manifest_fields.get("versions") or {}
        return layer, image_annotations.build(req.config_dump, versions, host, result.manifest_sha256)

    created = runclog.rfc3339(time.time(), utc=True)
    digest = transport.publish(ref, make_layer, created, host.arch, scratch_parent, flags, encrypt_for)
    if flags is not None:
        runclog.debug(flags, f"checkpoint image {ref}: manifest {digest}")
    return warnings
