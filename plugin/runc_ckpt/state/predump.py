"""Where a checkpoint's images go, and how pre-dumps chain through --parent-path.

runc wants --parent-path RELATIVE to --image-path (it refuses an absolute
one) and CRIU, given a wrong one, silently writes a full dump. CRIU then
records the parent as a `parent` symlink in the image dir; it must stay
relative so the images can be moved or archived together (CRIU issue 116).

Paths the caller gives (podman, CRI-O and containerd always give
--image-path/--work-path) are honoured exactly; we only validate a caller's
--parent-path the way runc and CRIU will read it, and compute one for
--with-previous from the podman layout: the `pre-checkpoint` directory beside
the image dir (`<bundle>/checkpoint` + `<bundle>/pre-checkpoint`).

Without --image-path the images go where runc puts them (./checkpoint, the
work files beside them), unless a feature of ours needs the state dir
(--export, --pre-checkpoint, --with-previous, several containers, --all,
--latest). There each container has one directory, laid out so that every link is relative and stays valid while
pre-dumps chain (podman keeps only one pre-checkpoint; we keep the chain):

    <state_dir>/<id>/
      pre-checkpoint.1/          first pre-dump of a chain (no parent)
      pre-checkpoint.2/          parent -> ../pre-checkpoint.1
      pre-checkpoint.3/          parent -> ../pre-checkpoint.2
      pre-checkpoint -> pre-checkpoint.3   newest pre-dump of the current chain
      checkpoint/                latest full dump; parent -> ../pre-checkpoint.3
                                 when taken --with-previous
      work/                      CRIU's dump.log and stats-dump of the latest run
      .checkpoint.new-<pid>/     a full dump in progress, exchanged with checkpoint/
                                 (renameat2 RENAME_EXCHANGE) only once it succeeded, so
                                 checkpoint/ never goes missing; one a killed run left is
                                 recovered into place by the next call (recover())
      checkpoint -> /dev/shm/... an encrypted export's dump: its images live on tmpfs
                                 (state/tmpfsimages), only ever linked from here

Parents are named by their numbered directory, never through the
`pre-checkpoint` pointer, so a later pre-dump cannot change what an older
dump's parent means. A full checkpoint ends the chain: it drops the pointer
(not the directories, which its own `parent` may still need), so the next
--pre-checkpoint starts a new chain and --with-previous needs a new
pre-checkpoint, as podman requires.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.record import Record
from runc_ckpt.runtime import containerid, faults, safe_remove
from runc_ckpt.runtime.criu import PARENT_LINK
from runc_ckpt.state import tmpfsimages

PRE_PREFIX = "pre-checkpoint"        # numbered dirs pre-checkpoint.N and the pointer
CHECKPOINT = "checkpoint"
WORK = "work"
PODMAN_PRE = "pre-checkpoint"        # podman's sibling of <bundle>/checkpoint
_NUMBERED = re.compile(r"pre-checkpoint\.([0-9]+)")
CRIU_LOGS = ("dump.log", "stats-dump")
# runc 1.1.5's --image-path default (utils_linux.go getDefaultImagePath): $CWD/checkpoint.
RUNC_DEFAULT_IMAGES = "checkpoint"
SUPERSEDED = ".superseded"           # marks images being replaced (see _install)


class CallerPaths(Record):
    """What the caller said with runc's own flags (None: not given)."""

    image_path: str | None = None
    work_path: str | None = None
    parent_path: str | None = None
    pre_dump: bool = False


class Plan(Record):
    """Where one checkpoint writes, and the runc flags that say so."""

    image_dir: str                 # absolute: where runc/CRIU write the images
    final_dir: str                 # absolute: where the images are after finish()
    work_dir: str                  # absolute: dump.log and stats-dump
    pre_dump: bool
    parent_path: str | None        # relative to image_dir, as runc gets it
    add_flags: Sequence[str] = ()  # runc flags we add to the caller's
    container_dir: str | None = None  # <state_dir>/<id> when the images are ours
    own_work: bool = False         # work_dir is ours (we may tidy it)
    memory_dir: str | None = None  # the tmpfs dir holding image_dir (state/tmpfsimages): encrypted, a pre-copy freeze
    record_dir: str | None = None  # <state_dir>/<id>, where the tmpfs dir is recorded (set with memory_dir)
    copy_at: str | None = None     # the caller's sealed images dir's listing (trust.sealeddir), once written

    @property
    def ours(self) -> bool:
        return self.container_dir is not None

    @property
    def seals_caller_dir(self) -> bool:
        """Node-level encryption: CRIU dumps into tmpfs, the caller's --image-path gets the images sealed."""
        return self.memory_dir is not None and not self.ours


def validate_parent(image_dir: str, parent: str) -> None:
    """Check --parent-path as runc and CRIU will read it: relative to the image dir, a directory."""
    if os.path.isabs(parent):
        raise RuncCkptError("--parent-path must be relative")
    target = _join_real(image_dir, parent)
    if not os.path.isdir(target):
        raise RuncCkptError(f"--parent-path {parent}: {target} is not a directory "
                            f"(the path is relative to the image path {image_dir})")


def _join_real(image_dir: str, rel: str) -> str:
    """image_dir/rel resolved as the kernel will once image_dir exists."""
    if os.path.isdir(image_dir):
        return os.path.realpath(os.path.join(image_dir, rel))
    return os.path.normpath(os.path.join(os.path.realpath(image_dir), rel))


def relative_parent(image_dir: str, pre_dir: str) -> str:
    """--parent-path for pre_dir, relative to image_dir through both real paths."""
    return os.path.relpath(os.path.realpath(pre_dir), os.path.realpath(image_dir))


def check_self_contained(p: Plan) -> None:
    """An archive holds one pre-checkpoint (podman's --import-previous takes one), so a dump that
    builds on a chain of them would restore with pages missing: refuse it before touching anything."""
    if p.parent_path is None:
        return
    if p.pre_dump:
        raise RuncCkptError(f"--export: this pre-checkpoint would hold only the pages changed since "
                            f"{p.parent_path}, and an archive holds one self-contained pre-checkpoint; "
                            "export the first pre-checkpoint of a chain (after a full checkpoint)")
    if os.path.lexists(os.path.join(parent_dir(p), PARENT_LINK)):
        raise RuncCkptError(f"--export: the pre-checkpoint {p.parent_path} itself builds on another one, "
                            "and an archive holds one self-contained pre-checkpoint")


def parent_dir(p: Plan) -> str:
    """The directory of the pre-dump a dump builds on (p.parent_path is relative to its image dir)."""
    assert p.parent_path is not None
    return os.path.normpath(os.path.join(os.path.realpath(os.path.dirname(p.image_dir)),
                                         os.path.basename(p.image_dir), p.parent_path))


def numbered(container_dir: str) -> list[int]:
    """The N of every pre-checkpoint.N directory, ascending."""
    try:
        names = os.listdir(container_dir)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise RuncCkptError(f"state dir {container_dir}: {e.strerror}") from None
    found = []
    for name in names:
        m = _NUMBERED.fullmatch(name)
        if m and os.path.isdir(os.path.join(container_dir, name)) \
                and not os.path.islink(os.path.join(container_dir, name)):
            found.append(int(m.group(1)))
    return sorted(found)


def newest_pre(container_dir: str) -> str | None:
    """The numbered dir the `pre-checkpoint` pointer names, if it is valid."""
    pointer = os.path.join(container_dir, PRE_PREFIX)
    try:
        target = os.readlink(pointer)
    except OSError:
        return None
    if _NUMBERED.fullmatch(target) is None or not os.path.isdir(os.path.join(container_dir, target)):
        return None
    return target


def plan(state_dir: str, container_id: str, caller: CallerPaths, pre_checkpoint: bool,
         with_previous: bool, in_state_dir: bool = True, memory_dir: str | None = None) -> Plan:
    """Decide the image/work/parent paths of one checkpoint; touch nothing.

    Without --image-path the images go where runc puts them (./checkpoint,
    no flag added) unless in_state_dir: a feature of ours (--export, a
    pre-checkpoint chain, several containers) keeps them in the state dir.
    memory_dir (a full dump without a parent): CRIU writes the images into
    this tmpfs dir instead (state/tmpfsimages); in the state dir they are
    linked as checkpoint/, at the caller's --image-path they are sealed
    into it (trust.sealeddir; the caller's argv names the tmpfs dir instead).
    """
    pre_dump = caller.pre_dump or pre_checkpoint
    if with_previous and pre_dump:
        raise RuncCkptError("--with-previous cannot be used with --pre-checkpoint (or --pre-dump)")
    if with_previous and caller.parent_path is not None:
        raise RuncCkptError("--with-previous and --parent-path both name the parent images: give one")
    extra = ["--pre-dump"] if pre_checkpoint and not caller.pre_dump else []
    if caller.image_path is not None:
        p = _plan_caller(caller, pre_dump, with_previous, extra)
        if memory_dir is None or p.pre_dump or p.parent_path is not None:
            return p
        containerid.check(container_id)
        # Imported here, not at the top: trust/ only where a key seals the caller's dir (checkpoint.flow).
        from runc_ckpt.trust import sealeddir
        return Plan(image_dir=tmpfsimages.images_of(memory_dir), final_dir=p.final_dir,
                    work_dir=os.path.abspath(caller.work_path) if caller.work_path
                    else tmpfsimages.images_of(memory_dir),
                    pre_dump=False, parent_path=None, add_flags=p.add_flags, memory_dir=memory_dir,
                    record_dir=containerid.container_dir(state_dir, container_id),
                    copy_at=os.path.join(p.final_dir, sealeddir.LISTING))
    if not in_state_dir:
        return _plan_caller(caller, pre_dump, with_previous, extra, RUNC_DEFAULT_IMAGES)
    return _plan_ours(state_dir, container_id, caller, pre_dump, with_previous, extra, memory_dir)


def _plan_caller(caller: CallerPaths, pre_dump: bool, with_previous: bool, extra: list[str],
                 default: str | None = None) -> Plan:
    image_dir = os.path.abspath(caller.image_path or default or "")
    # Without --work-path runc has CRIU write its logs into the image dir.
    work_dir = os.path.abspath(caller.work_path) if caller.work_path else image_dir
    parent = caller.parent_path
    if with_previous:
        pre_dir = os.path.join(os.path.dirname(image_dir), PODMAN_PRE)
        if not os.path.isdir(pre_dir):
            raise RuncCkptError(f"--with-previous: there is no pre-checkpoint at {pre_dir}: "
                                "run with --pre-checkpoint first")
        parent = relative_parent(image_dir, pre_dir)
        extra = [*extra, "--parent-path", parent]
    if parent is not None:
        validate_parent(image_dir, parent)
    return Plan(image_dir=image_dir, final_dir=image_dir, work_dir=work_dir, pre_dump=pre_dump,
                parent_path=parent, add_flags=extra)


def _plan_ours(state_dir: str, container_id: str, caller: CallerPaths, pre_dump: bool,
               with_previous: bool, extra: list[str], memory_dir: str | None = None) -> Plan:
    containerid.check(container_id)
    container_dir = containerid.container_dir(state_dir, container_id)
    newest = newest_pre(container_dir)
    parent = caller.parent_path
    if pre_dump:
        n = max(numbered(container_dir), default=0) + 1
        image_dir = final_dir = os.path.join(container_dir, f"{PRE_PREFIX}.{n}")
        if parent is None and newest is not None:
            parent = os.path.join("..", newest)
    else:
        image_dir = tmpfsimages.images_of(memory_dir) if memory_dir else \
            os.path.join(container_dir, f".{CHECKPOINT}.new-{os.getpid()}")
        final_dir = os.path.join(container_dir, CHECKPOINT)
        if with_previous:
            if newest is None:
                raise RuncCkptError(f"--with-previous: container {container_id} has no pre-checkpoint "
                                    f"in {container_dir}: run with --pre-checkpoint first")
            parent = os.path.join("..", newest)
    if parent is not None:
        validate_parent(image_dir, parent)
    own_work = caller.work_path is None
    work_dir = os.path.join(container_dir, WORK) if own_work else os.path.abspath(caller.work_path or "")
    flags = ["--image-path", image_dir]
    if own_work:
        flags += ["--work-path", work_dir]
    flags += extra
    if parent is not None and caller.parent_path is None:
        flags += ["--parent-path", parent]
    return Plan(image_dir=image_dir, final_dir=final_dir, work_dir=work_dir, pre_dump=pre_dump,
                parent_path=parent, add_flags=flags, container_dir=container_dir, own_work=own_work,
                memory_dir=memory_dir if not pre_dump else None,
                record_dir=container_dir if memory_dir and not pre_dump else None)


def prepare(p: Plan) -> None:
    """Create our directories (never the caller's: runc does that) and clear our stale logs."""
    if p.memory_dir is not None and p.record_dir is not None:
        if p.copy_at is not None:
            # An older sealed dump's listing would say this dump is sealed already (state/tmpfsimages).
            _unlink(p.copy_at)
        tmpfsimages.make(p.record_dir, p.memory_dir, p.copy_at)
    if not p.ours:
        return
    if p.memory_dir is None and not p.pre_dump:
        # Named for our PID, so a leftover is from a dead run that reused it.
        safe_remove.remove_tree(p.image_dir, ignore_errors=True)
    try:
        os.makedirs(p.image_dir, mode=0o700, exist_ok=False)
        if p.own_work:
            os.makedirs(p.work_dir, mode=0o700, exist_ok=True)
            for name in CRIU_LOGS:
                _unlink(os.path.join(p.work_dir, name))
    except OSError as e:
        raise RuncCkptError(f"state dir {p.container_dir}: {e.strerror}: {e.filename}") from None


def make_parent_link_relative(image_dir: str) -> None:
    """Rewrite an absolute `parent` symlink in image_dir as a relative one, atomically."""
    link = os.path.join(image_dir, PARENT_LINK)
    try:
        target = os.readlink(link)
    except OSError:
        return
    if not os.path.isabs(target):
        return
    rel = os.path.relpath(os.path.realpath(target), os.path.realpath(image_dir))
    tmp = os.path.join(image_dir, f".parent.{os.getpid()}")
    try:
        os.symlink(rel, tmp)
        os.replace(tmp, link)
    except OSError as e:
        _unlink(tmp)
        raise RuncCkptError(f"cannot make {link} relative: {e.strerror}") from None


def finish(p: Plan) -> None:
    """After runc succeeded: relative parent link, our dirs in place, the chain pointer updated."""
    make_parent_link_relative(p.image_dir)
    if not p.ours:
        return
    assert p.container_dir is not None
    try:
        if p.pre_dump:
            _point(os.path.join(p.container_dir, PRE_PREFIX), os.path.basename(p.image_dir))
            return
        if p.memory_dir is not None:
            tmpfsimages.link(p.container_dir, p.memory_dir)
        else:
            _install(p.image_dir, p.final_dir)
        _unlink(os.path.join(p.container_dir, PRE_PREFIX))
    except OSError as e:
        raise RuncCkptError(f"checkpoint succeeded but its images stay in {p.image_dir}: "
                            f"{e.strerror}: {e.filename}") from None


def _install(new: str, final: str) -> None:
    """Put the images in new at final with no moment at which final is missing; drop the old ones."""
    if not os.path.lexists(final):
        os.rename(new, final)
        return
    # Marked first, so that recover() never takes the old images (at `new` after the
    # exchange) for a stranded dump if we are killed before they are removed.
    marker = os.path.join(final, SUPERSEDED)
    with open(marker, "wb"):
        pass
    if _exchange(new, final):
        safe_remove.remove_tree(new, ignore_errors=True)    # new holds the old images now
        return
    _unlink(marker)
    # No RENAME_EXCHANGE on this filesystem: the old images move aside first (a short window).
    old = f"{final}.old-{os.getpid()}"
    os.rename(final, old)
    os.rename(new, final)
    safe_remove.remove_tree(old, ignore_errors=True)


def _exchange(a: str, b: str) -> bool:
    """renameat2(RENAME_EXCHANGE): swap two paths atomically; False where the kernel/fs lacks it."""
    import ctypes
    import errno
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), b)


def recover(container_dir: str) -> list[str]:
    """What a killed checkpoint of this container left; call with the container's lock held.

    The lock outlives runc (runc inherits it), so whatever is found here is
    from a dead run. A `.checkpoint.new-<pid>` holding a complete dump
    (inventory.img is CRIU's last write) is newer than checkpoint/ and
    replaces it; an incomplete one and `.old-`/`.tmp-` leftovers are removed.
    Returns one message per thing done, for the caller to report.
    """
    done: list[str] = []
    try:
        names = sorted(os.listdir(container_dir))
    except OSError:
        return done
    final = os.path.join(container_dir, CHECKPOINT)
    for name in names:
        path = os.path.join(container_dir, name)
        if name.startswith(f".{CHECKPOINT}.new-") and os.path.isdir(path) and not os.path.islink(path):
            if os.path.lexists(os.path.join(path, SUPERSEDED)):
                safe_remove.remove_tree(path, ignore_errors=True)     # the old images, already replaced
            elif os.path.isfile(os.path.join(path, "inventory.img")):
                make_parent_link_relative(path)
                _install(path, final)
                _unlink(os.path.join(container_dir, PRE_PREFIX))
                done.append(f"recovered the images of an interrupted checkpoint into {final}")
            else:
                safe_remove.remove_tree(path, ignore_errors=True)
                done.append(f"removed {path}: the images of an interrupted checkpoint, incomplete")
        elif name.startswith((f"{CHECKPOINT}.old-", f".{CHECKPOINT}.old-", f"{PRE_PREFIX}.tmp-", f"{CHECKPOINT}.tmp-")):
            if os.path.isdir(path) and not os.path.islink(path):
                safe_remove.remove_tree(path, ignore_errors=True)
            else:
                _unlink(path)
            done.append(f"removed {path}, left by an interrupted checkpoint")
    _unlink(os.path.join(final, SUPERSEDED))   # killed after marking, before the exchange
    return done


def abandon(p: Plan) -> None:
    """After runc failed: drop the images dir we made (useless); CRIU's dump.log stays in work_dir."""
    if p.memory_dir is not None and p.record_dir is not None:
        tmpfsimages.wipe(p.record_dir, p.memory_dir)
    elif p.ours:
        safe_remove.remove_tree(p.image_dir, ignore_errors=True)


def tidy_after_export(p: Plan) -> list[str]:
    """Without --keep, after a successful export: remove what we created and the archive holds.

    Never touches a caller's path. Pre-dump images stay: a later pre-dump or
    --with-previous needs them as its parent. Returns what was removed.
    """
    removed: list[str] = []
    if p.own_work:
        for name in CRIU_LOGS:
            path = os.path.join(p.work_dir, name)
            if _unlink(path):
                removed.append(path)
    if p.memory_dir is not None and p.record_dir is not None:
        faults.point("tmpfs-wipe")
        tmpfsimages.wipe(p.record_dir, p.memory_dir)
        removed.append(p.memory_dir)
    elif p.ours and not p.pre_dump and os.path.isdir(p.final_dir):
        safe_remove.remove_tree(p.final_dir, ignore_errors=True)
        removed.append(p.final_dir)
    # Leave no empty per-container directories behind (kept pre-dumps keep theirs).
    for d in ([p.work_dir] if p.own_work else []) + ([p.container_dir] if p.container_dir else []):
        try:
            os.rmdir(d)
            removed.append(d)
        except OSError:
            pass
    return removed


def _point(pointer: str, target: str) -> None:
    tmp = f"{pointer}.tmp-{os.getpid()}"
    _unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, pointer)


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
