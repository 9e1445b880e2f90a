"""`runc-ckpt image build ARCHIVE REF`: turn a checkpoint archive into a checkpoint image.

The archive may be ours, podman's export, a CRI-O/kubelet checkpoint
(/var/lib/kubelet/checkpoints/*.tar: uncompressed, with bind.mounts, dump.log
and the container log) or a containerd CRI one (status.dump, status): all
share podman's member names, so the archive's tar stream becomes the layer
unchanged, recompressed as asked. It is read once to verify it (layout,
manifest if any, safe member names: it is untrusted) and once to write the
layer (the inner trees, rootfs-diff.tar and volumes, are copied as they are
and checked entry by entry when the image is restored); the annotations come
from its config.dump, spec.dump and manifest.
"""

from __future__ import annotations

import contextlib
import os
import time

from runc_ckpt.archive import compression, layout, reader, summary
from runc_ckpt.archive.export import HashingWriter
from runc_ckpt.base import runclog
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import GlobalFlags
from runc_ckpt.base.jsondoc import JSONObject
from runc_ckpt.image import annotations as image_annotations
from runc_ckpt.image import oci, transport
from runc_ckpt.image.reference import Reference
from runc_ckpt.runtime import hostinfo

_CHUNK = 1 << 20
# The engines' annotations in spec.dump that name the container and its image.
_SPEC_NAME = ("io.kubernetes.cri-o.Name", "io.kubernetes.cri.container-name")
_SPEC_IMAGE = ("io.kubernetes.cri-o.ImageName", "io.kubernetes.cri.image-name")


def _engine_dump(staged: reader.Staged) -> JSONObject:
    """config.dump's fields for the annotations, filled from spec.dump where the engine left them out."""
    dump = dict(staged.config_dump or {})
    spec_ann = (staged.spec or {}).get("annotations") or {}
    if not dump.get("name"):
        dump["name"] = next((spec_ann[k] for k in _SPEC_NAME if spec_ann.get(k)), dump.get("id") or "")
    if not dump.get("rootfsImageName"):
        dump["rootfsImageName"] = next((spec_ann[k] for k in _SPEC_IMAGE if spec_ann.get(k)), "")
    if not dump.get("name"):
        man = staged.manifest or {}
        dump["name"] = (man.get("container") or {}).get("name") or ""
    return dump


def build(archive: str, ref: Reference, compress: str | None, scratch_parent: str,
          flags: GlobalFlags | None) -> str:
    """Write the image; returns its manifest digest. Refuses an archive that does not verify."""
    if not os.path.isfile(archive):
        raise RuncCkptError(f"image build: archive {archive} does not exist")
    transport.check_target(ref)
    staged, problem = summary.read(archive)
    if problem:
        raise RuncCkptError(f"image build: {problem}")
    algorithm = compress or staged.compression
    dump = _engine_dump(staged)
    if not dump.get("name"):
        raise RuncCkptError(f"image build: archive {archive} does not name its container "
                            f"(no name in {layout.CONFIG_DUMP} or {layout.SPEC_DUMP})")
    manifest_sha = staged.members[layout.MANIFEST].sha256 if layout.MANIFEST in staged.members else None
    versions = dict((staged.manifest or {}).get("versions") or {})
    versions.setdefault("runc-ckpt", "")
    host = _recorded_host(staged)

    def make_layer(directory: str) -> tuple[oci.Layer, dict[str, str]]:
        path = os.path.join(directory, f".runc-ckpt-layer-{os.getpid()}")
        try:
            with open(archive, "rb") as src_raw, open(path, "xb") as out_raw:
                src = compression.decompressing_reader(src_raw)
                file_hash = HashingWriter(out_raw)
                out = compression.compressing_writer(file_hash, algorithm)
                tar_hash = HashingWriter(out)
                for chunk in iter(lambda: src.read(_CHUNK), b""):
                    tar_hash.write(chunk)
                out.close()
                out_raw.flush()
                os.fsync(out_raw.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            raise
        layer = oci.Layer(path, file_hash.sha.hexdigest(), tar_hash.sha.hexdigest(), file_hash.size, algorithm)
        engine = summary.engine_of(staged)
        return layer, image_annotations.build(dump, versions, host, manifest_sha, engine=engine)

    created = runclog.rfc3339(time.time(), utc=True)
    return transport.publish(ref, make_layer, created, host.arch, scratch_parent, flags)


def _recorded_host(staged: reader.Staged) -> hostinfo.HostInfo:
    """The checkpointing host as the manifest records it; else (podman's, CRI-O's archives) this one."""
    here = hostinfo.current()
    rec = (staged.manifest or {}).get("host")
    if not isinstance(rec, dict):
        return here
    dist, _, dist_version = str(rec.get("distribution") or "").partition(" ")
    return hostinfo.HostInfo(str(rec.get("arch") or here.arch), str(rec.get("kernel") or here.kernel),
                             str(rec.get("cgroups") or here.cgroups), dist, dist_version)

