"""Will this host restore the checkpoint? Each need (metadata.needs) checked before anything is touched.

One Check per need, each failure one line that names the cause and the
fix, so a cross-host restore fails up front in our words instead of late in
CRIU's ("File ... has bad size", "Connected TCP socket in image", a mount
error half-way through runc). Files are looked up as the restore will see
them: in the archive's rootfs diff if it carries them, gone if the diff
deletes them, else in the bundle's rootfs, symlinks resolved inside it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from runc_ckpt.base.record import Record
from runc_ckpt.metadata.needs import DIRECTORY, FILE, BindNeed, FileNeed, Needs, kind_of, sha256
from runc_ckpt.runtime import buildid, hostinfo, volumes
from runc_ckpt.runtime.criu import cpuinfo

NOT_BASE = "the bundle's rootfs is not the checkpoint's base image"
# Restore flags the images may require: (Needs attribute, flag, what the images hold, why it matters).
FLAG_NEEDS = (("tcp_established", "tcp-established", "established TCP connections",
               "add --tcp-established (or --tcp-close to drop them)"),
              ("file_locks", "file-locks", "file locks",
               "add --file-locks (without it CRIU restores the process without its locks)"),
              ("ext_unix_sk", "ext-unix-sk", "unix sockets connected outside the container",
               "add --ext-unix-sk"))
CGROUP_V1_PROBE = ("pids", "memory", "cpu", "freezer")


class Check(Record):
    what: str
    ok: bool
    detail: str


class Target(Record):
    """The host side: where the restore would run and how."""

    rootfs: str
    spec: dict | None                         # the spec runc will restore with
    flags: frozenset[str]                     # runc restore flags in effect, without dashes
    criu: str
    diff_root: str | None = None              # the staged rootfs diff (laid over rootfs), if any
    deleted: frozenset[str] = frozenset()     # what the diff deletes ("/etc/x")
    id_in_use: str | None = None              # "container ID x already exists here" when it does
    base_image: Mapping[str, str] = MappingProxyType({})
    ignore_binds: frozenset[str] = frozenset()  # destinations the restore recreates itself (podman's files)
    check_cgroup: bool = True                 # runc's own restore judges its cgroup first: leave it to runc
    cache_dir: str | None = None              # the state dir: its cached cpuinfo.img (runtime.criu.cpuinfo)


def run(needs: Needs, target: Target) -> list[Check]:
    """Every check; the caller refuses when any is not ok (unless --skip-preflight)."""
    checks: list[Check] = []
    if target.id_in_use:
        checks.append(Check("container ID", False, target.id_in_use))
    if needs.cpuinfo:
        checks.append(_cpu(needs.cpuinfo, target.criu, target.cache_dir))
    checks += _cgroup(needs, target)
    if needs.base_image.get("id") and target.base_image.get("id") \
            and needs.base_image["id"] != target.base_image["id"]:
        checks.append(Check("base image", False,
                            f"the bundle's image {target.base_image.get('name', '')} is {target.base_image['id']} "
                            f"but the checkpoint's base was {needs.base_image['id']}: {NOT_BASE}"))
    for attr, flag, held, fix in FLAG_NEEDS:
        if getattr(needs, attr):
            ok = flag in target.flags or (flag == "tcp-established" and "tcp-close" in target.flags)
            checks.append(Check(f"--{flag}", ok, "given" if ok else
                                f"the checkpoint holds {held} but the restore lacks --{flag}: {fix}"))
    checks += _binds(needs.binds, target)
    bad_files = [c for c in (_file(f, target) for f in needs.files) if c is not None]
    checks += bad_files
    if needs.files and not bad_files:
        checks.append(Check("files", True, f"{len(needs.files)} open or mapped files match"))
    return checks


def failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]


def table(checks: list[Check]) -> str:
    """The pass/fail table `restore --check` prints."""
    width = max((len(c.what) for c in checks), default=5)
    lines = [f"{'CHECK':<{width}}  RESULT  DETAIL"]
    lines += [f"{c.what:<{width}}  {'pass' if c.ok else 'FAIL':<6}  {c.detail}" for c in checks]
    return "\n".join(lines) + "\n"


def _cpu(image: bytes, criu: str, cache_dir: str | None) -> Check:
    verdict = cpuinfo.check(criu, image, cache_dir)
    if verdict.ok:
        return Check("cpu", True, "criu cpuinfo check passes")
    return Check("cpu", False, f"this CPU lacks features of the checkpointing CPU (criu cpuinfo check: "
                               f"{verdict.detail}): restore on a host whose CPU has the same features")


def _cgroup(needs: Needs, target: Target) -> list[Check]:
    out = []
    here = hostinfo.cgroups_version()
    if needs.cgroup_version and needs.cgroup_version != here:
        out.append(Check("cgroup version", False, f"the checkpoint was taken under cgroup {needs.cgroup_version} "
                                                  f"and this host runs cgroup {here}: restore on a cgroup "
                                                  f"{needs.cgroup_version} host"))
    linux = (target.spec or {}).get("linux")
    path = linux.get("cgroupsPath") if isinstance(linux, dict) else None
    if target.check_cgroup and isinstance(path, str) and path.startswith("/"):
        busy = _cgroup_pids(path, here)
        if busy:
            out.append(Check("cgroup", False, f"cgroup {path} already holds processes ({', '.join(busy[:3])}): "
                                              f"stop them, or change linux.cgroupsPath in the bundle's config.json"))
    return out


def _cgroup_pids(path: str, version: str) -> list[str]:
    dirs = [f"/sys/fs/cgroup{path}"] if version == "v2" else [f"/sys/fs/cgroup/{c}{path}" for c in CGROUP_V1_PROBE]
    for d in dirs:
        try:
            with open(os.path.join(d, "cgroup.procs"), encoding="ascii") as f:
                pids = f.read().split()
        except OSError:
            continue
        if pids:
            return pids
    return []


def _binds(recorded: Sequence[BindNeed], target: Target) -> list[Check]:
    out = []
    was = {b.destination: b for b in recorded}
    for m in volumes.bind_entries(target.spec or {}):
        source, dest = str(m.get("source") or ""), os.path.normpath(str(m.get("destination") or ""))
        if not os.path.isabs(source) or dest in target.ignore_binds:
            continue
        before = was.get(dest)
        try:
            now = kind_of(os.stat(source).st_mode)
        except OSError:
            then = f" but was a {before.kind} when checkpointed" if before else ""
            fix = f"create the {before.kind}" if before and before.kind in (FILE, DIRECTORY) else "create it"
            out.append(Check(f"bind {dest}", False, f"bind source {source} (mounted at {dest}) does not exist "
                                                    f"here{then}: {fix}, or change that mount in the bundle's "
                                                    f"config.json"))
            continue
        expected = before.kind if before else _kind_in_root(target, dest)
        if expected is not None and (expected == DIRECTORY) != (now == DIRECTORY):
            how = "was a " + expected + " when checkpointed" if before else f"is mounted on a {expected}"
            out.append(Check(f"bind {dest}", False, f"bind source {source} (mounted at {dest}) is a {now} here but "
                                                    f"{how}: put a {expected} at {source}, or change that mount "
                                                    f"in the bundle's config.json"))
        else:
            out.append(Check(f"bind {dest}", True, f"{source} ({now})"))
    return out


def _kind_in_root(target: Target, dest: str) -> str | None:
    where = _locate(target, dest)
    if where is None:
        return None
    try:
        return kind_of(os.stat(where).st_mode)
    except OSError:
        return None


def _file(need: FileNeed, target: Target) -> Check | None:
    """None when the file is as CRIU recorded it; else the failed Check."""
    where = _locate(target, need.path)
    what = f"file {need.path}"
    try:
        st = os.stat(where) if where is not None else None
    except OSError:
        st = None
    if st is None:
        then = f"a {_size(need.size)} file" if need.kind == FILE and need.size is not None else f"a {need.kind}"
        return Check(what, False, f"{need.path} is missing here but was {then} when checkpointed: {NOT_BASE}")
    assert where is not None
    now = kind_of(st.st_mode)
    if now != need.kind:
        return Check(what, False, f"{need.path} is a {now} here but was a {need.kind} when checkpointed: {NOT_BASE}")
    if need.kind != FILE:
        return None
    if need.size is not None and st.st_size != need.size:
        return Check(what, False, f"{need.path} is {_size(st.st_size)} here but was {_size(need.size)} when "
                                  f"checkpointed: {NOT_BASE}")
    if need.build_id is not None:
        found = buildid.read(where)
        if found != need.build_id:
            return Check(what, False, f"{need.path} has build-ID {found or 'none'} here but had {need.build_id} "
                                      f"when checkpointed (same size, another build): {NOT_BASE}")
    elif need.sha256 is not None and sha256(where) != need.sha256:
        return Check(what, False, f"{need.path} has the same size but other content (sha256) here than when "
                                  f"checkpointed: {NOT_BASE}")
    if stat.S_IMODE(st.st_mode) != stat.S_IMODE(need.mode) and need.mode:
        return Check(what, False, f"{need.path} has mode {stat.S_IMODE(st.st_mode):04o} here but had "
                                  f"{stat.S_IMODE(need.mode):04o} when checkpointed: {NOT_BASE}")
    return None


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 1024:
        return f"{n} B"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            text = f"{n / scale:.1f} {unit}"
            break
    # Two sizes that round alike still differ: then the bytes say by how much.
    return f"{text} ({n} B)" if n % 1024 else text


def _deleted(target: Target, path: str) -> bool:
    p = "/" + os.path.normpath(path).lstrip("/")     # never "//x": POSIX keeps a leading "//"
    while len(p) > 1:
        if p in target.deleted:
            return True
        p = os.path.dirname(p)
    return False


def _locate(target: Target, path: str) -> str | None:
    """Where path (in the container) would be after the diff is applied; None if nowhere."""
    rel = os.path.normpath(path).lstrip("/")
    if target.diff_root is not None:
        staged = _resolve(target.diff_root, rel)
        if staged is not None and os.path.lexists(staged):
            return staged
    if _deleted(target, path):
        return None
    found = _resolve(target.rootfs, rel)
    return found if found is not None and os.path.lexists(found) else None


def _resolve(root: str, rel: str, hops: int = 40) -> str | None:
    """root/rel with every symlink resolved inside root (an absolute link is the container's, not the host's)."""
    parts = [p for p in rel.split("/") if p and p != "."]
    done: list[str] = []
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(root, *done, part)
        if os.path.islink(here):
            if hops == 0:
                return None
            hops -= 1
            link = os.readlink(here)
            parts = [p for p in link.split("/") if p] + parts
            if link.startswith("/"):
                done = []
            continue
        done.append(part)
    return os.path.join(root, *done)
