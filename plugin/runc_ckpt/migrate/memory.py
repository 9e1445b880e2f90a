"""Memory pre-copy of a `--pre-copy` stream: most pages cross before the freeze, not after it.

Without it every page crosses the link while the container is frozen, so
the link's speed decides the downtime. With it:

  phase 0   (the container runs, but for a short pause) CRIU dumps the
            memory once, P0, and P0 streams as the stream's pre-checkpoint/
            members while the container runs on;
  freeze    the usual dump, P1, and only what changed since P0 crosses:
            P1' (runtime/criu/incremental), whose pagemaps point every
            unchanged page into the parent, as a dump on top of a pre-dump
            does; checkpoint/parent -> ../pre-checkpoint links the two.

How P0 and P1' are made depends on the host (choose(), said in a debug line):
where CRIU tracks memory (soft-dirty) P0 is a real `runc checkpoint
--pre-dump` into the state dir's pre-checkpoint chain and P1 is dumped
with --parent-path on top of it (CRIU writes only the dirty pages). Where it
does not (these hosts, arm64, many distribution kernels: criu#1859) P0 is a
full `runc checkpoint --leave-running` into a private dir (dump_dir()),
hashed (16 bytes a page) and deleted once sent; P1 is
the full dump, and P1' is built from it by content comparison into tmpfs.
P1 goes to tmpfs too (p1_on_tmpfs): dumped to the state dir's disk, the
freeze waited on writeback of everything phase 0 had just written there
(the rootfs diff, the receiver's staging on one host): 1.84 s against
0.65 s to tmpfs for 1 GiB. Until the receiver confirms, P1 may be the
container's only copy (issue 19), so it lives where an encrypted export's
images live (state/tmpfsimages): recorded in the state dir before it is
made, linked there as checkpoint/ once complete, kept by the next call if
we die and the container is gone. It survives our death, not a reboot,
which the container's processes do not survive either; --keep (images
wanted afterwards) and a host without a tmpfs keep it on disk. A pre-copy that cannot be done (the
caller named the image paths, no cgroup figure under a bound) or whose
pause would exceed --pre-copy-max-pause is skipped: the stream then
carries the memory after the freeze, as before.

Rounds (CONTENT_DIFF only): a workload that keeps writing changes more
memory while P0 crosses than the freeze can send quickly. So, as long as it
pays, phase 0 runs more rounds before the freeze: round k is another full
`--leave-running` dump (another short pause), built on the digests of all the
target holds (P0 and the rounds before) into an incremental image whose
pages are only those changed since round k-1, and streamed as
pre-checkpoint.k/ with parent -> ../pre-checkpoint.(k-1) (round 1: ../pre-checkpoint),
while the container runs; P1' then builds on the last round. CRIU restores
the chain as it restores pre-dump chains (PE_PARENT resolved link by link).
stop_reason() decides after each round (said in a debug line): round 1
always runs (without soft-dirty only a dump tells what changed), then stop
once a round changed no more than ROUND_BUDGET of P0's bytes, or changed more
than SHRINK of the round before (the link no longer gains on the workload),
or after layout.PRE_COPY_ROUNDS rounds, or when the next pause would exceed
--pre-copy-max-pause.

Where phase 0's dumps go (dump_dir(), said in a debug line): first into a
tmpfs of this call's own, mounted huge=within_size and attached nowhere
(runtime/privatetmpfs), which CRIU writes fastest (1 GiB: frozen 0.42-0.53
s, against 0.64-0.97 s in /dev/shm and 0.57-1.08 s in ext4's page cache)
and which the kernel frees with the call however it ends. Where the kernel
will not make one, or the dump would not fit in it: into the page cache of
the state dir's disk, which CRIU writes faster than /dev/shm as long as the
kernel leaves those dirty pages alone (runtime/writeback: the phase-0 pause
of the idle 512 MiB case went from 1.26x the limit's dump to 0.90x); each
is deleted seconds later, once sent and hashed, so it never reaches the
disk. When the page cache is near the background-writeback threshold
(another writer, or the receiver on the same host staging a large rootfs)
the dump goes to /dev/shm (runtime/memscratch) instead: written back or
throttled, the same dump took 2.1 s against 0.6. The disk dir is a
state/callscratch dir in the container's state dir, swept like the tmpfs
one if we are killed. On a VM whose host takes back the guest's free pages
(runtime/coldpages), wherever the dump goes, the bytes it will write are
first written there (coldpages.Warming) and deleted just before the
dump, so that CRIU writes into pages the host has backed: before P0
inline, and for each later dump in a thread started once the dump before
it is taken, while that one is built and sent.

The phase-0 pause is CRIU's own `frozen_time` of the P0 dump (stats-dump),
reported apart from the downtime; it is estimated before anything is
frozen from the memory the container's cgroup holds (runtime/cgroupmem) at
the dump rate last seen on this host (RATE_FILE in the state dir), else at
DUMP_RATE.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass

from runc_ckpt.archive import export, layout
from runc_ckpt.archive.writer import DIR, SYM, Entry, TarWriter
from runc_ckpt.base import runclog
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.checkpoint.request import CheckpointRequest
from runc_ckpt.checkpoint.target import Target
from runc_ckpt.runtime import (
    atomicfile,
    cgroupmem,
    coldpages,
    containerstate,
    faults,
    logrelay,
    privatetmpfs,
    safe_remove,
    writeback,
)
from runc_ckpt.runtime.criu import PARENT_LINK, features, incremental, stats
from runc_ckpt.state import intent, predump, settle, tmpfsimages

# CRIU 4.2.1 dumping a half-random idle workload to tmpfs on this project's 2-core test VM (a busy,
# shared machine): 256 MiB of pages frozen for 0.26-0.30 s (CRIU's frozen_time), 850-1000 MiB/s; taken
# a little lower, so the estimate errs long. Replaced by what the last phase-0 dump here measured.
DUMP_RATE = 768 << 20            # bytes per second of frozen time
RATE_FILE = "memory-dump-rate.json"
SKIPPED = "skipped"
P0, P1_INCREMENTAL = "p0", "p1"
ROUND_BUDGET = 0.05     # a round that changed at most this share of P0's bytes is the last one
SHRINK = 0.75           # a round that changed more than this share of the round before is the last one
DISK_MARGIN = 2         # a dump goes to disk only if this many times its bytes fit under the writeback threshold


@dataclass(frozen=True)
class Choice:
    """How this stream moves memory: features.CONTENT_DIFF, features.PRE_DUMP or SKIPPED, and why."""

    method: str
    reason: str


@dataclass(frozen=True)
class Places:
    """Where a CONTENT_DIFF phase 0 puts what only passes through: its dumps where dump_dir() says, what
    is built from them in scratch."""

    scratch: str                    # a tmpfs dir (runtime/memscratch): built images, and dumps nothing else takes
    disk: str | None = None         # a state/callscratch dir: dumps, while the page cache takes them
    private: str | None = None      # runtime/privatetmpfs's mount: dumps, where the kernel makes one


@dataclass(frozen=True)
class Round:
    """One memory pre-copy round as stop_reason() sees it (round 0 is P0)."""

    number: int
    changed: int            # bytes of pages it sent: round 0 all of P0's, round k those changed since k-1
    pause: float            # seconds the container was frozen for its dump


@dataclass
class Phase0:
    """What phase 0 sent: its pause, its pages, and what the freeze builds on."""

    method: str
    pause: float            # seconds the container was frozen (CRIU's frozen_time, else runc's wall clock)
    runc_seconds: float     # the whole `runc checkpoint` call
    pages_bytes: int
    index: incremental.ParentIndex | None = None   # CONTENT_DIFF: digests of all the target holds
    rounds: list[Round] = dataclasses.field(default_factory=list)   # P0 and each round after it
    top: str = layout.PRE_CHECKPOINT_DIR            # the member dir of the last round: P1' builds on it
    warming: coldpages.Warming | None = None        # the next dump's pages, touched while this one is sent

    @property
    def longest_pause(self) -> float:
        return max([self.pause, *(r.pause for r in self.rounds)])


def rate(state_dir: str) -> float:
    """Bytes per second of frozen time of the last phase-0 dump here, else DUMP_RATE."""
    try:
        with open(os.path.join(state_dir, RATE_FILE), encoding="utf-8") as f:
            doc = json.load(f)
        value = float(doc["bytes_per_second"])
        return value if value > 0 else DUMP_RATE
    except (OSError, ValueError, KeyError, TypeError):
        return DUMP_RATE


def _record_rate(state_dir: str, pages_bytes: int, pause: float) -> None:
    """Best effort: a rate that cannot be written only leaves the next estimate at the last one."""
    if pages_bytes < 16 << 20 or pause <= 0:
        return                   # too small to say anything about the rate
    try:
        atomicfile.write_json(os.path.join(state_dir, RATE_FILE),
                              {"bytes_per_second": pages_bytes / pause, "bytes": pages_bytes, "seconds": pause},
                              mode=0o600, indent=None)
    except OSError:
        pass


def _in_use(t: Target) -> tuple[str | None, int | None]:
    """The container's cgroup and the bytes a dump of it writes (rss + shmem), if known."""
    cgroup = cgroupmem.of_pid(t.state.pid) or settle.cgroup_of(t.state.bundle, t.state.id)
    return cgroup, (cgroupmem.dumpable_bytes(cgroup) if cgroup is not None else None)


def choose(criu: str, state_dir: str, t: Target, max_pause: float | None) -> Choice:
    """Decide before anything is frozen; max_pause None: no bound, 0: never pre-copy memory."""
    if not t.plan.ours or t.plan.parent_path is not None:
        return Choice(SKIPPED, "the caller named the image paths (--image-path/--parent-path): the memory "
                               "crosses after the freeze")
    if max_pause == 0:
        return Choice(SKIPPED, "--pre-copy-max-pause is 0")
    cgroup, in_use = _in_use(t)
    if in_use is None:
        estimate = ""
        if max_pause is not None:
            return Choice(SKIPPED, f"the container's memory in use is unknown (cgroup {cgroup}), so the "
                                   f"phase-0 pause cannot be bounded by --pre-copy-max-pause {max_pause:g} s")
    else:
        pause = in_use / rate(state_dir)
        estimate = f"; estimated phase-0 pause {pause:.2f} s for {in_use >> 20} MiB"
        if max_pause is not None and pause > max_pause:
            return Choice(SKIPPED, f"the estimated phase-0 pause {pause:.2f} s ({in_use >> 20} MiB at "
                                   f"{rate(state_dir) / (1 << 20):.0f} MiB/s) exceeds --pre-copy-max-pause "
                                   f"{max_pause:g} s")
    how = features.memory_precopy(criu, state_dir)
    return Choice(how.method, how.reason + estimate)


def describe(choice: Choice) -> str:
    """The log line that says which path was taken."""
    what = {features.PRE_DUMP: "by CRIU pre-dump (soft-dirty tracking)",
            features.CONTENT_DIFF: "by content hash of two full dumps", SKIPPED: "skipped"}[choice.method]
    return f"--pre-copy: memory pre-copy {what}: {choice.reason}"


def _work(name: str) -> str:
    """The work dir (stats-dump, dump.log) beside the scratch dump `name`."""
    return f"{name}-work"


def dump_dir(t: Target, places: Places) -> tuple[str, str]:
    """Where the next phase-0 dump goes (see the module docstring): the private tmpfs while it has room,
    else disk while the page cache takes it with room to spare, else scratch (tmpfs); and why, for the
    debug line."""
    in_use = _in_use(t)[1]
    full = ""
    if places.private is not None:
        room = privatetmpfs.room(places.private)
        if in_use is None or room is None or in_use <= room:
            return places.private, "a private tmpfs (huge=within_size), which CRIU writes fastest"
        full = f"{in_use >> 20} MiB do not fit in the private tmpfs's {room >> 20} MiB; "
    if places.disk is None:
        return places.scratch, full + "no disk scratch dir"
    if t.seal_for:
        return places.scratch, full + "the stream is encrypted: its plaintext pages never go to disk"
    headroom = writeback.headroom()
    if in_use is None or headroom is None:
        return places.scratch, full + "the memory in use or the page cache's dirty figures are unknown"
    fits = in_use * DISK_MARGIN <= headroom
    why = (f"{full}{in_use >> 20} MiB x {DISK_MARGIN} {'fit' if fits else 'do not fit'} in the "
           f"{headroom >> 20} MiB the page cache may dirty before background writeback")
    return (places.disk, why) if fits else (places.scratch, why)


def p0_args(choice: Choice, t: Target, p: CheckpointRequest, runc_flags: list[str], base: str | None,
            pre_plan: predump.Plan | None, name: str = P0) -> list[str]:
    """`runc checkpoint` arguments of a phase-0 dump (P0, or the round dumped into base/name):
    the policy's and caller's flags, our paths."""
    if choice.method == features.CONTENT_DIFF:
        assert base is not None
        ours = ["--leave-running", "--image-path", os.path.join(base, name),
                "--work-path", os.path.join(base, _work(name))]
    else:
        assert pre_plan is not None
        ours = list(pre_plan.add_flags)
    return ["checkpoint", *t.policy.runc_flags(p.policy.keys()), *ours, *runc_flags]


def _dump(runc: str, inv: Invocation, t: Target, args: list[str], what: str) -> tuple[bool, float]:
    """One phase-0 dump (the container keeps running); (whether runc succeeded, the seconds it took)."""
    runclog.debug(inv.flags, f"--pre-copy: {what}: running {' '.join([runc, *inv.runc_globals, *args])}")
    began = time.monotonic()
    # Recorded like any checkpoint: if the whole tree is killed while CRIU holds the container frozen,
    # the next call on it thaws it (state/settle), and removes our tmpfs dir (runtime/memscratch).
    with intent.recorded(str(t.plan.container_dir), intent.CHECKPOINT, t.state.bundle, inv.flags.root):
        result = logrelay.run(runc, inv.runc_globals, args, inv.flags, phase="memory-dump")
    ok = result.returncode == 0 and result.signum is None
    if not ok and containerstate.state(runc, inv, t.state.id).status != "running":
        raise RuncCkptError(f"the {what} of {t.state.id} failed (runc exit status {result.returncode}) and "
                            f"the container no longer runs")
    if not ok:
        runclog.warn(inv.flags, f"--pre-copy: the {what} failed (runc exit status {result.returncode}): the "
                                f"memory it would have moved crosses after the freeze")
    return ok, time.monotonic() - began


def _start_warming(t: Target, directory: str) -> coldpages.Warming | None:
    """On a VM whose host takes back free pages (runtime/coldpages): start touching as many pages in
    directory as the next dump will write, so that CRIU writes into warm pages while the container is
    frozen; None elsewhere."""
    in_use = _in_use(t)[1] if coldpages.reported() else None
    return coldpages.Warming(directory, in_use) if in_use else None


def _warmed(inv: Invocation, warming: coldpages.Warming | None, what: str) -> None:
    """Just before a dump: wait for its warming and free those pages for it to take."""
    if warming is not None:
        waited = warming.release()
        runclog.debug(inv.flags, f"--pre-copy: pages warmed for the {what} in {warming.seconds:.3f} s, "
                                 f"{waited:.3f} s of it waited for (free page reporting)")


def finish_warming(inv: Invocation, first: Phase0 | None, what: str) -> None:
    """Just before the next dump (a round's, or the freeze's): the warming started after the last one."""
    if first is not None and first.warming is not None:
        warming, first.warming = first.warming, None
        _warmed(inv, warming, what)


def _pause(work: str, runc_seconds: float) -> float:
    """CRIU's frozen_time of the dump whose work dir this is, else the whole runc call."""
    try:
        frozen_us = stats.read(os.path.join(work, layout.STATS_DUMP)).get("dump", {}).get("frozen_time")
    except RuncCkptError:
        frozen_us = None
    return frozen_us / 1e6 if frozen_us else runc_seconds


def phase0(runc: str, inv: Invocation, state_dir: str, p: CheckpointRequest, runc_flags: list[str],
           t: Target, choice: Choice, places: Places | None, tw: TarWriter, mtime: int) -> Phase0 | None:
    """Dump P0 (a short pause), stream it as pre-checkpoint/; None: the dump failed, memory goes after the freeze.

    PRE_DUMP moves t.plan onto the new pre-dump (--parent-path), so that the freeze dumps on top of it.
    CONTENT_DIFF dumps where dump_dir() says.
    """
    pre_plan = None
    if choice.method == features.PRE_DUMP:
        pre_plan = predump.plan(state_dir, t.state.id, predump.CallerPaths(), True, False)
        predump.prepare(pre_plan)
        base, directory, work = None, pre_plan.final_dir, pre_plan.work_dir
    else:
        assert places is not None
        base, why = dump_dir(t, places)
        runclog.debug(inv.flags, f"--pre-copy: phase-0 memory dump into {base}: {why}")
        directory, work = os.path.join(base, P0), os.path.join(base, _work(P0))
    # Phase 1's tail compressed and on the link first: CRIU's dump does not share the CPU with the compressor.
    tw.flush()
    if base is not None:
        _warmed(inv, _start_warming(t, base), "phase-0 memory dump")
    try:
        ok, runc_seconds = _dump(runc, inv, t, p0_args(choice, t, p, runc_flags, base, pre_plan),
                                 "phase-0 memory dump")
    except BaseException:
        if pre_plan is not None:
            predump.abandon(pre_plan)
        raise
    if not ok:
        if pre_plan is not None:
            predump.abandon(pre_plan)
        return None
    if pre_plan is not None:
        predump.finish(pre_plan)
        t.plan = predump.plan(state_dir, t.state.id, predump.CallerPaths(), False, True)
    pause = _pause(work, runc_seconds)
    warming = _start_warming(t, base) if base is not None else None    # round 1's, while P0 is sent
    pages_bytes = send_images(tw, directory, layout.PRE_CHECKPOINT_DIR, mtime)
    tw.flush()                                      # on the link now: round 1's dump, or the freeze, follows it
    done = Phase0(choice.method, pause, runc_seconds, pages_bytes, warming=warming)
    if choice.method == features.CONTENT_DIFF:
        done.index = incremental.index_parent(directory)
        for d in (directory, work):
            safe_remove.remove_tree(d)              # 16 bytes a page are kept, not the pages
        _record_rate(state_dir, pages_bytes, pause)
        done.rounds.append(Round(0, pages_bytes, pause))
    runclog.debug(inv.flags, f"--pre-copy: phase-0 pause {pause:.3f} s (the container frozen; runc checkpoint "
                             f"took {runc_seconds:.3f} s), {pages_bytes} bytes of pages sent while it ran")
    return done


def stop_reason(done: list[Round], max_rounds: int = layout.PRE_COPY_ROUNDS) -> str | None:
    """Why no further round should run after `done` (round 0 first), or None: run round len(done).

    Round 1 always runs: only a dump tells what changed. A round pays when the link gains on the
    workload; each costs a pause and a full dump, so stop once little is left to send at the freeze.
    """
    last = done[-1]
    if last.number >= max_rounds:
        return f"{last.number} rounds, the most a stream carries"
    if last.number == 0:
        return None
    budget = int(done[0].changed * ROUND_BUDGET)
    if last.changed <= budget:
        return (f"round {last.number} changed {last.changed} bytes, within the budget of {budget} "
                f"({ROUND_BUDGET:.0%} of phase 0's)")
    if last.number >= 2 and last.changed > SHRINK * done[-2].changed:
        return (f"round {last.number} changed {last.changed} bytes, more than {SHRINK:.0%} of round "
                f"{last.number - 1}'s {done[-2].changed}: the link no longer gains on the workload")
    return None


def rounds(runc: str, inv: Invocation, state_dir: str, p: CheckpointRequest, runc_flags: list[str],
           t: Target, first: Phase0, places: Places, tw: TarWriter, mtime: int,
           max_pause: float | None) -> None:
    """After P0 (CONTENT_DIFF): run and stream the rounds stop_reason() asks for; first.index and
    first.top end up at the last one, which the freeze builds on. Each dump goes where dump_dir() says,
    what is built from it to places.scratch."""
    assert first.index is not None
    why = stop_reason(first.rounds)
    while why is None:
        k = first.rounds[-1].number + 1
        faults.point(f"memory-round-{k}")
        in_use = _in_use(t)[1] if max_pause is not None else None
        estimate = in_use / rate(state_dir) if in_use is not None else 0.0
        if max_pause is not None and estimate > max_pause:
            why = f"round {k}'s estimated pause {estimate:.2f} s exceeds --pre-copy-max-pause {max_pause:g} s"
            break
        name = f"round-{k}"
        finish_warming(inv, first, f"memory round {k} dump")
        base, where = dump_dir(t, places)
        runclog.debug(inv.flags, f"--pre-copy: memory round {k} dump into {base}: {where}")
        ok, runc_seconds = _dump(runc, inv, t, p0_args(Choice(features.CONTENT_DIFF, ""), t, p, runc_flags,
                                                        base, None, name), f"memory pre-copy round {k} dump")
        if not ok:
            why = f"round {k}'s dump failed"
            break
        first.warming = _start_warming(t, base)     # the next dump's, while this one is built and sent
        dump, work = os.path.join(base, name), os.path.join(base, _work(name))
        built = os.path.join(places.scratch, f"{name}-incremental")
        pause = _pause(work, runc_seconds)
        result = incremental.build_from_index(first.index, dump, built)
        safe_remove.remove_tree(dump)
        member = layout.pre_copy_round(k)
        changed = send_images(tw, built, member, mtime, first.top)
        tw.flush()                                  # on the link now: the next round follows it
        first.index = incremental.index_over(first.index, built)
        first.top = member
        for d in (built, work):
            safe_remove.remove_tree(d)
        _record_rate(state_dir, result.pages * incremental.PAGE, pause)
        first.rounds.append(Round(k, changed, pause))
        why = stop_reason(first.rounds)
        runclog.debug(inv.flags, f"--pre-copy: memory round {k}: {result.kept} of {result.pages} pages changed "
                                 f"since round {k - 1} ({changed} bytes sent as {member}/), pause {pause:.3f} s")
    runclog.debug(inv.flags, f"--pre-copy: {len(first.rounds) - 1} memory rounds after phase 0 (bytes sent: "
                             f"{', '.join(str(r.changed) for r in first.rounds)}; pauses: "
                             f"{', '.join(f'{r.pause:.3f}' for r in first.rounds)} s); stopped: {why}")


def send_images(tw: TarWriter, directory: str, member: str, mtime: int, parent: str | None = None) -> int:
    """A phase-0 dump's files as member/<name>, its pages' bytes. Only regular files (a dump has nothing
    else), but for a round's `parent` link, sent pointing at the round before (parent: its member dir)."""
    tw.add_entry(Entry(member, DIR, 0o700, mtime=mtime))
    pages = 0
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name == PARENT_LINK and parent is not None:
            tw.add_entry(Entry(f"{member}/{name}", SYM, 0o777, mtime=mtime, linkname=f"../{parent}"))
            continue
        if name == PARENT_LINK or not os.path.isfile(path) or os.path.islink(path):
            raise RuncCkptError(f"memory dump {directory}: {name} is not a regular file")
        if name.startswith("pages-"):
            pages += os.path.getsize(path)
        tw.add_file(f"{member}/{name}", path)
    return pages


def hash_while_dumped(first: Phase0 | None, image_dir: str) -> incremental.PageHasher | None:
    """CONTENT_DIFF: hash P1's pages as CRIU writes them into image_dir, so that the build after the dump
    reads only what changed (incremental.PageHasher); the caller closes it however the freeze ends."""
    if first is None or first.index is None:
        return None
    return incremental.PageHasher(image_dir)


def freeze_images(first: Phase0 | None, req: export.ExportRequest, scratch: str | None,
                  inv: Invocation, hasher: incremental.PageHasher | None = None) -> export.ExportRequest:
    """What the freeze sends as checkpoint/: P1' built on P0's digests (CONTENT_DIFF), else P1 as dumped."""
    if first is None or first.index is None:
        return req
    assert scratch is not None
    out = os.path.join(scratch, P1_INCREMENTAL)
    began = time.monotonic()
    hashed = hasher.finish() if hasher is not None else None
    caught_up = time.monotonic()
    built = incremental.build_from_index(first.index, req.image_dir, out, hashed)
    runclog.debug(inv.flags, f"--pre-copy: {built.kept} of {built.pages} pages changed since {first.top}/ "
                             f"({built.kept * incremental.PAGE} bytes to send; "
                             f"{sum(len(h.digests) for h in (hashed or {}).values()) // incremental.DIGEST} "
                             f"pages hashed while CRIU wrote them, {caught_up - began:.3f} s to catch up, "
                             f"{built.bytes_read} bytes read after; built in {time.monotonic() - began:.3f} s)")
    return req._replace(image_dir=out, parent_member=first.top)


def p1_on_tmpfs(state_dir: str, t: Target, p: CheckpointRequest) -> bool:
    """Move the freeze's dump P1 onto tmpfs (see the module docstring); whether it moved.

    Only for our own full dump (no caller paths, no parent) that is not on tmpfs already (encrypted)
    and not wanted afterwards (--keep); without a tmpfs at TMPFS it stays in the state dir.
    """
    plan = t.plan
    if plan.memory_dir is not None or not plan.ours or plan.pre_dump or plan.parent_path is not None or p.keep:
        return False
    try:
        memory_dir = tmpfsimages.choose()
    except RuncCkptError:
        return False
    t.plan = predump.plan(state_dir, t.state.id, predump.CallerPaths(work_path=p.work_path), False, False, True,
                          memory_dir)
    return True
