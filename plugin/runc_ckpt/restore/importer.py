"""`restore --import`: stage an archive, verify it, apply it to the bundle, then `runc restore`.

Order, so that bad input never leaves anything half-done and a signal or a
kill -9 at any point leaves the bundle as it was (or the restore finished):
  1. cheap checks: the container ID (runc's rule), the archive readable;
  2. locks (runtime.lock): the bundle, then the ID, so that two restores
     never merge into one rootfs or race for one ID; then what a killed
     restore left in this bundle is resolved (restore.recovery);
  3. checks needing the bundle: config.json readable, base rootfs present,
     the ID not taken;
  4. stage (archive/reader): one streaming read of the archive, or of a
     checkpoint image's layer (image.source; its digest checked on the way),
     into an import dir in the bundle, flock-ed and journaled
     (restore.transaction) -- an encrypted archive's CRIU images into a
     tmpfs dir recorded there (state/tmpfsimages), never onto the disk in
     the clear, wiped when the call ends or by the next call into the
     bundle (restore.recovery) if it is killed; trees are staged
     there too when it is on their filesystem, so the container never sees
     them, else in a staging dir inside the target that is gone before
     runc restore starts;
  5. verify: manifest, an image's annotations against its layer, the
     pre-flight host check (restore.preflight), inventory, a dump's parent
     (its pages there), merge plan, bind sources, and -- when the
     archive's spec.dump becomes the spec -- what it asks of the host
     (restore.untrusted);
  6. apply, journaled: replaced and deleted entries move aside, so a failure
     or a signal (held over the apply by base.signals) rolls back;
  7. `runc restore` with signals forwarded when it runs in the foreground;
     success commits; failure rolls the bundle back, keeps the work dir
     with CRIU's restore.log and says where it is. A container is deleted
     after a failure only when this call provably made it (runc's pid file
     and the bundle).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Sequence
from typing import Self

from runc_ckpt.archive import chain, layout, reader, safeextract
from runc_ckpt.archive.tarstream import FileSource, TarStream
from runc_ckpt.base import realrunc, runclog, signals
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.base.record import Record
from runc_ckpt.image import source as importsource
from runc_ckpt.metadata import configdump, preflight
from runc_ckpt.restore import hostpreflight, podmanspec, untrusted
from runc_ckpt.restore.request import ImportRequest, StreamSession
from runc_ckpt.runtime import atomicfile, containerid, criuconf, faults, leftovers, lock, ocispec, safe_remove
from runc_ckpt.runtime.criu import PARENT_LINK, rootmode, stats
from runc_ckpt.settings import config, hooks, policy
from runc_ckpt.state import intent, journaledmerge, recovery, settle, tmpfsimages, transaction
from runc_ckpt.trust import policy as trustpolicy
from runc_ckpt.trust import verdict

IMPORT_PREFIX = recovery.IMPORT_PREFIX
RESTORE_WORK = "restore-work"
PID_FILE = "runc-ckpt.pid"


def restore(inv: Invocation, req: ImportRequest, session: StreamSession | None = None) -> int:
    """`session` is a stream's (--import -, runc_ckpt.migrate.receiver): stdin, pre-flight on its hello, replies."""
    started = time.monotonic()
    if req.image_path:
        raise RuncCkptError("restore: --image-path cannot be used with --import: the images come from the archive")
    if len(req.containers) > 1:
        raise RuncCkptError(f"restore: expected at most one container ID, got {len(req.containers)}")
    cfg = config.load(inv.flags.config)
    config.apply_log_level(cfg, inv.flags)
    hook_defs = hooks.load(cfg.hooks_dir)
    # The trust policy is read before anything is touched: a bad policy refuses the call.
    trust = trustpolicy.load(req.signature_policy or cfg.signature_policy)
    runc = realrunc.find(cfg.runc)
    bundle = os.path.abspath(req.bundle or ".")
    cid = req.containers[0] if req.containers else (req.name or None)
    if cid is not None:
        _check_id(cid)
    if not os.path.isdir(bundle):
        raise RuncCkptError(f"bundle {bundle} is not a directory")
    with contextlib.ExitStack() as held:
        locks = [held.enter_context(lock.hold(cfg.state_dir, lock.bundle_key(bundle), "restore --import",
                                              cfg.lock_timeout, what=f"bundle {bundle}"))]
        if cid is not None:
            locks.append(held.enter_context(_id_lock(cfg, inv, cid)))
        config_path = os.path.join(bundle, "config.json")
        # Survivors of a killed tree first (they hold the rootfs and its import dir), then the bundle.
        for message in _settle_ids(inv, cfg, runc, bundle, cid, held):
            runclog.warn(inv.flags, message)
        for message in recovery.resolve_bundle(runc, bundle, _rootfs_of(bundle, _load_bundle_config(config_path)),
                                               allow_undo=True):
            runclog.warn(inv.flags, message)
        existing = _load_bundle_config(config_path)
        rootfs = _rootfs_of(bundle, existing)
        base_empty = _check_base_rootfs(rootfs)
        id_check = held.enter_context(_IdCheck(inv, runc, cid)) if cid is not None else None
        with signals.deferred(interrupt=True) as deferral:
            target = _Target(bundle, config_path, existing, rootfs, base_empty)
            tx = _Restore(inv, req, cfg, hook_defs, runc, target, cid, _Held(deferral, held, locks),
                          started, trust, session, id_check)
            return tx.run()


def _settle_ids(inv: Invocation, cfg: config.Config, runc: str, bundle: str, cid: str | None,
                held: contextlib.ExitStack) -> list[str]:
    """state/settle for cid (its lock is held) and, under their locks, for IDs killed restores into bundle named."""
    done = []
    for other in dict.fromkeys(settle.journal_ids(bundle)):
        if other != cid:
            with _id_lock(cfg, inv, other):
                done += settle.settle(runc, inv.flags.root, cfg.state_dir, other, bundle, cfg.lock_timeout)
    if cid is not None:
        done += settle.settle(runc, inv.flags.root, cfg.state_dir, cid, bundle, cfg.lock_timeout)
    return done


def _id_lock(cfg: config.Config, inv: Invocation, cid: str) -> contextlib.AbstractContextManager[lock.Held]:
    return lock.hold(cfg.state_dir, lock.container_key(inv.flags.root, cid), "restore --import",
                     cfg.lock_timeout, what=f"container {cid}")


class _Target(Record):
    """The bundle a restore --import writes into, as found under its lock."""

    bundle: str
    config_path: str
    existing: dict | None       # its config.json; None: the archive's spec.dump becomes it
    rootfs: str
    base_empty: bool


class _Held(Record):
    """What the call holds while it runs: the signal deferral, its context stack and its locks."""

    deferral: signals.Deferral
    stack: contextlib.ExitStack
    locks: list[lock.Held]


class _Settled(Record):
    """What was decided about the staged archive before anything is applied."""

    spec: dict
    from_archive: bool              # the archive's spec.dump becomes config.json
    policy: policy.Policy
    post_hooks: list[hooks.Hook]
    annotations: dict[str, str]
    remaps: list[podmanspec.Remap]
    merges: dict[str, safeextract.MergePlan]
    root_mode: int | None           # the rootfs mode CRIU recorded, if it differs it is set
    image_dir: str


class _Restore:
    """One restore --import under its locks: stage, verify, apply (journaled), runc restore, commit or undo."""

    def __init__(self, inv: Invocation, req: ImportRequest, cfg: config.Config, hook_defs: list[hooks.Hook],
                 runc: str, target: _Target, cid: str | None, held: _Held, started: float,
                 trust: trustpolicy.Policy, session: StreamSession | None = None,
                 id_check: _IdCheck | None = None) -> None:
        self.inv, self.req, self.cfg, self.hook_defs, self.runc = inv, req, cfg, hook_defs, runc
        self.id_check = id_check
        self.target, self.cid, self.started, self.session = target, cid, started, session
        self.bundle = target.bundle
        self.rootfs = target.rootfs
        self.deferral, self.held, self.locks = held.deferral, held.stack, held.locks
        self.archive = req.source       # a file, or a checkpoint image (image.source); the stream's label later
        self.staged: reader.Staged | None = None
        self.trust = trust
        self.verdict: verdict.Verdict | None = None     # the trust policy's, once the manifest is verified
        self.plain_dir: str | None = None   # an encrypted archive's decrypted images: a tmpfs dir (state/tmpfsimages)

    def run(self) -> int:
        fd, import_dir = atomicfile.locked_dir(self.bundle, IMPORT_PREFIX)
        self.locks.append(lock.Held("import-dir", import_dir, fd))
        journal = transaction.Journal(import_dir)
        try:
            try:
                settled = self._stage_and_apply(journal, import_dir)
            except BaseException as e:
                self._roll_back(journal)
                self._wipe_plaintext(import_dir)
                safe_remove.remove_tree(import_dir, ignore_errors=True)
                if isinstance(e, hostpreflight.CheckDone):    # issue 21: restore --check
                    return e.code
                if isinstance(e, signals.Interrupted):
                    raise RuncCkptError(f"restore --import interrupted by {e.signame} before runc restore: "
                                        f"nothing applied, the bundle {self.bundle} is as it was",
                                        128 + e.signum) from None
                if isinstance(e, OSError):
                    where = f": {e.filename}" if e.filename else ""
                    raise RuncCkptError(f"restore --import: {e.strerror or e}{where}") from None
                raise
            return self._restore(journal, import_dir, settled)
        finally:
            self._wipe_plaintext(import_dir)      # (--keep keeps the import dir, never plaintext)
            journal.close()
            os.close(fd)

    def _images_on_tmpfs(self, import_dir: str, name: str) -> None:
        """An encrypted archive's CRIU images go to tmpfs: import_dir's images dir `name` becomes a link into a
        tmpfs dir, recorded in import_dir before it exists (a kill leaves the record for restore.recovery).
        Refused, before anything is applied, where /dev/shm is not tmpfs. Called per image member."""
        if self.plain_dir is None:
            directory = tmpfsimages.choose()
            tmpfsimages.make(import_dir, directory)
            self.plain_dir = directory
        if not os.path.lexists(os.path.join(import_dir, name)):
            os.mkdir(os.path.join(self.plain_dir, name), 0o700)
            os.symlink(os.path.join(self.plain_dir, name), os.path.join(import_dir, name))

    def _wipe_plaintext(self, import_dir: str) -> None:
        """The decrypted images on tmpfs go, then their record: before the import dir that holds the record."""
        if self.plain_dir is not None:
            tmpfsimages.wipe(import_dir, self.plain_dir)
            self.plain_dir = None

    # ---- staging, checks, apply

    def _stage_and_apply(self, journal: transaction.Journal, import_dir: str) -> _Settled:
        """Stage the archive, verify it, settle what it becomes, then apply it (journaled)."""
        volumes = _VolumeTargets(self.target.existing, self.cfg.volume_roots, self.req.ignore_volumes, journal,
                                 trust=self.req.trust_archive_spec)
        if not self.req.ignore_rootfs:
            journal.target(self.rootfs)
        if self.id_check is not None and (self.session is not None or not _small_file(self.archive)):
            self.id_check.confirm()     # a taken ID refuses the call before a big archive (or a stream) is read
        self._stage_previous(import_dir)
        staged, src, host_versions = self._stage(import_dir, volumes)
        if self.id_check is not None:
            self.id_check.confirm()
        faults.point("staging")
        steps = [time.time()]       # wall clock: what a migration's downtime is made of (--debug)
        self._verify(staged, src, host_versions, volumes)
        # Only now: the images are untrusted, and pycriu decodes them only once the manifest and the trust
        # policy have accepted them (test_preflight); the read then overlaps the chain, the ID and the policy.
        hostpreflight.prefetch(staged, import_dir)
        self._stage_chain(staged, src, import_dir)
        steps.append(time.time())
        _check_parent(import_dir)
        cid = self._settle_id(staged)
        steps.append(time.time())
        settled = self._settle(staged, cid, volumes, import_dir)
        if self.session is not None:
            self.session.staged()
        steps.append(time.time())
        self._apply(journal, staged, settled, cid)
        steps.append(time.time())
        runclog.debug(self.inv.flags, f"restore --import: after the last member (at {steps[0]:.3f}): " +
                      ", ".join(f"{what} {b - a:.3f} s" for what, a, b in zip(
                          ("verified", "parent checked", "settled (policy, pre-flight, hooks)", "applied"),
                          steps, steps[1:], strict=False)))
        return settled

    @property
    def decryption_keys(self) -> tuple[str, ...]:
        """--decryption-key files, then the node's (runc-ckpt.yaml): read only if an archive is encrypted."""
        return (*self.req.decryption_keys, *self.cfg.decryption_key)

    def _stage_previous(self, import_dir: str) -> None:
        """--import-previous: the pre-checkpoint archive's images, staged and verified first."""
        if self.req.previous is None:
            return
        previous = os.path.abspath(self.req.previous)
        prev = reader.stage(previous, reader.Targets(import_dir, None, None),
                            what_is_required=layout.PRE_CHECKPOINT_DIR, flags=self.inv.flags,
                            decryption_keys=self.decryption_keys)
        prev.verify()
        # The pre-checkpoint's pages are restored too: the policy judges it as it judges the archive.
        verdict.enforce(verdict.decide(self.trust, "archive", previous, prev.manifest_raw, prev.manifest_sig,
                                       f"archive {previous}"))
        if layout.PRE_CHECKPOINT_DIR not in prev.checkpoint_dirs:
            raise RuncCkptError(f"archive {previous} has no {layout.PRE_CHECKPOINT_DIR}/ images")

    def _stage_chain(self, staged: reader.Staged, src: importsource.Source, import_dir: str) -> None:
        """An incremental archive's parents (archive.chain): each found, verified, pinned by its digest and
        judged, its images staged as the `parent` of the images above it, before CRIU reads any of them."""
        link = chain.parse(staged)
        if link is None:
            return
        if self.session is not None or src.reference is not None:
            raise RuncCkptError(f"{src.what} is an incremental checkpoint on top of {link.archive}: "
                                "restore it from its archive file, beside the archives it builds on")
        if self.req.previous is not None:
            raise RuncCkptError(f"archive {self.archive} builds on {link.archive}: --import-previous cannot "
                                "be used with an incremental archive")
        # The ancestors' images beside the child's: on tmpfs when the child is encrypted.
        home = self.plain_dir or import_dir
        images = os.path.join(home, layout.CHECKPOINT_DIR)
        if os.path.lexists(os.path.join(images, PARENT_LINK)):
            raise RuncCkptError(f"archive {self.archive} names a parent and holds a pre-checkpoint: "
                                "its images cannot build on both")
        ancestors = chain.stage(chain.locate(link, self.archive, self.req.incremental_dir), link,
                                self.req.incremental_dir, home, images, self.trust, self.decryption_keys,
                                self.inv.flags)
        runclog.debug(self.inv.flags, "restore --import: on top of " + " <- ".join(a.path for a in ancestors))

    def _stage(self, import_dir: str, volumes: _VolumeTargets
               ) -> tuple[reader.Staged, importsource.Source, dict[str, str]]:
        """One streaming read of the archive (a file, an image's layer or the stream) into the staging dirs."""
        session, req = self.session, self.req
        with contextlib.ExitStack() as sources:     # an image's scratch copy, until staging is done
            src = (importsource.Source(layout.STDIO) if session is not None
                   else importsource.open_source(self.archive, self.bundle, self.inv.flags, sources,
                                                          self.decryption_keys))
            self.archive = src.path
            host_versions = configdump.versions(self.runc, self.inv.flags.criu, self.cfg.state_dir)
            if src.annotations:  # an image says where it was made before its layer is read
                preflight.check(preflight.compare(preflight.recorded(None, src.annotations), host_versions),
                                src.what, req.skip_preflight)
            targets = reader.Targets(import_dir, None if req.ignore_rootfs else self.rootfs, volumes.directory,
                                     on_hello=session.on_hello if session else None,
                                     on_phase1=session.on_phase1 if session else None,
                                     staging_home=import_dir,
                                     sealed_images=lambda name: self._images_on_tmpfs(import_dir, name))
            if session is not None:
                self.staged = reader.stage(session.label, targets, flags=self.inv.flags,
                                           source=session.open_stream(), decryption_keys=self.decryption_keys)
            else:
                self.staged = reader.stage(self.archive, targets, flags=self.inv.flags, sha256=src.sha256,
                                           decryption_keys=self.decryption_keys)
        return self.staged, src, host_versions

    def _verify(self, staged: reader.Staged, src: importsource.Source, host_versions: dict[str, str],
                volumes: _VolumeTargets) -> None:
        """Manifest, an image's annotations, the pre-flight host check, bind volumes, the base rootfs."""
        staged.verify()
        importsource.verify(src, staged.members, staged.config_dump)
        self._judge(staged, src)
        preflight.check(preflight.compare(preflight.recorded(staged.manifest, src.annotations), host_versions),
                        src.what, self.req.skip_preflight)
        volumes.check_binds(staged)
        if self.target.base_empty and not (staged.rootfs is not None and _rootfs_kind(staged) == "full"):
            raise RuncCkptError(f"base rootfs {self.rootfs} is empty: put the container image's files there "
                                f"(e.g. mount its layers) before restore --import")
        if staged.ignored:
            runclog.debug(self.inv.flags, f"restore --import: ignored members {', '.join(staged.ignored)}")

    def _judge(self, staged: reader.Staged, src: importsource.Source) -> None:
        """The trust policy's verdict on the verified manifest and its signature; refused: nothing applied yet."""
        transport, scope = ("stream", self.req.peer or "") if self.session is not None else src.trust_scope()
        what = f"stream {self.session.label}" if self.session is not None else src.what
        self.verdict = verdict.decide(self.trust, transport, scope, staged.manifest_raw, staged.manifest_sig, what)
        runclog.debug(self.inv.flags, f"trust: {self.verdict.reason}")
        verdict.enforce(self.verdict)
        if self.session is not None:
            signed_for = ((staged.manifest or {}).get("container") or {}).get("id")
            replay = verdict.replayed(self.verdict, signed_for, self.cid, what)
            if replay:
                raise RuncCkptError(f"restore refused: {replay}")

    def _settle_id(self, staged: reader.Staged) -> str:
        """The container's ID: as given, else the archive's (then locked and checked free here)."""
        if self.cid is None:
            self.cid = _archive_id(staged, self.archive)
            _check_id(self.cid)
            self.locks.append(self.held.enter_context(_id_lock(self.cfg, self.inv, self.cid)))
            for message in settle.settle(self.runc, self.inv.flags.root, self.cfg.state_dir, self.cid, self.bundle,
                                         self.cfg.lock_timeout):
                runclog.warn(self.inv.flags, message)
            _ensure_free(self.inv, self.runc, self.cid)
        return self.cid

    def _settle(self, staged: reader.Staged, cid: str, volumes: _VolumeTargets, import_dir: str) -> _Settled:
        """The spec, policy and hooks (prerestore runs here), bind remaps and merge plans; nothing applied."""
        inv, cfg = self.inv, self.cfg
        existing = self.target.existing
        from_archive = existing is None
        spec = existing if existing is not None else _spec_from_archive(staged, self.archive, self.bundle)
        # A checkpoint signed by a key the policy trusts may carry its spec; --trust-archive-spec overrides.
        signed = self.verdict is not None and self.verdict.signer is not None
        recreate = from_archive and not (self.req.trust_archive_spec or signed)
        if recreate:
            untrusted.check(spec, cfg.volume_roots, frozenset(podmanspec.PODMAN_FILES), self.archive)
        # Policy and prerestore hooks once the spec is known, before anything is applied:
        # a refusal here still leaves the bundle as it was.
        annotations = ocispec.annotations(spec)
        pol = policy.effective(cfg, annotations, self.req.policy.given())
        runclog.debug(inv.flags, f"{cid}: {pol.describe()}")
        # issue 21: the host pre-flight (what the checkpoint needs, against this host), before hooks and apply
        hostpreflight.for_import(staged, import_dir, self.rootfs, spec,
                                 [*self.req.runc_flags, *pol.runc_flags(self.req.policy.keys())], inv.flags.criu,
                                 cfg.state_dir, self.req.skip_preflight, self.req.check, lambda m: runclog.warn(inv.flags, m))
        post_hooks = hooks.select(self.hook_defs, "postrestore", annotations, pol.hooks)
        hooks.run_stage("prerestore", hooks.select(self.hook_defs, "prerestore", annotations, pol.hooks),
                        hooks.state_json(cid, "creating", 0, self.bundle, annotations), inv.flags, pol.hook_timeout)
        remaps = podmanspec.plan_remaps(spec, self.bundle, volumes.sources, recreate_all=recreate)
        podmanspec.check_namespace_paths(spec)
        merges = _plan_merges(staged)
        image_dir = os.path.join(import_dir, layout.CHECKPOINT_DIR)
        return _Settled(spec, from_archive, pol, post_hooks, annotations, remaps, merges,
                        _root_mode(staged, image_dir), image_dir)

    def _apply(self, journal: transaction.Journal, staged: reader.Staged, settled: _Settled, cid: str) -> None:
        """Nothing before this changed the rootfs, the volumes or config.json; every change is journaled."""
        inv, mode, remaps = self.inv, settled.root_mode, settled.remaps
        with self.deferral.critical():
            _apply_merges(journal, staged, settled.merges)
            if mode is not None and (os.stat(self.rootfs).st_mode & 0o7777) != mode:
                journal.meta(self.rootfs)
                os.chmod(self.rootfs, mode)
                runclog.debug(inv.flags, f"rootfs {self.rootfs}: mode set to {mode:04o} as CRIU recorded it")
            for path in podmanspec.remap_paths(self.bundle, remaps):
                if not os.path.lexists(path):
                    journal.created(path)
            podmanspec.apply_remaps(settled.spec, remaps, cid)
            for r in remaps:
                runclog.log(inv.flags, "info", f"bind mount {r.destination}: source {r.old_source} is missing "
                                               f"here, using {r.new_source}")
            if settled.from_archive or remaps:
                journal.rewriting(self.target.config_path)
                podmanspec.write_config(self.target.config_path, settled.spec)
            _restore_devshm(staged, remaps)
            if self.session is not None:
                self.session.applied()
            staged.discard()          # no staging dir is left where the container could see it
            self.staged = None

    def _roll_back(self, journal: transaction.Journal) -> list[str]:
        with self.deferral.critical():
            if self.staged is not None:
                self.staged.discard()
                self.staged = None
            problems = transaction.undo(journal.steps)
        for problem in problems:
            runclog.warn(self.inv.flags, f"restore --import: could not roll back {problem}")
        return problems

    # ---- runc restore

    def _restore(self, journal: transaction.Journal, import_dir: str, settled: _Settled) -> int:
        req, inv, cid = self.req, self.inv, self.cid
        pol = settled.policy
        assert cid is not None
        work = os.path.abspath(req.work_path) if req.work_path else _own_work_dir(self.cfg.state_dir, cid)
        pid_file = os.path.abspath(req.pid_file) if req.pid_file else os.path.join(work, PID_FILE)
        wall = time.time()
        self.deferral.stop_interrupting()     # from here a signal is reported once runc is done
        journal.runc_started(self.inv.flags.root, cid)
        with intent.recorded(containerid.container_dir(self.cfg.state_dir, cid), intent.RESTORE, self.bundle,
                             inv.flags.root):
            code = self._run_runc(settled.image_dir, work, pid_file, pol.runc_flags(req.policy.keys()))
        # Who made the container matters for a failure and for postrestore hooks; runc's exit 0 says it made
        # it, and the `runc state` that asks (~8 ms) is spared on a plain success.
        made = True if code == 0 and not settled.post_hooks else _made_by_us(self.runc, inv.flags.root, cid,
                                                                               self.bundle, pid_file, wall)
        if code == 0 or made and not req.detach:
            # Restored (without -d a non-zero code can be the container's own exit status).
            transaction.commit(journal.steps)
            if not req.keep:
                self._wipe_plaintext(import_dir)
                safe_remove.remove_tree(import_dir, ignore_errors=True)
                if not req.work_path:
                    safe_remove.remove_tree(work, ignore_errors=True)
                    settle.forget(self.cfg.state_dir, cid)  # it runs: a killed checkpoint's records have served
                    with contextlib.suppress(OSError):     # a node restoring thousands keeps no empty dirs
                        os.rmdir(containerid.container_dir(self.cfg.state_dir, cid))
            if code == 0 and settled.post_hooks and made is not False:
                # Imported here, not at the top: only postrestore hooks need it (~2 ms with datetime;
                # test_layering LAZY), as in runc_restore.
                from runc_ckpt.runtime import containerstate
                st = containerstate.state(self.runc, inv, cid)
                hooks.run_stage("postrestore", settled.post_hooks,
                                hooks.state_json(st.id, st.status, st.pid, st.bundle, settled.annotations),
                                inv.flags, pol.hook_timeout)
            if self.deferral.signum is not None:
                now = recovery.container_bundle(self.runc, inv.flags.root, cid)
                state = "is running" if now is not None else "has exited"
                raise RuncCkptError(f"restore --import interrupted by {self.deferral.signame} while runc restored "
                                    f"{cid}; runc finished and the container {state}", self.deferral.exit_code)
            return code
        # runc failed: nothing of ours may stay half-restored, nothing of anyone else's is touched.
        notes = []
        if made:
            subprocess.run([self.runc, *_state_globals(inv), "delete", "--force", cid], capture_output=True,
                           check=False)
        elif made is False:
            notes.append(f"a container {cid} exists that this restore did not create: it is left alone")
        problems = self._roll_back(journal)
        self._wipe_plaintext(import_dir)
        safe_remove.remove_tree(import_dir, ignore_errors=True)
        log = os.path.join(work, "restore.log")
        notes.append("the bundle, rootfs and volumes are as they were" if not problems
                     else "the bundle could not be fully rolled back")
        if os.path.exists(log):
            notes.append(f"CRIU's log: {log}")
        if self.deferral.signum is not None:
            notes.insert(0, f"interrupted by {self.deferral.signame}")
        # runc's error line is the error; what we know of the aftermath is one more line in
        # runc's format on the channel the caller chose, never free-form text an engine cannot parse.
        runclog.warn(self.inv.flags, f"restore --import of {cid} failed (runc exit status {code}); "
                                     f"{'; '.join(notes)}")
        return code

    def _run_runc(self, image_dir: str, work: str, pid_file: str, policy_flags: list[str]) -> int:
        req, inv = self.req, self.inv
        assert self.cid is not None
        os.makedirs(work, mode=0o700, exist_ok=True)
        own_pid = [] if req.pid_file else ["--pid-file", pid_file]
        argv = [self.runc, *inv.runc_globals, "restore", "--image-path", image_dir, "--work-path", work,
                "--bundle", self.bundle, *req.runc_flags, *own_pid, *policy_flags, self.cid]
        env = criuconf.environ_with(["tcp-close"]) if req.tcp_close else None
        runclog.debug(inv.flags, f"restore --import: running {' '.join(argv)}")
        # Our locks are not handed to runc: CRIU's restored tasks would inherit them and outlive a killed
        # tree. If we are killed meanwhile, the next call waits for this runc (state/settle) instead.
        t0 = time.monotonic()
        with self.deferral.critical():
            proc = subprocess.Popen(argv, env=env)
            with self.deferral.forwarding(proc) if not req.detach else contextlib.nullcontext():
                faults.point("runc-restore")
                rc = proc.wait()
            runtime_us = int((time.monotonic() - t0) * 1e6)
            runclog.debug(inv.flags, f"restore --import: runc restore exited {rc} after {runtime_us / 1e6:.3f} s")
            if rc == 0 and req.print_stats:
                restore_stats = _criu_restore_stats(work)
                total_us = int((time.monotonic() - self.started) * 1e6)
                print(json.dumps({
                    "podman_restore_duration": total_us,
                    "restore_duration": total_us,
                    "container_statistics": [{
                        "Id": self.cid,
                        "runtime_restore_duration": runtime_us,
                        "criu_statistics": stats.podman_view(restore_stats, stats.PODMAN_RESTORE_KEYS),
                    }],
                }))
        return rc


def _check_parent(import_dir: str) -> None:
    """A dump on top of a pre-dump (--import-previous, a --pre-copy stream's phase 0): every page its
    pagemaps say is in the parent must be there, or CRIU would fail half-way; refused before anything
    is applied (runtime/criu/incremental.check_parent).

    A stream's memory pre-copy rounds (pre-checkpoint.1/ ... .R/, each linked to the one before by the
    reader's rules) must be whole, and the dump must build on the last: links are not in the manifest,
    so a dump pointed at an older round would restore pages the workload had already overwritten.
    """
    image_dir = os.path.join(import_dir, layout.CHECKPOINT_DIR)
    link = os.path.join(image_dir, PARENT_LINK)
    rounds = [n for n in range(1, layout.PRE_COPY_ROUNDS + 1)
              if os.path.isdir(os.path.join(import_dir, layout.pre_copy_round(n)))]
    if rounds:
        last = layout.pre_copy_round(rounds[-1])
        if rounds != list(range(1, rounds[-1] + 1)) or not os.path.islink(link) \
                or os.readlink(link) != f"../{last}":
            raise RuncCkptError(f"the archive's memory pre-copy rounds {', '.join(map(str, rounds))} are not a "
                                f"chain its {layout.CHECKPOINT_DIR}/ builds on (its parent must be ../{last})")
    if os.path.islink(link):
        # Imported here, not at the top: only a dump on top of a parent is checked (~2 ms with xxhash, of
        # every other restore --import; test_layering LAZY).
        from runc_ckpt.runtime.criu import incremental
        incremental.check_parent(image_dir)


def _own_work_dir(state_dir: str, cid: str) -> str:
    """CRIU's work dir for a restore of cid: in the state dir, so it outlives a failed restore."""
    work = os.path.join(containerid.container_dir(state_dir, cid), RESTORE_WORK)
    safe_remove.remove_tree(work, ignore_errors=True)   # the last restore's logs; we hold the ID's lock
    return work


def _made_by_us(runc: str, root: str, cid: str, bundle: str, pid_file: str, since: float) -> bool | None:
    """None: no container cid; True: this call's runc made it (its pid file, our bundle); False: someone else's.

    One `runc state` answers both whether cid exists and its pid and bundle (two calls cost ~5 ms more)."""
    state = recovery.runc_state(runc, root, cid)
    if state is None:
        return None
    try:
        if os.stat(pid_file).st_mtime < since - 1:
            return False
        with open(pid_file, encoding="utf-8") as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return False
    found = str(state.get("bundle") or "")
    return pid > 0 and state.get("pid") == pid and os.path.realpath(found) == os.path.realpath(bundle)


# ---------------------------------------------------------------- checks


def _state_globals(inv: Invocation) -> list[str]:
    """Globals for our own `runc state` probe: never --log, so the caller's log gets no extra line."""
    g = ["--root", inv.flags.root]
    if inv.flags.systemd_cgroup:
        g.append("--systemd-cgroup")
    return g


def _check_id(cid: str) -> None:
    """runc's rule for container IDs, before anything is touched (runc would refuse only after the apply)."""
    containerid.check(cid)


def _ensure_free(inv: Invocation, runc: str, cid: str) -> None:
    with _IdCheck(inv, runc, cid) as check:
        check.confirm()


# An archive file up to this size is staged while runc answers whether its ID is taken (_IdCheck).
SMALL_ARCHIVE = 1 << 20


def _small_file(source: str) -> bool:
    try:
        return os.stat(source).st_size <= SMALL_ARCHIVE
    except (OSError, ValueError):
        return False        # a stream or an image reference: asked before it is read


class _IdCheck:
    """`runc state ID` asked under the ID's lock, its answer taken by confirm(): a taken ID refuses the call
    before anything is applied. A small archive is staged meanwhile (runc answers in ~7 ms, a fifth of a tiny
    restore's own time before runc restore); a big one, a stream or an image waits for the answer first.

    runc is not asked when its root has no entry named ID: runc 1.1.5 loads a container from
    <root>/<ID>/state.json (libcontainer LinuxFactory.Load; the ID is valid, so the join is plain), and
    answers "does not exist" for any error there. A restore of a new ID (the common case) then starts no
    runc, which cost ~7 ms of CPU on a 2-core host busy with this call and its image reader."""

    def __init__(self, inv: Invocation, runc: str, cid: str) -> None:
        self._cid = cid
        self._proc: subprocess.Popen[bytes] | None = None
        if not os.path.lexists(leftovers.Scope(inv.flags.root, cid).runc_dir):
            return
        self._proc = subprocess.Popen(
            [runc, *_state_globals(inv), "state", cid], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)

    def confirm(self) -> None:
        """Raise if the ID is taken; idempotent."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.wait() == 0:
            raise RuncCkptError(f"container {self._cid} already exists: choose another ID (--name) or delete it "
                                "first")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:      # never confirmed (the call failed first): end the query
            self._proc.kill()
            self._proc.wait()
            self._proc = None


def _load_bundle_config(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise RuncCkptError(f"bundle config {path} is not readable JSON: {e}") from None
    if not isinstance(data, dict):
        raise RuncCkptError(f"bundle config {path} is not a JSON object")
    return data


def _rootfs_of(bundle: str, spec: dict | None) -> str:
    root = (spec or {}).get("root") or {}
    path = root.get("path") if isinstance(root, dict) else None
    if not isinstance(path, str) or not path:
        path = "rootfs"
    return os.path.normpath(os.path.join(bundle, path))


def _check_base_rootfs(rootfs: str) -> bool:
    """Refuse a missing rootfs; return whether it is empty (fine only for an archive of a full rootfs)."""
    try:
        with os.scandir(rootfs) as it:
            return next(it, None) is None
    except FileNotFoundError:
        raise RuncCkptError(f"base rootfs {rootfs} is missing: put the container image's files there (e.g. mount "
                            f"its layers), or an empty directory for an archive of a full rootfs") from None
    except NotADirectoryError:
        raise RuncCkptError(f"base rootfs {rootfs} is not a directory") from None


def _rootfs_kind(staged: reader.Staged) -> str | None:
    """The manifest's rootfs.kind: "full" archives hold the whole rootfs, "overlay-diff" only changes."""
    info = (staged.manifest or {}).get("rootfs")
    return info.get("kind") if isinstance(info, dict) else None


def _archive_id(staged: reader.Staged, archive: str) -> str:
    for source in (staged.config_dump or {}, (staged.manifest or {}).get("container") or {}):
        for key in ("id", "name"):
            if isinstance(source.get(key), str) and source[key]:
                return source[key]
    raise RuncCkptError(f"archive {archive} does not name its container: give the ID as an argument or --name")


def _spec_from_archive(staged: reader.Staged, archive: str, bundle: str) -> dict:
    if staged.spec is None:
        raise RuncCkptError(f"archive {archive} has no {layout.SPEC_DUMP} and {bundle} has no config.json")
    spec = staged.spec
    root = v if isinstance(v := spec.get("root"), dict) else {}
    spec["root"] = {**root, "path": "rootfs"}
    return spec


class _VolumeTargets:
    """Decides, while the archive streams, where each volumes/<name>.tar is staged."""

    def __init__(self, existing: dict | None, volume_roots: Sequence[str], ignore: bool,
                 journal: transaction.Journal, trust: bool) -> None:
        self.existing = existing
        self.journal = journal
        self.trust = trust
        self.volume_roots = volume_roots
        self.ignore = ignore
        self.sources: set[str] = set()
        self.binds: dict[str, str] = {}  # io.runc-ckpt.volumes bind mounts staged: name -> destination

    def directory(self, name: str, staged: reader.Staged) -> str | None:
        if self.ignore:
            return None
        dests = podmanspec.volume_destinations(staged.spec, staged.config_dump, None, self.volume_roots)
        dest = dests.get(name)
        if dest is None:
            dest = podmanspec.bind_volume_destination(staged.spec, name)
            if dest is not None:
                self.binds[name] = dest
        spec = self.existing if self.existing is not None else staged.spec
        source = podmanspec.source_for(spec, dest) if (dest and spec) else None
        if not source or not os.path.isabs(source):
            raise RuncCkptError(f"archive volume {name}: no bind mount for it in the container's spec")
        source = os.path.normpath(source)
        if self.existing is None and not self.trust:
            untrusted.check_volume_source(source, self.volume_roots, f"archive volume {name}")
        if not os.path.isdir(source):
            top = source
            while not os.path.isdir(os.path.dirname(top)):
                top = os.path.dirname(top)
            self.journal.created(top)  # removed again if the restore fails (or was killed)
            os.makedirs(source, mode=0o755)
        elif any(True for _ in os.scandir(source)):
            raise RuncCkptError(f"volume {name}: {source} already holds data; restore will not overwrite it "
                                f"(empty it, or use --ignore-volumes to keep it as it is)")
        self.sources.add(source)
        self.journal.target(source)
        return source

    def check_binds(self, staged: reader.Staged) -> None:
        """Apply a bind mount's volume only where the manifest says it came from.

        The manifest is the archive's last member, so while volumes stream a
        bind-<path> name is matched against the archived spec; once the manifest
        is read and verified its bind_mounts (archived_as -> destination) must
        agree. Podman writes no such volumes and no manifest.
        """
        listed = podmanspec.volume_destinations(None, None, staged.manifest, [])
        for name, dest in self.binds.items():
            if os.path.normpath(listed.get(name, "")) != os.path.normpath(dest):
                raise RuncCkptError(f"archive {staged.path}: volume {name} is not listed in its manifest as the "
                                    f"bind mount at {dest}")


def _plan_merges(staged: reader.Staged) -> dict[str, safeextract.MergePlan]:
    plans = {}
    if staged.rootfs is not None:
        t = staged.rootfs
        plans["rootfs"] = safeextract.plan_merge(t.staging, t.target, t.extracted.explicit_dirs, staged.deleted,
                                                 t.staging.what)
    for name, t in staged.volumes.items():
        plans[name] = safeextract.plan_merge(t.staging, t.target, t.extracted.explicit_dirs, [], t.staging.what)
    return plans


def _root_mode(staged: reader.Staged, image_dir: str) -> int | None:
    rootfs_info = (staged.manifest or {}).get("rootfs") or {}
    mode = rootfs_info.get("root_mode") if isinstance(rootfs_info, dict) else None
    if isinstance(mode, int) and 0 <= mode <= 0o7777:
        return mode
    return rootmode.root_mode(image_dir)


def _apply_merges(journal: transaction.Journal, staged: reader.Staged,
                  plans: dict[str, safeextract.MergePlan]) -> None:
    trees = ([("rootfs", staged.rootfs)] if staged.rootfs is not None else []) + list(staged.volumes.items())
    for key, tree in trees:
        try:
            journaledmerge.apply_merge(journal, tree.staging, tree.target, plans[key], tree.extracted.explicit_dirs,
                                    tree.extracted, undo_dir=tree.staging.path + transaction.UNDO_SUFFIX,
                                    step=lambda: faults.point("apply"))
        except OSError as e:
            raise RuncCkptError(f"applying {tree.staging.what}: {e.strerror or e}") from None


def _restore_devshm(staged: reader.Staged, remaps: list[podmanspec.Remap]) -> None:
    """Podman's /dev/shm content goes into the recreated shm dir (no devices, nothing outside)."""
    tar_path = staged.files.get(layout.DEVSHM)
    shm = next((r.new_source for r in remaps if r.destination == "/dev/shm"), None)
    if tar_path is None or shm is None or os.path.getsize(tar_path) == 0:
        return
    with safeextract.Root(shm, f"/dev/shm content of {staged.path}") as root, open(tar_path, "rb") as f:
        safeextract.extract(TarStream(FileSource(f), root.what), root, root.what, allow_devices=False)


def _criu_restore_stats(work: str) -> dict[str, int]:
    path = os.path.join(work, layout.STATS_RESTORE)
    if not os.path.exists(path):
        return {}
    return stats.read(path).get("restore", {})
