"""What a killed restore --import left in a bundle, resolved by the next call that holds the bundle.

A killed restore leaves its import dir (`<bundle>/.runc-ckpt-import-*`)
with a journal (restore.transaction). The next restore into that bundle, or
the next checkpoint of a container running from it, finds each import dir
whose flock nobody holds (its restore and its runc are gone) and:

  * if the journal says runc restore had started and runc now reports that
    container, running from this bundle: the restore worked, keep it and
    drop the undo data;
  * otherwise, when undo is allowed (restore, which owns the bundle now):
    put the bundle, rootfs and volumes back as they were;
  * otherwise (a container runs from a half-restored bundle that someone
    else started): leave the files and say so.

Stale staging dirs in the rootfs go too. Every action comes back as one
message for the caller to log.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess

from runc_ckpt.runtime import safe_remove
from runc_ckpt.state import tmpfsimages, transaction

IMPORT_PREFIX = ".runc-ckpt-import-"


def runc_state(runc: str, root: str, cid: str) -> dict[str, object] | None:
    """`runc state` of (root, cid), parsed once for every question asked of it: None when there is no such
    container, {} when runc's answer is not a JSON object (it exists, nothing more is known)."""
    out = subprocess.run([runc, "--root", root, "state", cid], capture_output=True, check=False)
    if out.returncode != 0:
        return None
    try:
        doc = json.loads(out.stdout)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def container_bundle(runc: str, root: str, cid: str) -> str | None:
    """The bundle runc reports for (root, cid), or None when there is no such container."""
    state = runc_state(runc, root, cid)
    return None if state is None else str(state.get("bundle") or "")


def stale_import_dirs(bundle: str) -> list[str]:
    try:
        names = sorted(os.listdir(bundle))
    except OSError:
        return []
    return [os.path.join(bundle, n) for n in names if n.startswith(IMPORT_PREFIX)]


def resolve_bundle(runc: str, bundle: str, rootfs: str | None, allow_undo: bool) -> list[str]:
    """Resolve every stale import dir in bundle, then sweep stale staging in rootfs; returns messages."""
    messages = []
    unresolved = False
    for path in stale_import_dirs(bundle):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                unresolved = True             # a live restore (or its runc) holds it
                continue
            message = _resolve(runc, bundle, path, allow_undo)
            unresolved = unresolved or os.path.lexists(path)
            if message:
                messages.append(message)
        finally:
            os.close(fd)
    if rootfs and not unresolved:             # else its undo data may be there
        messages += [f"removed {p}, left by a killed restore" for p in transaction.sweep_staging(rootfs)]
    return messages


def _resolve(runc: str, bundle: str, path: str, allow_undo: bool) -> str | None:
    # An encrypted archive's decrypted images on tmpfs (recorded in the import dir): never needed again,
    # whatever the outcome -- the archive is the durable copy.
    for rec in tmpfsimages.records(path):
        tmpfsimages.wipe(path, rec.directory)
    steps = transaction.read(path)
    ran = transaction.runc_step(steps)
    if ran is not None:
        found = container_bundle(runc, ran.root, ran.cid)
        if found is not None and os.path.realpath(found or bundle) == os.path.realpath(bundle):
            transaction.commit(steps)
            safe_remove.remove_tree(path, ignore_errors=True)
            return f"a killed restore --import of {ran.cid} had finished: kept it, removed {path}"
    changed = [s for s in steps if s.op not in ("target", "runc")]
    if changed and not allow_undo:
        return (f"{path} is left by a restore --import killed while applying; a container runs from this bundle "
                f"now, so its files are left as they are (the next restore --import into it rolls them back)")
    problems = transaction.undo(steps)
    safe_remove.remove_tree(path, ignore_errors=True)
    for d in transaction.undo_dirs(steps):
        with contextlib.suppress(OSError):
            safe_remove.remove_tree(d)
    if not changed:
        return f"removed {path}, left by a killed restore --import (nothing had been applied)"
    more = f"; could not undo: {'; '.join(problems)}" if problems else ""
    return f"rolled back a restore --import that was killed while applying (from {path}){more}"
