"""`checkpoint --export -`: the archive as one stream on stdout, optionally in two phases.

Member order of a stream (a plain archive's members, podman's names, in an
order that lets the receiver act early; our manifest is still the LAST
member and is verified before anything is applied, so a stream cut or
tampered anywhere applies nothing):

  plain stream:  migrate/hello.json | freeze+dump | checkpoint/..., spec.dump,
                 config.dump, network.status, stats-dump, rootfs-diff.tar,
                 deleted.files, volumes/<v>.tar, manifest
  --pre-copy:    migrate/hello.json, spec.dump, config.dump, rootfs-diff.tar,
                 volumes/<v>.tar, [pre-checkpoint/... (phase 0's memory), pre-checkpoint.1/...
                 (its rounds: what changed since the round before)],
                 migrate/phase1-end.json | freeze+dump | checkpoint/... (with a phase 0:
                 only the changed pages, parent -> ../pre-checkpoint[.N]), network.status,
                 stats-dump, migrate/rootfs-removed.json, migrate/rootfs-delta.tar,
                 deleted.files, migrate/volumes/<v>.removed.json,
                 migrate/volumes/<v>.tar, manifest

Phase 1 of --pre-copy runs while the container runs, so only what changed
after it (migrate.delta) is read while the container is frozen; its memory
crosses there too, after a short pause for the dump (migrate.memory). The hello
goes first so that the receiver's pre-flight check (migrate.hello) runs
before the freeze; with --handshake the sender waits for its go
(migrate.handshake).

Failure: before the dump, the container was never touched. After the dump
(without --leave-running the container is gone), any failure -- a broken
pipe, a stalled receiver, a signal, a receiver that says it could not
restore -- aborts the stream without its end (the receiver discards what it
staged) and restores the container HERE from its images, which are kept
until the receiver confirms. Without a back channel the sender cannot know
whether the target restored, so the images are kept and the log says where.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field

from runc_ckpt.archive import compression, export, layout
from runc_ckpt.archive.writer import DIR, Entry, TarWriter, TreePlan
from runc_ckpt.base import runclog, signals
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.checkpoint import flow, packaging
from runc_ckpt.checkpoint.request import CheckpointRequest
from runc_ckpt.checkpoint.target import Target
from runc_ckpt.metadata import needs
from runc_ckpt.migrate import delta, handshake, hello, lazypages, memory, stream
from runc_ckpt.migrate.request import MigrateSend
from runc_ckpt.rootfs import diff
from runc_ckpt.runtime import containerstate, faults, memscratch, privatetmpfs
from runc_ckpt.runtime.criu import features
from runc_ckpt.settings import config
from runc_ckpt.state import callscratch, intent, predump, settle
from runc_ckpt.trust import seal


@dataclass
class _Phase1:
    """What phase 1 sent: its plan, and per tree the snapshot the delta is taken against."""

    plan: export.Plan
    snapshots: dict[str, delta.Snapshot] = field(default_factory=dict)   # "" = rootfs, else volume name


def send(inv: Invocation, cfg: config.Config, req: MigrateSend, started: float | None = None) -> int:
    """`checkpoint --export -`: the checkpoint flow picks, locks and checks the container, then hands it here."""
    return flow.checkpoint(inv, cfg, req.checkpoint, started,
                           stream=lambda runc, t, runc_flags: _send(runc, inv, cfg, req, runc_flags, t))


def _send(runc: str, inv: Invocation, cfg: config.Config, m: MigrateSend, runc_flags: list[str],
          t: Target) -> int:
    p = m.checkpoint
    timeout = m.stream_timeout
    runc_flags = lazypages.without_lazy_flags(runc_flags, inv.flags, inv.flags.criu)
    req = packaging.export_request(runc, inv, p, t, layout.STDIO)
    out = stream.StreamOut.take_stdout(timeout)
    replies = handshake.Replies() if m.handshake else None
    mode = hello.PRE_COPY if m.pre_copy else hello.PLAIN
    warnings: list[str] = []
    # Encrypted (--encryption-key, or the node key): the compressed stream is sealed as it is written;
    # each flush (the hello, the end of phase 1) seals a short record, so the receiver reads it at once.
    sealer = seal.SealWriter(out, req.seal_for) if req.seal_for else None
    sink = compression.compressing_writer(sealer or out, req.compress, req.level, req.threads)
    tw = TarWriter(sink, on_change=warnings.append)
    dumped = False
    began = time.monotonic()
    first0: memory.Phase0 | None = None
    try:
        with signals.deferred(interrupt=True), contextlib.ExitStack() as scratch_dirs:
            try:
                now = time.time()
                # issue 21: the hello carries the needs known before the freeze (CPU, bind sources, cgroups)
                live = needs.to_json(needs.live(t.spec, inv.flags.criu, inv.flags.systemd_cgroup))
                doc = hello.build(runc, inv.flags.criu, t.state.id, mode, replies is not None, live)
                if req.sign_key is not None:
                    hello.sign(doc, req.sign_key)
                tw.add_bytes(layout.HELLO, json.dumps(doc).encode(), mtime=int(now))
                tw.flush()
                faults.point("hello-sent")
                if replies is not None:
                    handshake.require_go(replies, timeout or None)
                first = _phase1(tw, req, now) if m.pre_copy else None
                places: memory.Places | None = None
                if first is not None:
                    choice = memory.choose(inv.flags.criu, cfg.state_dir, t, m.max_pause)
                    # debug: a failed call's stderr stays its one error line (engines parse it)
                    runclog.debug(inv.flags, memory.describe(choice))
                    if choice.method == features.CONTENT_DIFF:
                        # P0, the rounds and P1' only pass through: tmpfs (runtime/memscratch), and for CRIU's
                        # dumps a private tmpfs (runtime/privatetmpfs) or the container's state dir
                        # (memory.dump_dir); removed however this call ends
                        assert t.plan.container_dir is not None     # CONTENT_DIFF: our images (memory.choose)
                        places = memory.Places(
                            scratch_dirs.enter_context(memscratch.scratch(cfg.state_dir, t.state.id)),
                            scratch_dirs.enter_context(callscratch.scratch(t.plan.container_dir)),
                            scratch_dirs.enter_context(privatetmpfs.mounted()))
                    if choice.method != memory.SKIPPED:
                        first0 = memory.phase0(runc, inv, cfg.state_dir, p, runc_flags, t, choice, places, tw,
                                               int(now))
                    if first0 is not None and first0.index is not None and places is not None:
                        memory.rounds(runc, inv, cfg.state_dir, p, runc_flags, t, first0, places, tw, int(now),
                                      m.max_pause)
                    if first0 is not None and first0.index is not None \
                            and memory.p1_on_tmpfs(cfg.state_dir, t, p):
                        runclog.debug(inv.flags, f"--pre-copy: the freeze dumps into {t.plan.image_dir}")
                    tw.add_bytes(layout.PHASE1_END, b"{}", mtime=int(now))
                tw.flush()
                if first is not None and replies is not None:
                    _wait_phase1(replies)
                faults.point("phase1-sent")
                memory.finish_warming(inv, first0, "freeze's dump")
                before_freeze = out.written
                runclog.debug(inv.flags, f"--export -: {mode}, {before_freeze} bytes sent before the freeze")
                frozen = time.monotonic()
                # Until the stream ends, the images here may be the container's only copy (issue 19).
                intent.begin(str(t.plan.container_dir), intent.STREAM, t.state.bundle, inv.flags.root)
                hasher = memory.hash_while_dumped(first0, t.plan.image_dir)
                if hasher is not None:
                    scratch_dirs.callback(hasher.close)
                flow.checkpoint_one(runc, inv, cfg, p, runc_flags, t, None)
                dumped = not p.leave_running
                faults.point("dumped")
                _phase2(tw, memory.freeze_images(first0, req, places.scratch if places else None, inv, hasher),
                        first, now)
                tw.close()
                sink.close()
                if sealer is not None:
                    sealer.close()
                faults.point("stream-sent")
                out.finish()
                intent.end(str(t.plan.container_dir), intent.STREAM)
            except signals.Interrupted as e:
                raise RuncCkptError(f"interrupted by {e.signame}") from None
    except (RuncCkptError, OSError, flow.RuncFailed) as e:
        out.close()                        # no end marker: the receiver discards what it staged
        if isinstance(e, flow.RuncFailed):
            intent.end(str(t.plan.container_dir), intent.STREAM)
            raise                          # runc logged its error; the container was not dumped
        why = stream.describe_write_error(e) if isinstance(e, OSError) else str(e)
        after = _after_failure(runc, inv, p, t, dumped)
        intent.end(str(t.plan.container_dir), intent.STREAM)
        raise RuncCkptError(f"--export -: {why}; {after}") from None
    for w in warnings:
        runclog.warn(inv.flags, f"export: {w}")
    pause = (f", phase-0 pause {first0.longest_pause:.3f} s (the longest of {max(len(first0.rounds), 1)} "
             f"memory dumps)" if first0 is not None else "")
    runclog.debug(inv.flags, f"--export -: {out.written} bytes sent, {out.written - before_freeze} of them in "
                             f"{time.monotonic() - frozen:.3f} s after the freeze{pause}, "
                             f"{time.monotonic() - began:.3f} s in all")
    if replies is None:
        if dumped:
            # Recorded, so that a later call here still names the images and the call that restores them.
            intent.begin(str(t.plan.container_dir), intent.SENT, t.state.bundle, inv.flags.root)
            runclog.log(inv.flags, "info", f"--export -: stream sent; with no back channel (--handshake) the "
                                           f"images stay in {t.plan.final_dir} until you delete them (if the "
                                           f"target failed, restore them here with "
                                           f"`{settle.restore_command(inv.flags.root, t.state.bundle, t.state.id)}`)")
        return 0
    try:
        verdict, reason = replies.expect(handshake.RESTORED, None)
    finally:
        replies.close()
    if verdict:
        if dumped and not p.keep:
            predump.tidy_after_export(t.plan)
        return 0
    if verdict is None:
        raise RuncCkptError(f"--export -: the stream was sent, but {reason}: whether the target restored "
                            f"is unknown; the images stay in {t.plan.final_dir}")
    raise RuncCkptError(f"--export -: the receiver could not restore: {reason}; "
                        f"{_after_failure(runc, inv, p, t, dumped)}")


def _phase1(tw: TarWriter, req: export.ExportRequest, now: float) -> _Phase1:
    """While the container runs: spec.dump and config.dump (the receiver places volumes by them), trees;
    the memory (migrate.memory) and the end of phase 1 follow."""
    plan = export.plan(req)              # its images are not dumped yet: only the trees are used
    first = _Phase1(plan)
    mtime = int(now)
    tw.add_bytes(layout.SPEC_DUMP, export.json_member(req.spec), mtime=mtime)
    tw.add_bytes(layout.CONFIG_DUMP, export.json_member(req.config_dump), mtime=mtime)
    if plan.rootfs is not None:
        first.snapshots[""] = delta.snapshot(plan.rootfs.tree)
        tw.add_tree(layout.ROOTFS_DIFF, plan.rootfs.tree, mtime)
    if plan.volumes:
        tw.add_entry(Entry(layout.VOLUMES_DIR, DIR, 0o700, mtime=mtime))
    for name, tree in plan.volumes.items():
        first.snapshots[name] = delta.snapshot(tree)
        tw.add_tree(layout.volume_member(name), tree, mtime)
    return first


def _wait_phase1(replies: handshake.Replies) -> None:
    """Freeze only once the receiver has staged phase 1: its backlog would otherwise be downtime."""
    verdict, reason = replies.expect(handshake.PHASE1, None)
    if not verdict:
        raise RuncCkptError(f"the receiver did not stage phase 1: {reason}")


def _phase2(tw: TarWriter, req: export.ExportRequest, first: _Phase1 | None, now: float) -> None:
    """While the container is frozen (dumped): the images and, after a phase 1, only what changed."""
    plan = export.plan(req)
    if first is None:
        info, names = export.write_members(tw, req, plan, now)
        export.add_manifest(tw, req, info, names, now)
        return
    mtime = int(now)
    export.add_images(tw, req, plan.images, mtime)
    tw.add_bytes(layout.NETWORK_STATUS, b"null", mtime=mtime)
    stats = os.path.join(req.work_dir, layout.STATS_DUMP)
    if os.path.isfile(stats):
        tw.add_file(layout.STATS_DUMP, stats)
    rootfs_info: dict = {"kind": diff.NONE, "root_mode": None}
    if plan.rootfs is not None and "" in first.snapshots:
        changed, removed = delta.changes(first.snapshots[""], plan.rootfs.tree)
        _say(req, "rootfs", changed, removed)
        tw.add_bytes(layout.ROOTFS_REMOVED, export.json_member(removed), mtime=mtime)
        tw.add_tree(layout.ROOTFS_DELTA, changed, mtime)
        tw.add_bytes(layout.DELETED_FILES, export.json_member(plan.rootfs.deleted), mtime=mtime)
        rootfs_info = {"kind": plan.rootfs.kind, "root_mode": plan.rootfs.root_mode}
    elif req.rootfs and os.path.isdir(req.rootfs):
        rootfs_info["root_mode"] = os.stat(req.rootfs).st_mode & 0o7777
    archived = []
    for name, tree in plan.volumes.items():
        if name not in first.snapshots:
            raise RuncCkptError(f"volume {name} appeared after phase 1")
        changed, removed = delta.changes(first.snapshots[name], tree)
        _say(req, f"volume {name}", changed, removed)
        tw.add_bytes(layout.volume_removed(name), export.json_member(removed), mtime=mtime)
        tw.add_tree(layout.volume_delta(name), changed, mtime)
        archived.append(name)
    export.add_manifest(tw, req, rootfs_info, archived, now)


def _say(req: export.ExportRequest, what: str, changed: TreePlan, removed: list[str]) -> None:
    if req.flags is not None:
        runclog.debug(req.flags, f"--pre-copy: {what}: {len(changed.entries)} entries resent "
                                 f"({changed.size} bytes), {len(removed)} removed since phase 1")


def _after_failure(runc: str, inv: Invocation, p: CheckpointRequest, t: Target, dumped: bool) -> str:
    """Put the container back here if the dump stopped it; say what state things are in."""
    if not dumped and not p.leave_running:
        # A signal or hook failure right after a successful dump ends checkpoint_one with an error.
        dumped = not containerstate.exists(runc, inv, t.state.id) and os.path.exists(os.path.join(t.plan.final_dir, layout.INVENTORY))
    if not dumped:
        return f"container {t.state.id} keeps running here; the target keeps nothing"
    plan = t.plan
    argv = [runc, *inv.runc_globals, "restore", "--detach", "--image-path", plan.final_dir,
            "--work-path", plan.work_dir, "--bundle", t.state.bundle, *_restore_flags(p, t), t.state.id]
    runclog.debug(inv.flags, f"--export -: restoring here: {' '.join(argv)}")
    # Recorded like restore --import's runc restore: a runc that outlives us (killed alone) is waited for
    # and its half-restored leftovers repaired by the next call (state/settle gates its /proc scan on it).
    with intent.recorded(str(plan.container_dir), intent.RESTORE, t.state.bundle, inv.flags.root):
        rc = subprocess.run(argv, stdin=subprocess.DEVNULL, check=False).returncode
    if rc == 0:
        return (f"container {t.state.id} was restored here from its images (kept in {plan.final_dir}); "
                "the target keeps nothing")
    return (f"restoring container {t.state.id} here failed too (runc exit status {rc}); its images are kept "
            f"in {plan.final_dir}")


def _restore_flags(p: CheckpointRequest, t: Target) -> list[str]:
    """The dump's options that its restore must repeat."""
    wanted = {"--tcp-established": t.policy.tcp_established, "--file-locks": t.policy.file_locks,
              "--ext-unix-sk": p.ext_unix_sk, "--shell-job": p.shell_job}
    return [flag for flag, on in wanted.items() if on]
