"""Before a call touches a container: wait for a runc still working on it, then repair what a killed tree left.

Every runc-ckpt call that touches a container (checkpoint, restore with or
without --import, both ends of a stream) calls settle() under the
container's lock, before it reads the container's state. In order:

  1. a runc still working on the ID (its runc-ckpt was killed alone) is
     waited for, as the lock used to make us wait (runtime/leftovers.wait_idle).
     That wait scans every process's cmdline, so it runs only when there is
     something to repair: an orphaned intent record, or what leftovers.suspect
     sees (no state.json, a mount in the runc or work dir, a dir CRIU restores
     from). A healthy container's checkpoint scans nothing;
  2. survivors of a killed `runc restore` (the intent record says one ran,
     runc never recorded the container) are killed, CRIU's cgroup yard and
     runc's criu-root are unmounted, a runc dir without state.json goes
     (runtime/leftovers.repair);
  3. a container a killed checkpoint froze is thawed -- only when our intent
     record says a checkpoint of ours was running, so a user's `pause` stays;
  4. a stranded dump is recovered: a complete one replaces older images, an
     incomplete one goes (state/predump.recover; on tmpfs for an encrypted
     export, state/tmpfsimages). This runs for a plain `restore ID` too, so
     it never restores images older than a dump that completed after them.
     A killed migration's memory dump in tmpfs goes (runtime/memscratch), so does a killed
     --incremental-from export's scratch dir (state/callscratch);
  5. an encrypted checkpoint's plaintext images on tmpfs are wiped once the
     container runs again (until then they are its only copy).

What cannot be repaired raises one line naming the leftover and the command
that clears it. gone_hint() says how to bring back a container that a killed
checkpoint stopped (its images are complete).
"""

from __future__ import annotations

import json
import os
import subprocess

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.runtime import containerid, leftovers, memscratch
from runc_ckpt.state import callscratch, intent, predump, recovery, tmpfsimages, transaction

RESTORE_WORK = "restore-work"
DESCRIPTORS = "descriptors.json"


def needed(state_dir: str, root: str, cid: str) -> bool:
    """Whether there may be anything to settle for cid: cheap, so plain calls stay plain."""
    if not containerid.is_valid(cid):
        return False
    return os.path.isdir(containerid.container_dir(state_dir, cid)) or leftovers.stateless_runc_dir(leftovers.Scope(root, cid))


def cgroup_of(bundle: str, cid: str) -> str | None:
    """The container's cgroup path as runc (cgroupfs driver) makes it; None for systemd's slice:prefix:name."""
    try:
        with open(os.path.join(bundle, "config.json"), encoding="utf-8") as f:
            path = (json.load(f).get("linux") or {}).get("cgroupsPath")
    except (OSError, ValueError, AttributeError):
        path = None
    if not path:
        return "/" + cid
    if not isinstance(path, str) or ":" in path:
        return None
    return path if path.startswith("/") else "/" + path


def rootfs_of(bundle: str) -> str:
    """The bundle's rootfs as config.json names it (runc's default: rootfs)."""
    try:
        with open(os.path.join(bundle, "config.json"), encoding="utf-8") as f:
            path = (json.load(f).get("root") or {}).get("path")
    except (OSError, ValueError, AttributeError):
        path = None
    return os.path.normpath(os.path.join(bundle, path if isinstance(path, str) and path else "rootfs"))


def journal_ids(bundle: str) -> list[str]:
    """The IDs that killed restore --import runs into bundle were restoring (their journals say)."""
    found = []
    for d in recovery.stale_import_dirs(bundle):
        step = transaction.runc_step(transaction.read(d))
        if step is not None and containerid.is_valid(step.cid):
            found.append(step.cid)
    return found


def settle(runc: str, root: str, state_dir: str, cid: str, bundle: str | None, timeout: float) -> list[str]:
    """Steps 1-4 above for cid (call with its lock held); one message per repair."""
    cdir = containerid.container_dir(state_dir, cid)
    killed = intent.orphaned(cdir)
    bundle = bundle or next((i.bundle for i in killed.values() if i.bundle), None)
    scope = leftovers.Scope(
        root, cid, work_dirs=[cdir],
        criu_dirs=[os.path.join(cdir, RESTORE_WORK), *(recovery.stale_import_dirs(bundle) if bundle else [])],
        cgroup=cgroup_of(bundle, cid) if bundle and intent.RESTORE in killed else None,
        rootfs=rootfs_of(bundle) if bundle else None)
    mounts = leftovers.mounted(scope)
    if killed or leftovers.suspect(scope, mounts):
        # Reading the records above changed nothing; what runc may still be doing is waited for before
        # anything is repaired, and then looked at again.
        leftovers.wait_idle(root, cid, timeout)
        mounts = leftovers.mounted(scope)
    done = leftovers.repair(scope, mounts)
    exists = leftovers.has_state(scope)
    if intent.RESTORE in killed and exists and (held := leftovers.half_restored(scope)):
        # Recorded by runc at CRIU's post-restore, but CRIU died before it finished the tasks: a broken
        # container. Its images are still where the killed call staged them: the retry restores it again.
        subprocess.run([runc, "--root", root, "delete", "--force", cid], capture_output=True, check=False)
        exists = leftovers.has_state(scope)
        if exists:
            raise RuncCkptError(f"container {cid} was left half-restored by a killed runc restore (pid {held[0]} "
                                f"still holds CRIU's files) and cannot be deleted: clear it with "
                                f"`runc --root {root} delete --force {cid}`")
        done.append(f"deleted container {cid}: a killed runc restore had left it half-restored (CRIU's files "
                    f"still open in pid {held[0]}); a restore of its images starts it again")
        if bundle:   # that restore's bundle goes back as it was (its import dir's flock says nobody is at it)
            done += recovery.resolve_bundle(runc, bundle, rootfs_of(bundle), allow_undo=True)
    if intent.CHECKPOINT in killed and exists:
        done += _unfreeze(runc, root, cid, cgroup_of(bundle, cid) if bundle else None)
    done += predump.recover(cdir)
    done += memscratch.sweep(state_dir, cid)
    done += callscratch.sweep(cdir)
    done += tmpfsimages.recover(cdir)
    dumped = _dumped_since(cdir, killed.get(intent.CHECKPOINT))
    if dumped and exists and _status(runc, root, cid) == "stopped":
        # The killed run's dump completed and CRIU ended the tasks; runc would have deleted the container
        # next. Do it, so that the images (named by gone_hint) restore under the same ID.
        subprocess.run([runc, "--root", root, "delete", cid], capture_output=True, check=False)
        exists = leftovers.has_state(scope)
        done.append(f"deleted the stopped container {cid}: a killed checkpoint had dumped it completely")
    if intent.CHECKPOINT in killed and exists and _status(runc, root, cid) == "stopped" and not dumped:
        # CRIU's parasite code runs inside the tasks while it dumps them: a kill of CRIU then kills them.
        raise RuncCkptError(f"container {cid} died when its checkpoint was killed inside CRIU's dump, and no "
                            f"complete images exist: nothing can bring its processes back; clear it with "
                            f"`runc --root {root} delete -f {cid}` and start it again")
    # An encrypted checkpoint's plaintext images on tmpfs: kept only while they are the container's only copy.
    done += tmpfsimages.sweep(cdir, exists)
    for op in killed:
        if exists or op == intent.RESTORE:
            intent.end(cdir, op)      # kept while the container is gone: gone_hint() names its bundle
    return done


def _dumped_since(cdir: str, killed: intent.Intent | None) -> bool:
    """Whether checkpoint/ holds a complete dump written by the killed checkpoint (not older images)."""
    if killed is None:
        return False
    try:
        return os.stat(os.path.join(cdir, predump.CHECKPOINT, "inventory.img")).st_mtime >= killed.since - 1
    except OSError:
        return False


def _status(runc: str, root: str, cid: str) -> str | None:
    state = recovery.runc_state(runc, root, cid)
    return str(state["status"]) if state and "status" in state else None


def _unfreeze(runc: str, root: str, cid: str, cgroup: str | None) -> list[str]:
    """A killed checkpoint's container: resume it if paused, continue tasks CRIU left stopped."""
    status = _status(runc, root, cid)
    done = []
    if status == "paused":
        res = subprocess.run([runc, "--root", root, "resume", cid], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuncCkptError(f"container {cid} was left frozen by a killed checkpoint and `runc resume` failed "
                                f"({res.stderr.strip()}): clear it with `runc --root {root} resume {cid}`")
        done.append(f"resumed container {cid}, left frozen by a killed checkpoint")
    elif cgroup is not None and leftovers.thaw_frozen(cgroup):
        done.append(f"thawed container {cid}, left frozen by a killed checkpoint")
    stopped = leftovers.continue_stopped(cgroup) if cgroup is not None else []
    if stopped:
        done.append(f"continued {len(stopped)} task(s) of {cid} that a killed CRIU left stopped")
    return done


def gone_hint(state_dir: str, root: str, cid: str) -> str | None:
    """For a container that a killed checkpoint of ours stopped: where its images are, and the restore call."""
    cdir = containerid.container_dir(state_dir, cid)
    images = os.path.join(cdir, predump.CHECKPOINT)
    if not os.path.isfile(os.path.join(images, DESCRIPTORS)):
        return None
    killed = intent.orphaned(cdir)
    bundle = next((i.bundle for i in killed.values() if i.bundle), None)
    if bundle is None:
        return None
    if intent.SENT in killed and intent.CHECKPOINT not in killed and intent.STREAM not in killed:
        return (f"container {cid} was sent to another host by checkpoint --export - without a back channel; its "
                f"images are in {images}: if the target did not restore it, bring it back here with "
                f"`{restore_command(root, bundle, cid)}`")
    unless = " (unless the stream's target restored it)" if intent.STREAM in killed else ""
    return (f"container {cid} was stopped by a checkpoint that was killed before it finished; its images are in "
            f"{images}: bring it back{unless} with `{restore_command(root, bundle, cid)}`")


def restore_command(root: str, bundle: str, cid: str) -> str:
    """The one call that restores a container from its images in the state dir."""
    return f"runc-ckpt --root {root} restore -d --bundle {bundle} {cid}"


def forget(state_dir: str, cid: str) -> None:
    """The container is being restored: the killed checkpoint's records have served."""
    cdir = containerid.container_dir(state_dir, cid)
    for op in intent.orphaned(cdir):
        intent.end(cdir, op)
