"""`restore --import`: stage an archive, verify it, apply it to the bundle, then `runc restore`.

Order, so that bad input never leaves anything half-done:
  1. cheap checks: container ID free, base rootfs present, bundle config readable;
  2. stage (archive/reader): one streaming read of the archive, or of a
     checkpoint image's layer (image.source; its digest checked on the way);
     images to an import dir inside the bundle, rootfs diff and volumes to
     staging dirs inside their targets; every member hashed;
  3. verify: manifest (if any), an image's annotations against its layer,
     the pre-flight host check (restore.preflight), inventory, safety of the
     merge plan, bind sources; any failure removes all staging (and an
     image's scratch copy) and nothing was applied;
  4. apply: rename-merge staged trees into place, deleted.files, root mode,
     config.json, per-container bind files, /dev/shm content;
  5. `runc restore --image-path <staged images> --bundle DIR ...`; on
     failure nothing is left running or half-restored.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING

from runc_ckpt.archive import layout, reader, safeextract
from runc_ckpt.checkpoint import configdump
from runc_ckpt.commands import cmdflags, options
from runc_ckpt.frontend import realrunc, runclog
from runc_ckpt.frontend.errors import RuncCkptError
from runc_ckpt.frontend.globalflags import Invocation
from runc_ckpt.image import source as importsource
from runc_ckpt.restore import podmanspec, preflight
from runc_ckpt.runtime import containerid, criuconf, ocispec
from runc_ckpt.runtime.criu import rootmode, stats
from runc_ckpt.settings import config, hooks, policy

if TYPE_CHECKING:
    from runc_ckpt.migrate.receiver import Session

IMPORT_PREFIX = ".runc-ckpt-import-"
# runc's own check for container IDs.
# Flags restore --import sets itself; the rest of runc's flags are forwarded.
OWN_RUNC_FLAGS = {"bundle", "image_path", "work_path"}


def restore(inv: Invocation, p: cmdflags.Parsed, session: Session | None = None) -> int:
    """`session` is a stream's (--import -, runc_ckpt.migrate.receiver): pre-flight on its hello, replies."""
    started = time.monotonic()
    if p.image_path:
        raise RuncCkptError("restore: --image-path cannot be used with --import: the images come from the archive")
    if len(p.positionals) > 1:
        raise RuncCkptError(f"restore: expected at most one container ID, got {len(p.positionals)}")
    cfg = config.load(inv.flags.config)
    config.apply_log_level(cfg, inv.flags)
    hook_defs = hooks.load(cfg.hooks_dir)
    runc = realrunc.find(cfg.runc)
    previous = os.path.abspath(str(p.import_previous)) if p.import_previous else None
    bundle = os.path.abspath(str(p.bundle or "."))
    cid = p.positionals[0] if p.positionals else (str(p.name) if p.name else None)
    if cid is not None:
        _ensure_free(inv, runc, cid)

    config_path = os.path.join(bundle, "config.json")
    existing = _load_bundle_config(config_path)
    rootfs = _rootfs_of(bundle, existing)
    base_empty = _check_base_rootfs(rootfs)

    import_dir = tempfile.mkdtemp(prefix=IMPORT_PREFIX, dir=bundle)
    old_handlers = {sig: signal.signal(sig, _interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
    work = os.path.abspath(str(p.work_path)) if p.work_path else os.path.join(import_dir, "work")
    volumes = _VolumeTargets(existing, cfg.volume_roots, bool(p.ignore_volumes))
    staged: reader.Staged | None = None
    sources = contextlib.ExitStack()  # an image's scratch copy, until staging is done
    try:
        src = (importsource.Source(layout.STDIO) if session is not None
               else importsource.open_source(str(p.values["import"]), bundle, inv.flags, sources))
        archive = src.path
        host_versions = configdump.versions(runc, inv.flags.criu)
        if src.annotations:  # an image says where it was made before its layer is read
            preflight.check(preflight.compare(preflight.recorded(None, src.annotations), host_versions),
                            src.what, bool(p.skip_preflight))
        if previous is not None:
            prev = reader.stage(previous, reader.Targets(import_dir, None, None),
                                what_is_required=layout.PRE_CHECKPOINT_DIR, flags=inv.flags)
            prev.verify()
            if layout.PRE_CHECKPOINT_DIR not in prev.checkpoint_dirs:
                raise RuncCkptError(f"archive {previous} has no {layout.PRE_CHECKPOINT_DIR}/ images")
        staged = reader.stage(archive, reader.Targets(import_dir, None if p.ignore_rootfs else rootfs,
                                                      volumes.directory,
                                                      session.on_hello if session else None,
                                                      session.on_phase1 if session else None),
                               flags=inv.flags, sha256=src.sha256)
        staged.verify()
        importsource.verify(src, staged.members, staged.config_dump)
        preflight.check(preflight.compare(preflight.recorded(staged.manifest, src.annotations), host_versions),
                        src.what, bool(p.skip_preflight))
        volumes.check_binds(staged)
        if base_empty and not (staged.rootfs is not None and _rootfs_kind(staged) == "full"):
            raise RuncCkptError(f"base rootfs {rootfs} is empty: put the container image's files there "
                                f"(e.g. mount its layers) before restore --import")
        if staged.ignored:
            runclog.debug(inv.flags, f"restore --import: ignored members {', '.join(staged.ignored)}")
        if cid is None:
            cid = _archive_id(staged, archive)
            _ensure_free(inv, runc, cid)
        spec = existing if existing is not None else _spec_from_archive(staged, archive, bundle)
        # Policy and prerestore hooks once the spec is known, before anything is applied:
        # a refusal here still leaves the bundle as it was.
        annotations = ocispec.annotations(spec)
        pol = policy.effective(cfg, annotations, {k: p.values[k] for k in p.given})
        runclog.debug(inv.flags, f"{cid}: {pol.describe()}")
        post_hooks = hooks.select(hook_defs, "postrestore", annotations, pol.hooks)
        hooks.run_stage("prerestore", hooks.select(hook_defs, "prerestore", annotations, pol.hooks),
                        hooks.state_json(cid, "creating", 0, bundle, annotations), inv.flags, pol.hook_timeout)
        remaps = podmanspec.plan_remaps(spec, bundle, volumes.sources)
        podmanspec.check_namespace_paths(spec)
        plans = _plan_merges(staged)
        image_dir = os.path.join(import_dir, layout.CHECKPOINT_DIR)
        mode = _root_mode(staged, image_dir)

        if session is not None:
            session.staged()
        # ---- apply: nothing above changed the rootfs, the volumes or config.json.
        _apply(staged, plans)
        if mode is not None and (os.stat(rootfs).st_mode & 0o7777) != mode:
            os.chmod(rootfs, mode)
            runclog.debug(inv.flags, f"rootfs {rootfs}: mode set to {mode:04o} as CRIU recorded it")
        podmanspec.apply_remaps(spec, remaps, cid)
        for r in remaps:
            runclog.log(inv.flags, "info", f"bind mount {r.destination}: source {r.old_source} is missing here, "
                                           f"using {r.new_source}")
        if existing is None or remaps:
            podmanspec.write_config(config_path, spec)
        _restore_devshm(staged, remaps)
        if session is not None:
            session.applied()
    except BaseException as e:
        if staged is not None:
            staged.discard()
        volumes.remove_created()
        shutil.rmtree(import_dir, ignore_errors=True)
        if isinstance(e, OSError):
            where = f": {e.filename}" if e.filename else ""
            raise RuncCkptError(f"restore --import: {e.strerror or e}{where}") from None
        raise
    finally:
        if staged is not None:
            staged.discard()
        sources.close()
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)

    try:
        code = _run_runc(inv, p, runc, bundle, image_dir, work, cid, started, pol.runc_flags(p.given))
        if code == 0 and post_hooks:
            from runc_ckpt.runtime import containerstate
            st = containerstate.state(runc, inv, cid)
            hooks.run_stage("postrestore", post_hooks, hooks.state_json(st.id, st.status, st.pid, st.bundle,
                                                                        annotations), inv.flags, pol.hook_timeout)
        return code
    finally:
        if not p.keep:
            shutil.rmtree(import_dir, ignore_errors=True)


# ---------------------------------------------------------------- checks


def _interrupted(signum: int, _frame: object) -> None:
    """SIGTERM/SIGHUP while staging or applying: unwind, so staging dirs are removed."""
    raise RuncCkptError(f"restore --import interrupted by signal {signal.Signals(signum).name}")


def _state_globals(inv: Invocation) -> list[str]:
    """Globals for our own `runc state` probe: never --log, so the caller's log gets no extra line."""
    g = ["--root", inv.flags.root]
    if inv.flags.systemd_cgroup:
        g.append("--systemd-cgroup")
    return g


def _ensure_free(inv: Invocation, runc: str, cid: str) -> None:
    containerid.check(cid)
    out = subprocess.run([runc, *_state_globals(inv), "state", cid], capture_output=True, check=False)
    if out.returncode == 0:
        raise RuncCkptError(f"container {cid} already exists: choose another ID (--name) or delete it first")


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
    root = spec.get("root") if isinstance(spec.get("root"), dict) else {}
    spec["root"] = {**root, "path": "rootfs"}
    return spec


class _VolumeTargets:
    """Decides, while the archive streams, where each volumes/<name>.tar is staged."""

    def __init__(self, existing: dict | None, volume_roots: list[str], ignore: bool) -> None:
        self.existing = existing
        self.volume_roots = volume_roots
        self.ignore = ignore
        self.sources: set[str] = set()
        self.created: list[str] = []
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
        if not os.path.isdir(source):
            top = source
            while not os.path.isdir(os.path.dirname(top)):
                top = os.path.dirname(top)
            os.makedirs(source, mode=0o755)
            self.created.append(top)  # removed again if the restore fails
        elif any(True for _ in os.scandir(source)):
            raise RuncCkptError(f"volume {name}: {source} already holds data; restore will not overwrite it "
                                f"(empty it, or use --ignore-volumes to keep it as it is)")
        self.sources.add(source)
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

    def remove_created(self) -> None:
        for d in self.created:
            shutil.rmtree(d, ignore_errors=True)


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


def _apply(staged: reader.Staged, plans: dict[str, safeextract.MergePlan]) -> None:
    trees = ([("rootfs", staged.rootfs)] if staged.rootfs is not None else []) + list(staged.volumes.items())
    for key, tree in trees:
        try:
            safeextract.apply_merge(tree.staging, tree.target, plans[key], tree.extracted.explicit_dirs,
                                    tree.extracted)
        except OSError as e:
            raise RuncCkptError(f"applying {tree.staging.what}: {e.strerror or e}") from None


def _restore_devshm(staged: reader.Staged, remaps: list[podmanspec.Remap]) -> None:
    """Podman's /dev/shm content goes into the recreated shm dir (no devices, nothing outside)."""
    tar_path = staged.files.get(layout.DEVSHM)
    shm = next((r.new_source for r in remaps if r.destination == "/dev/shm"), None)
    if tar_path is None or shm is None or os.path.getsize(tar_path) == 0:
        return
    from runc_ckpt.archive.tarstream import FileSource, TarStream
    with safeextract.Root(shm, f"/dev/shm content of {staged.path}") as root, open(tar_path, "rb") as f:
        safeextract.extract(TarStream(FileSource(f), root.what), root, root.what, allow_devices=False)


# ---------------------------------------------------------------- runc


def _forwarded_flags(p: cmdflags.Parsed) -> list[str]:
    """The caller's runc restore flags (e.g. --detach), minus those --import sets itself."""
    out: list[str] = []
    for opt in options.RESTORE:
        if not opt.runc or opt.key in OWN_RUNC_FLAGS or opt.key not in p.given:
            continue
        value = p.values[opt.key]
        flag = f"--{opt.names[0]}"
        if opt.kind == "bool":
            if value:
                out.append(flag)
        elif opt.kind == "list":
            for v in value:  # type: ignore[union-attr]
                out += [flag, str(v)]
        else:
            out += [flag, str(value)]
    return out


def _run_runc(inv: Invocation, p: cmdflags.Parsed, runc: str, bundle: str, image_dir: str, work: str,
              cid: str, started: float, policy_flags: list[str]) -> int:
    os.makedirs(work, mode=0o700, exist_ok=True)
    argv = [runc, *inv.runc_globals, "restore", "--image-path", image_dir, "--work-path", work,
            "--bundle", bundle, *_forwarded_flags(p), *p.unknown, *policy_flags, cid]
    env = criuconf.environ_with(["tcp-close"]) if p.tcp_close else None
    runclog.debug(inv.flags, f"restore --import: running {' '.join(argv)}")
    t0 = time.monotonic()
    rc = subprocess.run(argv, env=env, check=False).returncode
    runtime_us = int((time.monotonic() - t0) * 1e6)
    if rc != 0 and not p.detach:
        return rc  # without -d runc's exit code is the container's own
    if rc != 0:
        # runc reported the error itself; make sure nothing half-restored stays behind.
        subprocess.run([runc, *_state_globals(inv), "delete", "--force", cid], capture_output=True, check=False)
        return rc
    if p.print_stats:
        restore_stats = _criu_restore_stats(work)
        total_us = int((time.monotonic() - started) * 1e6)
        print(json.dumps({
            "podman_restore_duration": total_us,
            "restore_duration": total_us,
            "container_statistics": [{
                "Id": cid,
                "runtime_restore_duration": runtime_us,
                "criu_statistics": stats.podman_view(restore_stats, stats.PODMAN_RESTORE_KEYS),
            }],
        }))
    return 0


def _criu_restore_stats(work: str) -> dict[str, int]:
    path = os.path.join(work, layout.STATS_RESTORE)
    if not os.path.exists(path):
        return {}
    return stats.read(path).get("restore", {})
