"""After the dump: a checkpoint's images packaged as an archive (--export, auto-export) or an image.

Apart from the flow because none of it is needed before runc has dumped: the
config.dump, the manifest's versions and needs, the export writer and their
imports (~25 ms) load in metadata.hostfacts' thread while runc dumps
(checkpoint.flow names this module there), not in the flow's own start-up.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from runc_ckpt.archive import export as exporter
from runc_ckpt.archive import layout
from runc_ckpt.base import runclog
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.checkpoint import autoexport
from runc_ckpt.checkpoint.request import CheckpointRequest
from runc_ckpt.checkpoint.target import Target
from runc_ckpt.metadata import configdump, hostfacts, needs
from runc_ckpt.runtime.criu import cpuinfo
from runc_ckpt.settings import config
from runc_ckpt.state import predump

if TYPE_CHECKING:
    from runc_ckpt.checkpoint.incremental_export import Base
    from runc_ckpt.image.reference import Reference


def auto_export(runc: str, inv: Invocation, cfg: config.Config, req: CheckpointRequest, t: Target,
                 facts: hostfacts.HostFacts | None = None) -> None:
    """Policy's archive in export_dir, then retention.

    runc already succeeded and the caller has its images, so a failure here is
    a warning: failing the call would make the engine believe that a
    checkpoint which happened (and may have stopped the container) did not.
    """
    pol = t.policy
    assert pol.export_dir is not None
    try:
        predump.check_self_contained(t.plan)
        autoexport.prepare(pol.export_dir)
        path = autoexport.archive_path(pol.export_dir, t.state.id, time.time(), pol.compress)
        export(runc, inv, cfg, req, t, path, tidy=False, with_parent=True, facts=facts)
        for removed in autoexport.prune(pol.export_dir, t.state.id, pol.retention):
            runclog.debug(inv.flags, f"auto-export: retention removed {removed}")
    except RuncCkptError as e:
        runclog.warn(inv.flags, f"auto-export of {t.state.id} to {pol.export_dir}: {e}")


def export(runc: str, inv: Invocation, cfg: config.Config, req: CheckpointRequest, t: Target,
           archive: str, tidy: bool = True, image_ref: Reference | None = None, with_parent: bool = False,
           target_checked: bool = False, facts: hostfacts.HostFacts | None = None,
           base: Base | None = None) -> None:
    """Write the archive (or, with image_ref, the image); on failure the images stay and the error says where.

    with_parent: a dump taken --with-previous also stores its pre-dump as
    pre-checkpoint/, so the archive restores alone (auto-export: no other
    archive holds that pre-dump). An explicit --export keeps podman's layout:
    the pre-checkpoint travels in its own archive (--import-previous). target_checked: checkpoint()
    ran exporttarget.check_target on `archive` before the dump, so the write does not probe it again.
    facts: the host's facts gathered while runc dumped (None: gathered now). base: the parent chain of
    --incremental-from; the archive then holds only the pages changed since it (P1', built here).
    """
    plan = t.plan
    ereq = export_request(runc, inv, req, t, archive, with_parent, facts)._replace(target_checked=target_checked)
    try:
        if base is not None:
            image_dir, built = base.build(plan.final_dir)
            ereq = ereq._replace(image_dir=image_dir, parent=base.link.to_json())
            runclog.debug(inv.flags, f"export: {built.kept} of {built.pages} pages changed since "
                                     f"{base.link.archive} (chain depth {base.link.depth})")
        if image_ref is not None:
            # Imported here, not at the top: image/'s writers cost ~14 ms only --create-image needs (test_layering LAZY).
            from runc_ckpt.image import create
            # Encrypted, the plain layer is written to tmpfs beside the images, then sealed by skopeo.
            warnings = create.create(image_ref, ereq, plan.memory_dir or cfg.state_dir, inv.flags)
        else:
            warnings = exporter.write_archive(ereq).warnings
    except RuncCkptError as e:
        raise RuncCkptError(f"{e}; the checkpoint images are kept in {plan.final_dir}") from None
    for warning in warnings:
        runclog.warn(inv.flags, f"export: {warning}")
    if tidy and not req.keep:
        predump.tidy_after_export(plan)


def export_request(runc: str, inv: Invocation, req: CheckpointRequest, t: Target, archive: str,
                   with_parent: bool = False, facts: hostfacts.HostFacts | None = None) -> exporter.ExportRequest:
    """What an export of this container writes (to a file, an image, or a stream: runc_ckpt.migrate);
    facts: this host's tool versions and cpuinfo.img, gathered while runc dumped (None: asked now)."""
    plan = t.plan
    pol = t.policy
    roots = configdump.volume_roots(t.state, list(pol.volume_roots))
    dump = configdump.config_dump(t.state, t.spec, datetime.now(UTC), roots)
    compress = pol.compress
    opts = {"compress": compress, "leave_running": req.leave_running,
            "pre_checkpoint": plan.pre_dump, "with_previous": req.with_previous,
            "tcp_established": pol.tcp_established, "file_locks": pol.file_locks,
            "ignore_rootfs": pol.ignore_rootfs, "ignore_volumes": pol.ignore_volumes}
    return exporter.ExportRequest(
        archive=archive, compress=compress, level=pol.compress_level, threads=pol.compress_threads,
        image_dir=plan.final_dir,
        image_member=layout.PRE_CHECKPOINT_DIR if plan.pre_dump else layout.CHECKPOINT_DIR,
        work_dir=plan.work_dir, bundle=t.state.bundle, spec=t.spec, rootfs=t.state.rootfs,
        rootfs_source=t.rootfs_source,
        config_dump=dump, include_rootfs=not pol.ignore_rootfs and not plan.pre_dump,
        include_volumes=not pol.ignore_volumes, volume_roots=roots,
        manifest_fields={"versions": (facts.versions if facts else configdump.versions)(runc, inv.flags.criu),
                         "host": configdump.host(),
                         "container": {"id": t.state.id, "name": dump["name"]},
                         "options": opts,
                         # issue 21: what the restore will need of its host (metadata.needs)
                         **({} if plan.pre_dump else {"needs": needs.to_json(needs.record(
                             plan.final_dir, t.spec, t.state.rootfs, t.rootfs_source, inv.flags.criu,
                             inv.flags.systemd_cgroup, {"name": dump.get("rootfsImageName", ""),
                                                        "id": dump.get("rootfsImageID", "")},
                             not pol.ignore_rootfs, facts.cpuinfo if facts else cpuinfo.dump))})},
        flags=inv.flags, extra_volumes=pol.extra_volumes, seal_for=t.seal_for, sign_key=t.sign_key,
        previous_dir=predump.parent_dir(plan) if with_parent and plan.parent_path is not None and not plan.pre_dump
        else None)
