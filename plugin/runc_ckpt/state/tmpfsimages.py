"""CRIU's images of an encrypted checkpoint live on tmpfs, never on disk, and are wiped on every path.

An encrypted export (--export FILE, --export -, --create-image) must not
leave the process's pages in the clear on disk, not even for the moments
between the dump and the sealed write. So CRIU dumps into a private
directory on tmpfs (/dev/shm, checked to be tmpfs at run time: without one
the call is refused rather than written to disk), and the images are sealed
from there. A `--pre-copy` stream's freeze dumps here too, encrypted or not
(migrate/memory.p1_on_tmpfs): its dump is read once more and sent, and on
disk the freeze waited for writeback:

    /dev/shm/runc-ckpt-images-<random>/     0700, ours
      checkpoint/                           CRIU's images (--image-path)
    <state_dir>/<id>/.tmpfs-<random>.json   names that dir: pid + start of the call that made it
    <state_dir>/<id>/checkpoint -> /dev/shm/runc-ckpt-images-<random>/checkpoint   after the dump

The record is written before the directory exists and removed only after it
is gone, so a kill -9 of the whole tree at any point leaves a record the next
call that settles the container finds (state/settle). The state dir's
`checkpoint` link makes the images the container's checkpoint while they
are needed, so everything that handles state-dir images (a plain `restore
ID`, the hint that names the restore call, the stream's restore-here) works
through it unchanged.

Issue 19's rule stays: without --leave-running the dumped images may be the
container's only copy until the export is complete. So a dead call's images
are wiped unless they are complete and the container is gone -- then they
are kept (and linked) so that the container can be restored, and wiped by
the first call that finds the container running again. tmpfs survives our
death but not a reboot: the images of a killed call are then lost with the
container's processes, and only a completed export remains.

CRIU's work dir (dump.log, stats-dump) stays in the state dir: it holds no
memory, and runc's error line names its log, which must outlive the wipe.
"""

from __future__ import annotations

import contextlib
import json
import os

from runc_ckpt.base import record
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.rootfs import mountinfo
from runc_ckpt.runtime import atomicfile, faults, procscan, safe_remove
from runc_ckpt.runtime.memscratch import TMPFS  # the one place that says where our tmpfs dirs live

PREFIX = "runc-ckpt-images-"
IMAGES = "checkpoint"            # CRIU's images inside the tmpfs dir
INVENTORY = "inventory.img"      # CRIU's last write: the dump is complete
_RECORD = ".tmpfs-"


class Record(record.Record):
    """One tmpfs dir a call made for a container; alive: whether that call still runs."""

    path: str                    # the record file in the container's state dir
    directory: str               # the tmpfs dir it names
    alive: bool
    copy_at: str | None = None   # a file whose presence proves a durable (sealed) copy: the dir is never needed


def choose() -> str:
    """A fresh tmpfs dir name (not created yet); refuses the call where /dev/shm is not tmpfs."""
    try:
        mount = mountinfo.find_mount(TMPFS)
    except OSError as e:
        raise RuncCkptError(f"encryption: cannot read the mount table ({e.strerror}) to check that {TMPFS} "
                            "is tmpfs; refusing to write the checkpoint's memory to disk") from None
    if mount is None or mount.fstype != "tmpfs":
        raise RuncCkptError(f"encryption: {TMPFS} is not a tmpfs mount, so CRIU's images of an encrypted "
                            "checkpoint would be written to disk in the clear; mount one there "
                            f"(`mount -t tmpfs -o mode=1777 shm {TMPFS}`)")
    return os.path.join(TMPFS, PREFIX + token())


def token() -> str:
    """The random part of a tmpfs dir's name: secrets.token_hex(8), without that module's ~3 ms of imports
    (this module loads before runc is forked)."""
    return os.urandom(8).hex()


def images_of(directory: str) -> str:
    return os.path.join(directory, IMAGES)


def _record_path(container_dir: str, directory: str) -> str:
    return os.path.join(container_dir, f"{_RECORD}{os.path.basename(directory)}.json")


def make(container_dir: str, directory: str, copy_at: str | None = None) -> None:
    """Record the tmpfs dir in the container's state dir, then create it (0700): a kill leaves the record.

    copy_at: a file that, once it exists, proves the images are also kept sealed (trust.sealeddir's
    listing): a dead call's dir is then wiped whatever the container's state.
    """
    pid, start = procscan.identity()
    try:
        os.makedirs(container_dir, mode=0o700, exist_ok=True)
        atomicfile.write_json(_record_path(container_dir, directory),
                              {"dir": directory, "pid": pid, "start": start, "copy_at": copy_at},
                              mode=0o600, indent=None)
        os.mkdir(directory, 0o700)
    except OSError as e:
        raise RuncCkptError(f"encryption: cannot make the tmpfs dir for CRIU's images: {e.strerror}: "
                            f"{e.filename}") from None
    faults.point("tmpfs-made")


def wipe(container_dir: str, directory: str) -> None:
    """Remove the tmpfs dir and the state dir's link to it, then the record.

    inventory.img goes first: a kill in the middle leaves an incomplete dump,
    which the next call wipes instead of keeping.
    """
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(images_of(directory), INVENTORY))
    unlink_link(container_dir, directory)
    safe_remove.remove_tree(directory, ignore_errors=True)
    if not os.path.lexists(directory):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_record_path(container_dir, directory))


def unlink_link(container_dir: str, directory: str) -> None:
    """Remove the state dir's `checkpoint` link if it names this tmpfs dir's images."""
    link = os.path.join(container_dir, IMAGES)
    with contextlib.suppress(OSError):
        if os.readlink(link) == images_of(directory):
            os.unlink(link)


def complete(directory: str) -> bool:
    return os.path.isfile(os.path.join(images_of(directory), INVENTORY))


def records(container_dir: str) -> list[Record]:
    """Every tmpfs dir recorded for the container. A record naming anything but one of our tmpfs dirs is
    dropped: the state dir is ours, but what we remove must be ours for certain."""
    found: list[Record] = []
    try:
        names = sorted(os.listdir(container_dir))
    except OSError:
        return found
    for name in names:
        if not (name.startswith(_RECORD) and name.endswith(".json")):
            continue
        path = os.path.join(container_dir, name)
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            directory, pid, start = str(doc["dir"]), int(doc["pid"]), doc.get("start")
            alive = procscan.alive(pid, start if isinstance(start, int) else None)
            copy_at = doc.get("copy_at") if isinstance(doc.get("copy_at"), str) else None
        except (OSError, ValueError, KeyError, TypeError):
            # Torn (killed while writing it, before the dir existed): its name still says which dir.
            directory, alive, copy_at = os.path.join(TMPFS, name[len(_RECORD):-len(".json")]), False, None
        if os.path.dirname(directory) != TMPFS or not os.path.basename(directory).startswith(PREFIX) \
                or _record_path(container_dir, directory) != path:
            with contextlib.suppress(OSError):
                os.unlink(path)
            continue
        found.append(Record(path, directory, alive, copy_at))
    return found


def recover(container_dir: str) -> list[str]:
    """After a killed call (container lock held): keep and link a complete dump, wipe an incomplete one.

    Runs where state/predump.recover does, before anyone asks whether the killed call's dump completed:
    a complete dump in a dead call's tmpfs dir is the container's checkpoint, as a stranded one in the
    state dir is. Returns one message per thing done.
    """
    done = []
    for rec in records(container_dir):
        if rec.alive:
            continue
        if rec.copy_at is not None and os.path.exists(rec.copy_at):
            wipe(container_dir, rec.directory)
            done.append(f"removed {rec.directory}: plaintext images of an interrupted call, kept sealed "
                        f"in {os.path.dirname(rec.copy_at)}")
        elif not complete(rec.directory):
            wipe(container_dir, rec.directory)
            done.append(f"removed {rec.directory}: CRIU's images of an interrupted checkpoint on tmpfs, "
                        "incomplete")
        elif link(container_dir, rec.directory):
            done.append(f"kept the images of an interrupted checkpoint on tmpfs at {rec.directory} "
                        f"(linked as {os.path.join(container_dir, IMAGES)}) until the container runs again")
    return done


def link(container_dir: str, directory: str) -> bool:
    """Make the state dir's `checkpoint` name these images, unless it names newer ones; whether it changed.

    Older images there (a directory, or a link to another tmpfs dir) are superseded by a newer dump.
    """
    target = images_of(directory)
    path = os.path.join(container_dir, IMAGES)
    try:
        if os.readlink(path) == target:
            return False
    except OSError:
        pass
    try:
        if os.stat(os.path.join(path, INVENTORY)).st_mtime > os.stat(os.path.join(target, INVENTORY)).st_mtime:
            return False
    except OSError:
        pass
    if os.path.isdir(path) and not os.path.islink(path):
        safe_remove.remove_tree(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, path)
    return True


def sweep(container_dir: str, container_exists: bool, only: str | None = None) -> list[str]:
    """Wipe dead calls' tmpfs dirs (only: this one, whether its call runs or not) that are no longer needed.

    Needed means complete while the container is gone: its only copy. Returns one message per dir wiped.
    """
    done = []
    for rec in records(container_dir):
        if (rec.directory != only) if only is not None else rec.alive:
            continue
        if complete(rec.directory) and not container_exists:
            continue
        wipe(container_dir, rec.directory)
        if only is None:
            done.append(f"removed {rec.directory}: the images of a checkpoint on tmpfs, no longer "
                        "needed")
    return done
