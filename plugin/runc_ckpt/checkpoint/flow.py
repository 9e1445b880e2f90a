"""The checkpoint flow: runc's checkpoint with podman's checkpoint flags on top.

The flow is split so that every bad input is refused before any container is
touched: parse and cross-check the flags, check the --export target, pick the
containers (names, --all, --latest) and read each one's state and config.json,
plan image/work/parent paths (predump), check CRIU memory tracking when a
pre-dump is involved; only then run `runc checkpoint` for each container,
export, tidy and print the statistics.

runc's own flags, and flags we do not know, are forwarded as the caller
spelled them and in the caller's order (podman, CRI-O and containerd shapes
pass through unchanged; runc judges what it does not know), plus the flags
our options imply (--image-path/--work-path into the state dir, --pre-dump,
--parent-path). A call that uses none of our features writes where runc
writes: ./checkpoint, with CRIU's work files in the image dir.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence

from runc_ckpt.archive import exporttarget
from runc_ckpt.base import goflags, realrunc, runclog, signals
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.checkpoint import stats_report
from runc_ckpt.checkpoint.request import CheckpointRequest
from runc_ckpt.checkpoint.target import Target
from runc_ckpt.metadata import hostfacts
from runc_ckpt.rootfs import diff
from runc_ckpt.runtime import containerstate, faults, lock, logrelay, ocispec, volumes
from runc_ckpt.runtime.containerstate import ContainerState
from runc_ckpt.settings import config, hooks, policy
from runc_ckpt.state import intent, predump, recovery, settle, tmpfsimages

TYPE_CHECKING = False  # typing's flag, without importing typing (base/record.py says why)
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from runc_ckpt.checkpoint.incremental_export import Base
    from runc_ckpt.image.reference import Reference
    from runc_ckpt.trust.sealkeys import SealKey


# What runs after the dump (the export writer among its imports): metadata.hostfacts loads it while
# runc dumps, where the flow only waits.
PACKAGING = "runc_ckpt.checkpoint.packaging"
# --print-stats' reader of CRIU's stats-dump (checkpoint.stats_report), loaded there too.
STATS_READER = "runc_ckpt.runtime.criu.stats"


class RuncFailed(Exception):
    """runc failed and already logged its error: exit with its code, add no log line."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


# A caller that writes the archive itself (runc_ckpt.migrate.sender, --export -): it gets the one
# container under its lock, with its runc flags, and returns the exit code.
Stream = Callable[[str, "Target", list[str]], int]


def checkpoint(inv: Invocation, cfg: config.Config, req: CheckpointRequest, started: float | None = None,
               stream: Stream | None = None) -> int:
    """Checkpoint the containers the request names; returns the exit code.

    `cfg` is loaded (and its log level applied) by the caller; `started` is when the call began
    (--print-stats). With req.streaming the archive is `stream`'s to write.
    """
    started = time.monotonic() if started is None else started
    if req.streaming and stream is None:
        raise RuncCkptError("internal error: --export - needs the stream sender (runc_ckpt.migrate.sender)")
    archive = None
    if req.export and not req.streaming:
        archive = exporttarget.check_target(req.export)
        if req.incremental_from is not None:
            # Imported here, not at the top: the chain reader and page hashing (~16 ms) only --incremental-from
            # needs (test_layering LAZY).
            from runc_ckpt.checkpoint import incremental_export
            incremental_export.check_parent(req.incremental_from, archive)
    image_ref = check_image_target(req.create_image) if req.create_image else None
    runc = realrunc.find(cfg.runc)
    # What a killed run (runc and CRIU included) left for a named container is repaired before its state
    # is read: a frozen container thawed, a stranded dump recovered, a runc dir without state.json gone.
    for name in dict.fromkeys(req.containers):
        if settle.needed(cfg.state_dir, inv.flags.root, name):
            # A state asked ahead (commands.checkpoint) predates this: the lock may have been waited for while
            # another call (a migration, a restore) changed the container, and a repair changes it.
            containerstate.forget()
            with lock.hold(cfg.state_dir, lock.container_key(inv.flags.root, name), req.operation(),
                           cfg.lock_timeout, what=f"container {name}"):
                for message in settle.settle(runc, inv.flags.root, cfg.state_dir, name, None, cfg.lock_timeout):
                    runclog.warn(inv.flags, message)
    try:
        chosen = select(runc, inv, req)
    except RuncCkptError as e:
        # A container a killed checkpoint stopped is gone: say where its images are and how to restore them.
        hint = next((h for n in req.containers if (h := settle.gone_hint(cfg.state_dir, inv.flags.root, n))),
                    None)
        if hint is None:
            raise
        raise RuncCkptError(f"{e}; {hint}", e.exit_code) from None
    flag = "--export" if req.export else "--create-image"
    if (req.export or image_ref) and not chosen:
        raise RuncCkptError(f"{flag}: there is no running container under {inv.flags.root}")
    if (req.export or image_ref) and len(chosen) > 1:
        raise RuncCkptError(f"{flag} writes one container's checkpoint, but {len(chosen)} containers "
                            f"were chosen ({', '.join(s.id for _, s in chosen)})")
    caller = predump.CallerPaths(image_path=req.image_path, work_path=req.work_path,
                                 parent_path=req.parent_path, pre_dump=req.pre_dump)
    if len(chosen) > 1 and (caller.image_path or caller.work_path):
        raise RuncCkptError("--image-path/--work-path name one container's directories: "
                            "give one container, or leave them out to use the state dir")
    in_state_dir = bool(archive or req.streaming or image_ref or req.pre_checkpoint or req.with_previous
                        or req.all or req.latest or len(chosen) > 1)
    # Node-level encryption (a node key, an engine's plain call into its images dir): CRIU dumps into tmpfs,
    # the dir gets the images sealed (trust.sealeddir). A pre-dump chain is not sealed (not covered).
    seal_dir = bool(cfg.encryption_key) and not in_state_dir and caller.image_path is not None \
        and not caller.pre_dump and caller.parent_path is None
    # A call using none of our features is runc's own (images in ./checkpoint or the caller's paths):
    # like runc it takes no lock and writes nothing in our state dir.
    keys = {lock.container_key(inv.flags.root, st.id): f"container {st.id}" for _, st in chosen} \
        if in_state_dir or seal_dir else {}
    with lock.hold_all(cfg.state_dir, keys, req.operation(), cfg.lock_timeout):
        for _, st in chosen if in_state_dir or seal_dir else []:
            for message in recover(runc, cfg, st, inv.flags.root):
                runclog.warn(inv.flags, message)
        return _locked(runc, inv, cfg, req, chosen, caller, archive, image_ref, in_state_dir, started, stream,
                       seal_dir)


def recover(runc: str, cfg: config.Config, st: ContainerState, root: str) -> list[str]:
    """What killed runs left for this container (call with its lock held): images, staging dirs."""
    done = settle.settle(runc, root, cfg.state_dir, st.id, st.bundle, cfg.lock_timeout)
    return done + recovery.resolve_bundle(runc, st.bundle, st.rootfs or None, allow_undo=False)


def _signing_key(req: CheckpointRequest, cfg: config.Config) -> ec.EllipticCurvePrivateKey | None:
    """The key that signs what this call packages: the flag's, else the node's (runc-ckpt.yaml); None: unsigned.

    Read before anything is touched, so a wrong passphrase refuses the call rather than an unsigned archive.
    """
    path: str | None
    if req.sign_key is not None:
        path, passphrase_file = req.sign_key, req.sign_passphrase_file
    else:
        path, passphrase_file = cfg.sign_by_sigstore_private_key, cfg.sign_passphrase_file
    if path is None or req.pre_dump or req.pre_checkpoint:
        return None                 # a pre-dump is never packaged: nothing to sign
    # Imported here, not at the top: trust/ (7 modules, ~1 ms) only where a key is named (test_layering LAZY).
    from runc_ckpt.trust import keys
    return keys.load_private_key(path, keys.read_passphrase_file(passphrase_file))


def _recipients(req: CheckpointRequest, cfg: config.Config) -> tuple[SealKey, ...]:
    """Who the archive is sealed for (trust.sealkeys.recipients); () when no key is named."""
    if not req.encryption_keys and not cfg.encryption_key:
        return ()
    # Imported here, not at the top: trust/ only where a key is named (see _signing_key).
    from runc_ckpt.trust import sealkeys
    return sealkeys.recipients(req.encryption_keys, cfg.encryption_key)


def _locked(runc: str, inv: Invocation, cfg: config.Config, req: CheckpointRequest,
            chosen: list[tuple[str, ContainerState]], caller: predump.CallerPaths, archive: str | None,
            image_ref: Reference | None, in_state_dir: bool, started: float,
            stream: Stream | None, seal_dir: bool = False) -> int:
    """The rest of checkpoint(), under the containers' locks."""
    # Keys are read before anything is touched: a bad key refuses the call, and an archive that
    # should be encrypted is never written in the clear.
    seal_for = _recipients(req, cfg)
    sign_key = _signing_key(req, cfg)
    # CRIU dumps into tmpfs, never to disk (state/tmpfsimages), for an encrypted export and for node-level
    # encryption of the caller's images dir (seal_dir: decided once, in checkpoint(); the plan records it).
    encrypted_export = bool(seal_for and (archive or req.streaming or image_ref))
    if encrypted_export:
        check_plaintext_stays_off_disk(req, caller)
    on_tmpfs = encrypted_export or seal_dir
    # Policy and hooks of every container are settled before any is touched:
    # a bad annotation or hook definition refuses the whole call.
    hook_defs = hooks.load(cfg.hooks_dir)
    targets = []
    for raw, st in chosen:
        spec = ocispec.load(st.bundle)
        annotations = ocispec.annotations(spec)
        pol = policy.effective(cfg, annotations, req.policy.given())
        runclog.debug(inv.flags, f"{st.id}: {pol.describe()}")
        volumes.check_listed(spec, pol.volume_roots, pol.extra_volumes)
        targets.append(Target(raw, st, spec,
                              predump.plan(cfg.state_dir, st.id, caller, req.pre_checkpoint,
                                           req.with_previous, in_state_dir,
                                           tmpfsimages.choose() if on_tmpfs else None),
                              pol,
                              hooks.select(hook_defs, "precheckpoint", annotations, pol.hooks),
                              hooks.select(hook_defs, "postcheckpoint", annotations, pol.hooks),
                              seal_for=seal_for, sign_key=sign_key))
    if req.export or image_ref:
        for t in targets:
            predump.check_self_contained(t.plan)
    if targets and (targets[0].plan.pre_dump or targets[0].plan.parent_path is not None):
        # Imported here, not at the top: CRIU's feature probe only a dump on a parent needs.
        from runc_ckpt.runtime.criu import features
        features.require_memory_tracking(inv.flags.criu, cfg.state_dir, req.why_tracking())
    results = []
    try:
        if stream is not None:
            return stream(runc, targets[0], _runc_args(req, targets[0], 1))
        with contextlib.ExitStack() as bases:
            if req.incremental_from is not None and archive is not None and targets:
                t = targets[0]
                t.base = _incremental_base(inv, cfg, req, t, req.incremental_from, archive)
                bases.callback(t.base.close)
            with signals.deferred() as deferral:
                for t in targets:
                    results.append(checkpoint_one(runc, inv, cfg, req, _runc_args(req, t, len(targets)),
                                                  t, archive, image_ref, deferral))
    except RuncFailed as e:
        return e.code
    finally:
        for t in targets:
            _drop_plaintext(runc, inv, t)
    if req.print_stats:
        sys.stdout.write(stats_report.render(time.monotonic() - started, results))
    return 0


def _incremental_base(inv: Invocation, cfg: config.Config, req: CheckpointRequest, t: Target, parent: str,
                      archive: str) -> Base:
    """--incremental-from: the parent chain read, verified, judged and indexed before the container is touched."""
    # Imported here, not at the top: only --incremental-from needs it (~16 ms, test_layering LAZY).
    from runc_ckpt.checkpoint import incremental_export
    from runc_ckpt.trust import policy as trustpolicy
    assert t.plan.container_dir is not None     # an --export's images are in the state dir
    return incremental_export.prepare(parent, archive, t.plan.container_dir, trustpolicy.load(cfg.signature_policy),
                                      (*req.decryption_keys, *cfg.decryption_key), inv.flags)


def check_plaintext_stays_off_disk(req: CheckpointRequest, caller: predump.CallerPaths) -> None:
    """Refuse what would keep an encrypted checkpoint's memory on disk in the clear, before anything is touched."""
    why = ("--keep" if req.keep else "--image-path" if caller.image_path else
           "--pre-checkpoint" if req.pre_checkpoint or caller.pre_dump else
           "--with-previous" if req.with_previous else "--parent-path" if caller.parent_path else None)
    if why is not None:
        raise RuncCkptError(f"{why} would keep the checkpoint's memory on disk in the clear, but this export is "
                            "encrypted (its images live on tmpfs only until the export is written): leave it out")


def _drop_plaintext(runc: str, inv: Invocation, t: Target) -> None:
    """At the end of the call: wipe the tmpfs images, unless they are the container's only copy (issue 19)."""
    plan = t.plan
    if plan.memory_dir is None or plan.record_dir is None or not os.path.lexists(plan.memory_dir):
        return
    tmpfsimages.sweep(plan.record_dir, containerstate.exists(runc, inv, t.state.id), only=plan.memory_dir)


def _seal_caller_images(t: Target) -> None:
    """Node-level encryption: the tmpfs images sealed into the caller's images dir, then wiped.

    If sealing fails, the tmpfs images stay (without --leave-running they are the container's only copy)
    and the error says where.
    """
    plan = t.plan
    assert plan.memory_dir is not None and plan.record_dir is not None
    faults.point("tmpfs-seal")
    # Imported here, not at the top: trust/ only where a key is named (see _signing_key).
    from runc_ckpt.trust import sealeddir
    try:
        sealeddir.seal_into(plan.image_dir, plan.final_dir, t.seal_for)
    except RuncCkptError as e:
        raise RuncCkptError(f"{e}; the checkpoint's images are kept on tmpfs in {plan.image_dir}") from None
    tmpfsimages.wipe(plan.record_dir, plan.memory_dir)


def check_image_target(text: str) -> Reference:
    """The parsed --create-image reference, once we know it can be written."""
    # Imported here, not at the top: image/'s writers cost ~14 ms only --create-image needs (test_layering LAZY).
    from runc_ckpt.image import reference, transport
    ref = reference.parse(text, "--create-image")
    transport.check_target(ref)
    return ref


def select(runc: str, inv: Invocation, req: CheckpointRequest) -> list[tuple[str, ContainerState]]:
    """(name as given, state) of each container to checkpoint, each one checkpointable."""
    if req.all:
        return [(c.id, c) for c in containerstate.running(containerstate.list_all(runc, inv))]
    if req.latest:
        newest = containerstate.latest(containerstate.list_all(runc, inv))
        if newest is None:
            raise RuncCkptError(f"--latest: there are no containers under {inv.flags.root}")
        newest.check_checkpointable()
        return [(newest.id, newest)]
    chosen: list[tuple[str, ContainerState]] = []
    for name in dict.fromkeys(req.containers):
        st = containerstate.state(runc, inv, name)
        st.check_checkpointable()
        chosen.append((name, st))
    return chosen


def _runc_args(req: CheckpointRequest, t: Target, count: int) -> list[str]:
    """The caller's arguments for this container's `runc checkpoint`, in the caller's order.

    One container named by the caller: its argv as given (minus our own
    flags), so a plain call reaches runc unchanged. Several (or --all,
    --latest): the caller's runc flags, then the container's ID.
    """
    if count == 1 and req.containers:
        return list(req.runc_argv)
    return [*req.runc_flags, *(["--"] if t.state.id.startswith("-") else []), t.state.id]


def checkpoint_one(runc: str, inv: Invocation, cfg: config.Config, req: CheckpointRequest,
                   runc_flags: list[str], t: Target, archive: str | None, image_ref: Reference | None = None,
                   deferral: signals.Deferral | None = None) -> stats_report.ContainerStats:
    """One container's checkpoint, recorded as our intent (state/intent) from before runc freezes the
    container until its images are exported: if the whole tree is killed meanwhile, the next call knows
    that a frozen container is ours to thaw, and a stopped one whose images to name."""
    # (record_dir: an engine's call under node encryption, whose dump is on tmpfs until it is sealed)
    records = t.plan.container_dir or t.plan.record_dir
    with intent.recorded(records, intent.CHECKPOINT, t.state.bundle, inv.flags.root) \
            if records else contextlib.nullcontext():
        return _checkpoint_one(runc, inv, cfg, req, runc_flags, t, archive, image_ref, deferral)


def _checkpoint_one(runc: str, inv: Invocation, cfg: config.Config, req: CheckpointRequest,
                    runc_flags: list[str], t: Target, archive: str | None, image_ref: Reference | None,
                    deferral: signals.Deferral | None) -> stats_report.ContainerStats:
    """checkpoint_one() inside its intent record; deferral reports signals (our lock fds stay ours)."""
    deferral = deferral or signals.Deferral(interrupt=False)
    plan = t.plan
    st = t.state
    hook_state = hooks.state_json(st.id, st.status, st.pid, st.bundle, ocispec.annotations(t.spec))
    hooks.run_stage("precheckpoint", t.pre_hooks, hook_state, inv.flags, t.policy.hook_timeout)
    if deferral.signum is not None:
        raise RuncCkptError(f"interrupted by {deferral.signame} before the checkpoint of {st.id} started: "
                            f"the container is untouched", deferral.exit_code)
    auto_export = t.policy.auto_exports(plan.pre_dump)
    exporting = archive is not None or image_ref is not None or auto_export
    if exporting and not t.policy.ignore_rootfs and not plan.pre_dump:
        # Engines unmount the root as soon as the process ends (podman's cleanup, containerd's
        # shim), which a dump without --leave-running causes: find its overlay dirs while mounted.
        t.rootfs_source = diff.locate(st.rootfs)
    predump.prepare(plan)
    # What the manifest records of this host is gathered while runc dumps (metadata.hostfacts), and the
    # packaging after the dump is loaded there too; the thread starts once runc has been spawned.
    # (zstandard: archive.compression imports it when it first compresses.)
    preload = (PACKAGING, *(("zstandard",) if t.policy.compress == "zstd" else ()),
               *((STATS_READER,) if req.print_stats else ()))
    facts = hostfacts.HostFacts(runc, inv.flags.criu, not plan.pre_dump, cfg.state_dir, preload) \
        if exporting else None
    try:
        return _dump_and_export(runc, inv, cfg, req, runc_flags, t, archive, image_ref, deferral, auto_export,
                                hook_state, facts)
    finally:
        if facts is not None:
            facts.wait()


def _dump_and_export(runc: str, inv: Invocation, cfg: config.Config, req: CheckpointRequest,
                     runc_flags: list[str], t: Target, archive: str | None, image_ref: Reference | None,
                     deferral: signals.Deferral, auto_export: bool, hook_state: dict[str, object],
                     facts: hostfacts.HostFacts | None) -> stats_report.ContainerStats:
    """runc checkpoint, then the exports asked for and the postcheckpoint hooks."""
    plan = t.plan
    if plan.seals_caller_dir:
        runc_flags = goflags.with_value(runc_flags, "image-path", plan.image_dir)
    args = ["checkpoint", *t.policy.runc_flags(req.policy.keys()), *plan.add_flags, *runc_flags]
    fd = req.status_fd
    runclog.debug(inv.flags, f"checkpoint: running {' '.join([runc, *inv.runc_globals, *args])}")
    began = time.monotonic()
    started_at = time.time()
    # Our locks stay ours (close-on-exec): runc would hand them on to CRIU. If we are killed, the next
    # call waits for a runc still working on the container (state/settle).
    result = logrelay.run(runc, inv.runc_globals, args, inv.flags,
                          stdout=sys.stderr if req.print_stats else None,
                          pass_fds=(fd,) if fd >= 0 and _is_open(fd) else (),
                          context=lambda dropped: _failure_context(runc, inv, t, dropped, since=started_at) or None,
                          phase="dump", spawned=facts.start if facts is not None else None)
    runtime_us = stats_report.micros(time.monotonic() - began)
    if result.returncode != 0:
        predump.abandon(plan)
        if result.logged_error:
            # runc's own error line (it names CRIU's log) is the one error the caller gets:
            # a second line would break podman's one-object --log parse. Ours is debug only.
            if inv.flags.debug:
                runclog.debug(inv.flags, _failure_context(runc, inv, t, result.dropped))
            raise RuncFailed(result.returncode)
        context = _failure_context(runc, inv, t, result.dropped)
        raise RuncCkptError(f"runc checkpoint {t.state.id} failed (exit status {result.returncode}); {context}")
    predump.finish(plan)
    if plan.seals_caller_dir:
        _seal_caller_images(t)
    signum = result.signum or deferral.signum
    if signum is not None:
        raise RuncCkptError(f"interrupted by {signal.Signals(signum).name}; the checkpoint of {t.state.id} "
                            f"completed and its images are in {plan.final_dir}", 128 + signum)
    if t.sign_key is not None and not plan.pre_dump and not plan.ours:
        # The caller's images dir carries its own signed manifest: engines copy it into archives of
        # their own. Images in our state dir (--export, streams) travel in our signed archive instead,
        # so they are not hashed a second time (a stream's downtime would pay for it).
        # Imported here, not at the top: trust/ only where a key is named (see _signing_key).
        from runc_ckpt.trust import imagesdir
        imagesdir.sign(plan.final_dir, t.state.id, t.sign_key)
    criu = _criu_stats(inv, plan) if req.print_stats else {}
    if auto_export or archive is not None or image_ref is not None:
        # Imported here, not at the top: loaded in the host-facts thread while runc dumped (PACKAGING).
        from runc_ckpt.checkpoint import packaging
        # Auto-export first: an explicit --export tidies the images away afterwards.
        if auto_export:
            packaging.auto_export(runc, inv, cfg, req, t, facts)
        if archive is not None or image_ref is not None:
            packaging.export(runc, inv, cfg, req, t, archive or "", image_ref=image_ref,
                             target_checked=archive is not None, facts=facts, base=t.base)
    hooks.run_stage("postcheckpoint", t.post_hooks, hook_state, inv.flags, t.policy.hook_timeout)
    return stats_report.ContainerStats(t.state.id, t.raw_input, runtime_us, criu)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _failure_context(runc: str, inv: Invocation, t: Target, dropped: Sequence[str], since: float | None = None) -> str:
    """What runc's error about a failed dump lacks: CRIU's log, the container's state now, runc's
    errors kept out of its log.

    With `since` (runc's own error line, completed through logrelay): "" unless CRIU wrote its log
    after `since` (a usage error or a refusal before the dump is clear as runc says it). Without
    (our own error line): the line says which checkpoint failed.
    """
    dump_log = os.path.join(t.plan.work_dir, "dump.log")
    if since is not None:
        try:
            if os.stat(dump_log).st_mtime < since - 1:
                return ""
        except OSError:
            return ""
        parts = [f"runc-ckpt: CRIU's log is {dump_log}"]
    else:
        parts = [f"checkpoint of {t.state.id} failed"]
        if os.path.exists(dump_log):
            parts.append(f"CRIU's log: {dump_log}")
    try:
        parts.append(f"the container is {containerstate.state(runc, inv, t.state.id).status}")
    except RuncCkptError as e:
        parts.append(f"the container's state: {e}")
    if dropped:
        parts.append("runc also said: " + "; ".join(dropped))
    return "; ".join(parts)


def _criu_stats(inv: Invocation, plan: predump.Plan) -> dict[str, int]:
    try:
        return stats_report.read_criu_stats(plan.work_dir)
    except RuncCkptError as e:
        runclog.warn(inv.flags, f"--print-stats: {e}")
        return {}
