"""--pre-copy's memory path (migrate.memory): the flags, the choice before anything is frozen, and the
phase-0 dump each path runs, with runc and CRIU faked (real pre-dump cannot run on these hosts)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from runc_ckpt.archive.writer import TarWriter
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import GlobalFlags, Invocation
from runc_ckpt.checkpoint.request import CheckpointRequest
from runc_ckpt.checkpoint.target import Target
from runc_ckpt.commands import checkpoint as checkpoint_cmd
from runc_ckpt.commands import cmdflags, options
from runc_ckpt.migrate import memory
from runc_ckpt.runtime import cgroupmem, coldpages, privatetmpfs, writeback
from runc_ckpt.runtime.containerstate import ContainerState
from runc_ckpt.runtime.criu import features, incremental
from runc_ckpt.runtime.criu.incremental import PAGE
from runc_ckpt.settings import config
from runc_ckpt.settings.policy import Policy
from runc_ckpt.state import predump, tmpfsimages
from tests.unit.test_incremental_builder import A, page, write_dump

CID = "web"
OFF = "Warn  (criu/cr-check.c:824): Dirty tracking is OFF. Memory snapshot will not work.\n"


def _parsed(*argv: str) -> cmdflags.Parsed:
    return cmdflags.parse(options.CHECKPOINT, list(argv), "checkpoint")


@pytest.mark.parametrize(("argv", "error"), [
    (["--export", "-", "--pre-copy-max-pause", "1", CID], "--pre-copy-max-pause only works with --pre-copy"),
    (["--export", "f.tar", "--pre-copy-max-pause", "1", CID], "only works with --export -"),
    (["--export", "-", "--pre-copy", "--pre-copy-max-pause", "-1", CID], "not a number of seconds"),
    (["--export", "-", "--pre-copy", "--pre-copy-max-pause", "soon", CID], "not a number of seconds"),
])
def test_bad_max_pause_flags_are_refused_before_anything(argv, error):
    with pytest.raises(RuncCkptError, match=error):
        checkpoint_cmd.check_flags(_parsed(*argv))


def test_the_flag_beats_the_config_key_and_no_bound_is_the_default():
    cfg = config.Config(pre_copy_max_pause=2.5)
    assert checkpoint_cmd.max_pause(_parsed("--export", "-", "--pre-copy", CID), cfg) == 2.5
    assert checkpoint_cmd.max_pause(_parsed("--export", "-", "--pre-copy", "--pre-copy-max-pause", "0.5", CID),
                                    cfg) == 0.5
    assert checkpoint_cmd.max_pause(_parsed("--export", "-", "--pre-copy", CID), config.Config()) is None


@pytest.fixture(autouse=True)
def host_keeps_free_pages(monkeypatch):
    """No free page reporting (runtime/coldpages) unless a test says so: these hosts have it."""
    monkeypatch.setattr(coldpages, "reported", lambda: False)


@pytest.fixture
def state_dir(tmp_path) -> str:
    d = tmp_path / "state"
    d.mkdir()
    return str(d)


@pytest.fixture
def memory_in_use(tmp_path, monkeypatch):
    """The container's cgroup v1 memory.stat, in a fake /sys/fs/cgroup: set(bytes) writes it."""
    monkeypatch.setattr(cgroupmem, "ROOT", str(tmp_path / "cgroup"))
    monkeypatch.setattr(cgroupmem.hostinfo, "cgroups_version", lambda: "v1")

    def put(n: int) -> None:
        d = tmp_path / "cgroup" / "memory" / CID
        d.mkdir(parents=True, exist_ok=True)
        (d / "memory.stat").write_text(f"cache 999999999\nrss 1\ntotal_rss {n - 4096}\ntotal_shmem 4096\n")
    return put


def _target(tmp_path, state_dir: str, image_path: str | None = None) -> Target:
    bundle = tmp_path / "bundle"
    bundle.mkdir(exist_ok=True)
    st = ContainerState(CID, "running", str(bundle), str(bundle / "rootfs"), "2026-12-01T00:00:00Z", 0, {})
    plan = predump.plan(state_dir, CID, predump.CallerPaths(image_path=image_path), False, False, True)
    return Target(CID, st, {}, plan, Policy(), [], [])


def _tracking(fp, criu: str, supported: bool) -> None:
    fp.register([os.path.realpath(criu), "check", "--feature", "mem_dirty_track"],
                returncode=0 if supported else 1, stderr="Looks good.\n" if supported else OFF)


@pytest.mark.parametrize(("supported", "method"), [(True, features.PRE_DUMP), (False, features.CONTENT_DIFF)])
def test_real_pre_dump_where_criu_tracks_memory_the_content_hash_elsewhere(
        fp, criu, state_dir, tmp_path, memory_in_use, supported, method):
    _tracking(fp, criu, supported)
    memory_in_use(256 << 20)
    choice = memory.choose(criu, state_dir, _target(tmp_path, state_dir), None)
    assert choice.method == method
    assert "estimated phase-0 pause 0.33 s for 256 MiB" in choice.reason     # at DUMP_RATE, no rate learnt yet
    assert ("soft-dirty" if supported else "content hash") in memory.describe(choice)


def test_a_pause_over_the_bound_skips_the_memory_pre_copy_before_criu_is_asked(fp, criu, state_dir, tmp_path,
                                                                               memory_in_use):
    memory_in_use(2 << 30)
    choice = memory.choose(criu, state_dir, _target(tmp_path, state_dir), 1.0)
    assert choice.method == memory.SKIPPED
    assert "estimated phase-0 pause 2.67 s (2048 MiB at 768 MiB/s) exceeds --pre-copy-max-pause 1 s" \
        in choice.reason
    assert "skipped" in memory.describe(choice)
    assert len(fp.calls) == 0


def test_the_rate_of_the_last_phase_0_dump_here_replaces_the_constant(fp, criu, state_dir, tmp_path, memory_in_use):
    _tracking(fp, criu, False)
    memory_in_use(2 << 30)
    memory._record_rate(state_dir, 1 << 30, 0.25)                 # 4 GiB/s measured here
    choice = memory.choose(criu, state_dir, _target(tmp_path, state_dir), 1.0)
    assert choice.method == features.CONTENT_DIFF
    assert "estimated phase-0 pause 0.50 s" in choice.reason


@pytest.mark.parametrize(("max_pause", "image_path", "why"), [
    (0.0, None, "--pre-copy-max-pause is 0"),
    (1.0, None, "memory in use is unknown"),           # no cgroup figure: a bound cannot be kept
    (None, "/caller/images", "the caller named the image paths"),
])
def test_skipped_and_why(fp, criu, state_dir, tmp_path, max_pause, image_path, why):
    choice = memory.choose(criu, state_dir, _target(tmp_path, state_dir, image_path), max_pause)
    assert choice.method == memory.SKIPPED and why in choice.reason
    assert len(fp.calls) == 0


def test_content_hash_phase_0_is_a_full_dump_that_leaves_the_container_running(tmp_path, state_dir):
    t = _target(tmp_path, state_dir)
    args = memory.p0_args(memory.Choice(features.CONTENT_DIFF, ""), t, CheckpointRequest(), [CID], "/dev/shm/x", None)
    assert args == ["checkpoint", "--leave-running", "--image-path", "/dev/shm/x/p0",
                    "--work-path", "/dev/shm/x/p0-work", CID]


def test_pre_dump_phase_0_is_a_real_pre_dump_and_the_freeze_dumps_on_top_of_it(fp, tmp_path, state_dir):
    """The pre-dump goes into the state dir's chain (the freeze's images need it until the target
    confirms); the freeze's runc gets --parent-path to it; its images stream as pre-checkpoint/."""
    t = _target(tmp_path, state_dir)
    pre = os.path.join(state_dir, CID, "pre-checkpoint.1")

    def dumped(process) -> None:
        for name, size in (("inventory.img", 10), ("pagemap-1.img", 20), ("pages-1.img", 8192)):
            with open(os.path.join(pre, name), "wb") as f:
                f.write(b"\0" * size)
    fp.register(["runc", "checkpoint", "--image-path", pre, "--work-path", os.path.join(state_dir, CID, "work"),
                 "--pre-dump", CID], callback=dumped)
    buf = io.BytesIO()
    tw = TarWriter(buf)
    done = memory.phase0("runc", Invocation(GlobalFlags(), [], "checkpoint", []), state_dir, CheckpointRequest(),
                         [CID], t, memory.Choice(features.PRE_DUMP, ""), None, tw, 0)
    assert done is not None and done.index is None and done.pages_bytes == 8192
    assert set(tw.members) == {"pre-checkpoint/inventory.img", "pre-checkpoint/pagemap-1.img",
                               "pre-checkpoint/pages-1.img"}
    assert t.plan.parent_path == "../pre-checkpoint.1"
    assert t.plan.add_flags[-2:] == ["--parent-path", "../pre-checkpoint.1"]
    assert os.readlink(os.path.join(state_dir, CID, "pre-checkpoint")) == "pre-checkpoint.1"


def test_the_freeze_dumps_to_tmpfs_recorded_and_linked_as_the_state_dirs_checkpoint(tmp_path, state_dir):
    t = _target(tmp_path, state_dir)
    final = t.plan.final_dir
    assert memory.p1_on_tmpfs(state_dir, t, CheckpointRequest(containers=[CID]))
    plan = t.plan
    assert plan.memory_dir is not None and plan.image_dir.startswith(tmpfsimages.TMPFS + "/")
    # The export still reads <state>/<id>/checkpoint (a link once the dump is complete), and the work dir stays
    assert plan.final_dir == final and plan.work_dir == os.path.join(state_dir, CID, predump.WORK)
    assert plan.record_dir == os.path.join(os.path.realpath(state_dir), CID)
    assert ["--image-path", plan.image_dir] == plan.add_flags[:2]
    predump.prepare(plan)
    try:
        assert [r.directory for r in tmpfsimages.records(plan.record_dir)] == [plan.memory_dir]
    finally:
        predump.abandon(plan)
    assert not os.path.lexists(plan.memory_dir) and tmpfsimages.records(plan.record_dir) == []


@pytest.mark.parametrize("why", ["keep", "caller-images", "encrypted", "no-tmpfs"])
def test_the_freeze_dump_stays_where_it_was(tmp_path, state_dir, monkeypatch, why):
    t = _target(tmp_path, state_dir, image_path=str(tmp_path / "imgs") if why == "caller-images" else None)
    if why == "encrypted":
        t.plan = predump.plan(state_dir, CID, predump.CallerPaths(), False, False, True, tmpfsimages.choose())
    if why == "no-tmpfs":
        monkeypatch.setattr(tmpfsimages.mountinfo, "find_mount", lambda path: None)
    before = t.plan
    assert not memory.p1_on_tmpfs(state_dir, t, CheckpointRequest(containers=[CID], keep=why == "keep"))
    assert t.plan is before
R = memory.Round
MIB = 1 << 20


@pytest.mark.parametrize(("done", "why"), [
    ([R(0, 1024 * MIB, 1.0)], None),                                      # round 1 always: only a dump tells
    ([R(0, 1024 * MIB, 1.0), R(1, 365 * MIB, 1.0)], None),                # shrinking, far over the budget
    ([R(0, 1024 * MIB, 1.0), R(1, 365 * MIB, 1.0), R(2, 137 * MIB, 1.0)], None),
    ([R(0, 1024 * MIB, 1.0), R(1, 40 * MIB, 1.0)], "within the budget"),  # 5 % of P0's bytes: 51 MiB
    ([R(0, 1024 * MIB, 1.0), R(1, 0, 1.0)], "within the budget"),         # an idle container: one round
    ([R(0, 1024 * MIB, 1.0), R(1, 137 * MIB, 1.0), R(2, 120 * MIB, 1.0)], "no longer gains"),
    ([R(0, 1024 * MIB, 1.0), R(1, 300 * MIB, 1.0), R(2, 200 * MIB, 1.0), R(3, 140 * MIB, 1.0),
      R(4, 100 * MIB, 1.0)], "4 rounds, the most"),
])
def test_the_round_decision(done, why):
    got = memory.stop_reason(done)
    assert got is None if why is None else why in got


def _debug_invocation() -> Invocation:
    flags = GlobalFlags()
    flags.debug = True
    return Invocation(flags, [], "checkpoint", [])


def _fake_round_dumps(fp, tmp_path, state_dir: str, pages: list[list[bytes]], calls: list[str],
                      where: list[Path] | None = None) -> str:
    """runc checkpoint --leave-running into scratch/<p0|round-k> (or where[k]/...), each a full dump of
    `pages[k]` at one address."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for k, content in enumerate(pages):
        name = memory.P0 if k == 0 else f"round-{k}"
        base = where[k] if where is not None else scratch

        def dumped(process, name=name, content=content, base=base) -> None:
            calls.append(name)
            write_dump(base / name, {"pagemap-1.img": (1, [(A, content, incremental.PE_PRESENT)])})
            (base / f"{name}-work").mkdir()
        fp.register(["runc", "checkpoint", "--leave-running", "--image-path", str(base / name),
                     "--work-path", str(base / f"{name}-work"), CID], callback=dumped)
    return str(scratch)


def test_rounds_stream_a_chain_until_the_changed_set_fits_the_budget(fp, tmp_path, state_dir, capfd):
    """P0 of 40 pages; round 1 finds 10 changed (over 5 %), round 2 one (within it): two rounds, each
    streamed as pre-checkpoint.k/ with only its changed pages and a parent link to the round before."""
    p0 = [page(f"p{i}") for i in range(40)]
    r1 = [page(f"r{i}") if i < 10 else p0[i] for i in range(40)]
    r2 = [page("x") if i == 39 else r1[i] for i in range(40)]
    calls: list[str] = []
    scratch = _fake_round_dumps(fp, tmp_path, state_dir, [p0, r1, r2], calls)
    t = _target(tmp_path, state_dir)
    tw = TarWriter(io.BytesIO())
    inv = _debug_invocation()
    first = memory.phase0("runc", inv, state_dir, CheckpointRequest(), [CID], t,
                          memory.Choice(features.CONTENT_DIFF, ""), memory.Places(scratch), tw, 0)
    assert first is not None

    memory.rounds("runc", inv, state_dir, CheckpointRequest(), [CID], t, first, memory.Places(scratch), tw, 0,
                  None)

    assert calls == ["p0", "round-1", "round-2"]
    assert [(r.number, r.changed) for r in first.rounds] == [(0, 40 * PAGE), (1, 10 * PAGE), (2, PAGE)]
    assert first.top == "pre-checkpoint.2"
    assert tw.members["pre-checkpoint.1/pages-1.img"].size == 10 * PAGE
    assert tw.members["pre-checkpoint.2/pages-1.img"].size == PAGE
    assert os.listdir(scratch) == []                     # only digests are kept between rounds
    err = capfd.readouterr().err
    assert "2 memory rounds after phase 0" in err and "within the budget" in err
    out = tmp_path / "p1x"                               # the freeze builds on the last round's digests
    write_dump(tmp_path / "p1", {"pagemap-1.img": (1, [(A, r2, incremental.PE_PRESENT)])})
    assert incremental.build_from_index(first.index, str(tmp_path / "p1"), str(out)).kept == 0


def test_a_round_over_the_pause_bound_is_not_run(fp, tmp_path, state_dir, memory_in_use, capfd):
    memory_in_use(2 << 30)                               # 2.67 s at DUMP_RATE
    calls: list[str] = []
    scratch = _fake_round_dumps(fp, tmp_path, state_dir, [[page("a")]], calls)
    t = _target(tmp_path, state_dir)
    inv = _debug_invocation()
    tw = TarWriter(io.BytesIO())
    first = memory.phase0("runc", inv, state_dir, CheckpointRequest(), [CID], t,
                          memory.Choice(features.CONTENT_DIFF, ""), memory.Places(scratch), tw, 0)
    assert first is not None
    assert not os.path.exists(os.path.join(state_dir, memory.RATE_FILE))   # P0 too small to learn a rate

    memory.rounds("runc", inv, state_dir, CheckpointRequest(), [CID], t, first, memory.Places(scratch), tw, 0,
                  1.0)

    assert calls == ["p0"] and first.top == "pre-checkpoint"
    assert "round 1's estimated pause 2.67 s exceeds --pre-copy-max-pause 1 s" in capfd.readouterr().err


def test_each_dump_goes_to_disk_only_while_the_page_cache_takes_it_before_writeback(fp, tmp_path, state_dir,
                                                                                     memory_in_use, monkeypatch,
                                                                                     capfd):
    """P0 finds room for twice its bytes under the writeback threshold: the disk dir; round 1 does not
    (another writer dirtied the page cache): tmpfs. What is built from a dump always goes to tmpfs, and
    neither dir keeps anything between rounds."""
    memory_in_use(64 << 20)
    rooms = iter([128 << 20, (128 << 20) - 1])
    monkeypatch.setattr(writeback, "headroom", lambda: next(rooms))
    disk = tmp_path / "disk"
    disk.mkdir()
    p0 = [page(f"p{i}") for i in range(40)]
    r1 = [page("r") if i == 0 else p0[i] for i in range(40)]        # within the budget: round 1 is the last
    calls: list[str] = []
    scratch = _fake_round_dumps(fp, tmp_path, state_dir, [p0, r1], calls, [disk, tmp_path / "scratch"])
    t = _target(tmp_path, state_dir)
    tw = TarWriter(io.BytesIO())
    inv = _debug_invocation()
    first = memory.phase0("runc", inv, state_dir, CheckpointRequest(), [CID], t,
                          memory.Choice(features.CONTENT_DIFF, ""), memory.Places(scratch, str(disk)), tw, 0)
    assert first is not None
    memory.rounds("runc", inv, state_dir, CheckpointRequest(), [CID], t, first, memory.Places(scratch, str(disk)),
                  tw, 0, None)
    assert calls == ["p0", "round-1"]
    assert tw.members["pre-checkpoint.1/pages-1.img"].size == PAGE
    assert os.listdir(disk) == [] and os.listdir(scratch) == []
    err = capfd.readouterr().err
    assert f"phase-0 memory dump into {disk}: 64 MiB x 2 fit in the 128 MiB" in err
    assert f"round 1 dump into {scratch}: 64 MiB x 2 do not fit in the 127 MiB" in err


def test_without_the_memory_figure_a_dump_stays_in_tmpfs(tmp_path, state_dir, monkeypatch):
    monkeypatch.setattr(writeback, "headroom", lambda: 1 << 40)
    t = _target(tmp_path, state_dir)                     # no cgroup memory.stat: in use unknown
    assert memory.dump_dir(t, memory.Places("/dev/shm/x", "/state/ctr/.scratch-1"))[0] == "/dev/shm/x"


def test_an_encrypted_streams_dumps_stay_in_tmpfs_whatever_the_page_cache_takes(tmp_path, state_dir, memory_in_use,
                                                                                monkeypatch):
    """Plaintext pages of an encrypted export never go to disk (issue 20), not even for seconds."""
    memory_in_use(64 << 20)
    monkeypatch.setattr(writeback, "headroom", lambda: 1 << 40)
    t = _target(tmp_path, state_dir)
    assert memory.dump_dir(t, memory.Places("/dev/shm/x", "/state/ctr/.scratch-1"))[0] == "/state/ctr/.scratch-1"
    t.seal_for = (object(),)                          # any recipient: the stream is sealed
    where, why = memory.dump_dir(t, memory.Places("/dev/shm/x", "/state/ctr/.scratch-1"))
    assert where == "/dev/shm/x" and "encrypted" in why


def test_a_dump_goes_to_the_private_tmpfs_while_it_has_room_encrypted_or_not(tmp_path, state_dir, memory_in_use,
                                                                             monkeypatch):
    """runtime/privatetmpfs first (CRIU writes it fastest, and it is RAM like /dev/shm, so an encrypted
    stream's pages may go there too); a dump that would not fit there goes where it went before."""
    memory_in_use(64 << 20)
    monkeypatch.setattr(writeback, "headroom", lambda: 1 << 40)
    monkeypatch.setattr(privatetmpfs, "room", lambda path: 64 << 20)
    t = _target(tmp_path, state_dir)
    places = memory.Places("/dev/shm/x", "/state/ctr/.scratch-1", "/proc/1/fd/9")
    where, why = memory.dump_dir(t, places)
    assert where == "/proc/1/fd/9" and "private tmpfs" in why
    t.seal_for = (object(),)
    assert memory.dump_dir(t, places)[0] == "/proc/1/fd/9"
    monkeypatch.setattr(privatetmpfs, "room", lambda path: (64 << 20) - 1)
    where, why = memory.dump_dir(t, places)
    assert where == "/dev/shm/x" and why.startswith("64 MiB do not fit in the private tmpfs's 63 MiB; ")
    assert "encrypted" in why
    t.seal_for = ()
    assert memory.dump_dir(t, places)[0] == "/state/ctr/.scratch-1"


def test_phase_0_dumps_into_the_private_tmpfs_and_leaves_nothing_in_it(fp, tmp_path, state_dir, capfd):
    """P0 and round 1 are dumped into the private tmpfs, what is built from them into scratch; both are
    emptied as each dump is sent (the mount itself goes with the call: runtime/privatetmpfs)."""
    private = tmp_path / "private"
    private.mkdir()
    p0 = [page(f"p{i}") for i in range(40)]
    r1 = [page("r") if i == 0 else p0[i] for i in range(40)]
    calls: list[str] = []
    scratch = _fake_round_dumps(fp, tmp_path, state_dir, [p0, r1], calls, [private, private])
    t = _target(tmp_path, state_dir)
    tw = TarWriter(io.BytesIO())
    places = memory.Places(scratch, None, str(private))
    first = memory.phase0("runc", _debug_invocation(), state_dir, CheckpointRequest(), [CID], t,
                          memory.Choice(features.CONTENT_DIFF, ""), places, tw, 0)
    assert first is not None
    memory.rounds("runc", _debug_invocation(), state_dir, CheckpointRequest(), [CID], t, first, places, tw, 0, None)
    assert calls == ["p0", "round-1"] and tw.members["pre-checkpoint.1/pages-1.img"].size == PAGE
    assert os.listdir(private) == [] and os.listdir(scratch) == []
    err = capfd.readouterr().err
    assert f"phase-0 memory dump into {private}: a private tmpfs" in err
    assert f"round 1 dump into {private}: a private tmpfs" in err


@pytest.mark.parametrize("reported", [True, False])
def test_on_a_vm_whose_host_takes_back_free_pages_each_dump_is_warmed_first(fp, tmp_path, state_dir, memory_in_use,
                                                                            monkeypatch, capfd, reported):
    """runtime/coldpages: the bytes P0 will write are touched just before runc runs (the container still
    running); each later dump's while the one before is sent, released just before it (the freeze's by the
    sender); where free pages stay the guest's, nothing is."""
    memory_in_use(64 << 20)
    monkeypatch.setattr(coldpages, "reported", lambda: reported)
    calls: list[object] = []

    class Warming:
        seconds = 0.25

        def __init__(self, directory: str, size: int) -> None:
            calls.append(("warm", directory, size))

        def release(self) -> float:
            calls.append("release")
            return 0.125
    monkeypatch.setattr(coldpages, "Warming", Warming)
    p0 = [page(f"p{i}") for i in range(40)]
    r1 = [page("r") if i == 0 else p0[i] for i in range(40)]
    scratch = _fake_round_dumps(fp, tmp_path, state_dir, [p0, r1], calls)
    t = _target(tmp_path, state_dir)
    tw = TarWriter(io.BytesIO())
    places = memory.Places(scratch)
    inv = _debug_invocation()
    first = memory.phase0("runc", inv, state_dir, CheckpointRequest(), [CID], t,
                          memory.Choice(features.CONTENT_DIFF, ""), places, tw, 0)
    assert first is not None
    memory.rounds("runc", inv, state_dir, CheckpointRequest(), [CID], t, first, places, tw, 0, None)
    memory.finish_warming(inv, first, "freeze's dump")
    warmed = ("warm", scratch, 64 << 20)
    assert calls == ([warmed, "release", "p0", warmed, "release", "round-1", warmed, "release"] if reported
                     else ["p0", "round-1"])
    assert first.warming is None
    err = capfd.readouterr().err
    said = "pages warmed for the {} in 0.250 s, 0.125 s of it waited for"
    assert (said.format("phase-0 memory dump") in err) is reported
    assert (said.format("memory round 1 dump") in err) is reported
    assert (said.format("freeze's dump") in err) is reported
