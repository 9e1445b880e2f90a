"""`runc-ckpt checkpoint` end to end in-process, with runc and `criu check` faked (pytest-subprocess).

Each test registers exactly the commands it expects, with their exact argv;
an unexpected call (e.g. a `runc checkpoint` after an error that should have
stopped us) is unregistered and fails the test.
"""

from __future__ import annotations

import json
import os
import signal
import struct
from pathlib import Path

import pytest

from runc_ckpt import cli
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.runtime.criu import stats
from tests.criu_wire import field

PID = os.getpid()


def stats_image(**dump: int) -> bytes:
    numbers = {name: num for num, name in stats.DUMP_FIELDS.items()}
    entry = field(1, b"".join(field(numbers[k], v) for k, v in dump.items()))
    return struct.pack("<III", stats.IMG_SERVICE_MAGIC, stats.STATS_MAGIC, len(entry)) + entry


SPEC = {"ociVersion": "1.0.2-dev", "root": {"path": "rootfs"},
        "process": {"cwd": "/", "args": ["sh"]}, "mounts": [{"destination": "/proc", "type": "proc",
                                                               "source": "proc"}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}}


class Env:
    """A fake runc + criu, a config with a private state dir, and helpers to register calls."""

    def __init__(self, tmp_path: Path, fp, monkeypatch) -> None:
        self.tmp = tmp_path
        self.fp = fp
        bindir = tmp_path / "bin"
        bindir.mkdir()
        self.runc = str(bindir / "runc")
        self.criu = str(bindir / "criu")
        for exe in (self.runc, self.criu):
            Path(exe).write_text("#!/bin/sh\nexit 0\n")
            os.chmod(exe, 0o755)
        monkeypatch.setenv("RUNC_CKPT_RUNC", self.runc)
        monkeypatch.setenv("PATH", f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        self.state_dir = tmp_path / "state"
        cfg = tmp_path / "runc-ckpt.yaml"
        cfg.write_text(f"state_dir: {self.state_dir}\nvolume_roots: [{tmp_path / 'volumes'}]\n")
        monkeypatch.setenv("RUNC_CKPT_CONFIG", str(cfg))
        monkeypatch.chdir(tmp_path)
        self.docs: dict[str, dict] = {}
        # An export records the restore's needs (metadata.needs), asking CRIU for this CPU's cpuinfo:
        # the fake CRIU writes none, which a recording tolerates.
        fp.register([os.path.realpath(self.criu), "cpuinfo", "dump", "-D", fp.any(min=1, max=1)], returncode=1,
                    occurrences=100)

    # -- containers -------------------------------------------------------------------------
    def container(self, cid: str, status: str = "running", created: str = "2026-11-26T08:00:00.5Z",
                  spec: dict | None = None, config_text: str | None = None,
                  annotations: dict | None = None) -> dict:
        bundle = self.tmp / f"bundle-{cid}"
        (bundle / "rootfs").mkdir(parents=True)
        cfg = dict(spec or SPEC)
        if annotations:
            cfg["annotations"] = annotations
        (bundle / "config.json").write_text(config_text if config_text is not None else json.dumps(cfg))
        doc = {"ociVersion": "1.0.2-dev", "id": cid, "pid": 4242, "status": status, "bundle": str(bundle),
               "rootfs": str(bundle / "rootfs"), "created": created, "annotations": annotations or {},
               "owner": ""}
        self.docs[cid] = doc
        return doc

    def query(self, globals_: list[str], *args: str) -> list[str]:
        return [self.runc, *globals_, "--log=", "--log-format=text", *args]

    def register_state(self, cid: str, globals_: list[str] = (), occurrences: int = 1) -> None:
        self.fp.register(self.query(list(globals_), "state", cid), stdout=json.dumps(self.docs[cid]),
                         occurrences=occurrences)

    def register_missing(self, cid: str, globals_: list[str] = ()) -> None:
        self.fp.register(self.query(list(globals_), "state", cid), returncode=1,
                         stderr='time="2026-11-26T09:00:00Z" level=error msg="container does not exist"\n')

    def register_list(self, globals_: list[str] = ()) -> None:
        self.fp.register(self.query(list(globals_), "list", "-f", "json"),
                         stdout=json.dumps(list(self.docs.values())))

    def register_criu_check(self, supported: bool) -> None:
        self.fp.register([self.criu, "check", "--feature", "mem_dirty_track"],
                         returncode=0 if supported else 1,
                         stderr="" if supported else
                         "Warn  (criu/cr-check.c:824): Dirty tracking is OFF. Memory snapshot will not work.\n")

    def register_checkpoint(self, argv_tail: list, globals_: list = (), returncode: int = 0,
                            log_lines: list[str] = (), absolute_parent: bool = False, stdout: str | None = None,
                            pages_written: int = 16) -> None:
        """runc checkpoint that acts like CRIU: images, stats-dump, a `parent` link, log lines."""

        def act(process) -> None:
            argv = list(process.args)
            image = _value(argv, "--image-path") or os.path.join(os.getcwd(), "checkpoint")
            work = _value(argv, "--work-path") or image
            parent = _value(argv, "--parent-path")
            os.makedirs(image, exist_ok=True)
            os.makedirs(work, exist_ok=True)
            Path(work, "dump.log").write_text("criu log\n")
            log = _value(argv[:argv.index("checkpoint")], "--log")
            if log_lines and log:
                with open(log, "a") as f:
                    f.writelines(line + "\n" for line in log_lines)
            if returncode == 0:
                Path(image, "inventory.img").write_bytes(b"inv")
                Path(work, "stats-dump").write_bytes(stats_image(freezing_time=11, frozen_time=22,
                                                                 memdump_time=33, memwrite_time=44,
                                                                 pages_scanned=55, pages_written=pages_written))
                if parent:
                    target = os.path.normpath(os.path.join(os.path.realpath(image), parent)) \
                        if absolute_parent else parent
                    os.symlink(target, os.path.join(image, "parent"))
            process.returncode = returncode

        self.fp.register([self.runc, *globals_, "checkpoint", *argv_tail], callback=act, stdout=stdout)

    def main(self, *argv: str) -> int:
        return cli.main(list(argv))

    def checkpoint_calls(self) -> list[list[str]]:
        return [list(c) for c in self.fp.calls if "checkpoint" in c and c[0] == self.runc]


def _value(argv: list[str], flag: str) -> str | None:
    """The last value of flag in argv (runc semantics: the last one wins)."""
    found = None
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            found = argv[i + 1]
        elif a.startswith(flag + "="):
            found = a.split("=", 1)[1]
    return found


@pytest.fixture
def env(tmp_path, fp, monkeypatch) -> Env:
    return Env(tmp_path, fp, monkeypatch)


def ours(env: Env, cid: str, *rest: str) -> Path:
    return env.state_dir.joinpath(cid, *rest)


# ---- help and argv translation --------------------------------------------------------------

def test_help_exits_zero_and_lists_every_flag(env, capfd):
    assert env.main("checkpoint", "--help") == 0
    out = capfd.readouterr().out
    for flag in ("--all, -a", "--compress value, -c value", "--export value, -e value", "--image-path value",
                 "--leave-running, -R", "--pre-checkpoint, -P", "--print-stats", "--with-previous",
                 "--work-path value", "--parent-path value", "--pre-dump", "--status-fd value"):
        assert flag in out
    assert '(default: "zstd")' in out
    assert not env.fp.calls


def test_podman_shape_passes_through_exactly(env, capfd):
    b = env.tmp / "bundle-ctr"
    env.container("ctr")
    env.register_state("ctr")
    tail = ["--image-path", f"{b}/checkpoint", "--work-path", str(b), "--leave-running", "--tcp-established",
            "--file-locks", "--leave-running", "ctr"]
    env.register_checkpoint(tail)
    assert env.main("checkpoint", *tail) == 0
    assert env.checkpoint_calls() == [[env.runc, "checkpoint", *tail]]
    assert (b / "checkpoint" / "inventory.img").exists()
    assert (b / "stats-dump").exists()          # podman reads it after we return
    assert not env.state_dir.joinpath("ctr").exists()
    assert capfd.readouterr().out == ""


def test_with_a_node_key_an_engines_images_dir_gets_sealed_images_only(env, seal_keys, fake_tmpfs):
    """Node-level encryption: runc is pointed at the tmpfs dir (the caller's argv otherwise as spelled), the
    caller's dir receives every image sealed plus the listing, and the tmpfs dir and its record go."""
    with open(os.environ["RUNC_CKPT_CONFIG"], "a") as f:
        f.write(f"encryption_key: jwe:{seal_keys['ec'][1]}\n")
    b = env.tmp / "bundle-ctr"
    env.container("ctr")
    env.register_state("ctr")
    tail = ["--image-path", f"{b}/checkpoint", "--work-path", str(b), "--tcp-established", "ctr"]
    env.register_checkpoint(["--image-path", fake_tmpfs.images, *tail[2:]])
    assert env.main("checkpoint", *tail) == 0
    assert env.checkpoint_calls() == [[env.runc, "checkpoint", "--image-path", fake_tmpfs.images, *tail[2:]]]
    # The fake CRIU writes only inventory.img, kept in the clear (podman checks for it); what is sealed and
    # how: tests/unit/test_sealed_images_dir.py.
    assert sorted(os.listdir(b / "checkpoint")) == ["inventory.img", "runc-ckpt.sealed.json"]
    assert json.loads((b / "checkpoint" / "runc-ckpt.sealed.json").read_text())["files"] == ["inventory.img"]
    assert (b / "stats-dump").exists()          # the caller's work dir: logs and stats, no memory
    assert os.listdir(fake_tmpfs.root) == []
    assert not [n for n in os.listdir(ours(env, "ctr")) if n.startswith(".tmpfs-")]


def test_with_a_node_key_a_pre_dump_into_an_engines_dir_is_not_sealed(env, seal_keys, fake_tmpfs):
    """Not covered: a pre-dump chain (its parent link) is not sealed; the call passes through as before."""
    with open(os.environ["RUNC_CKPT_CONFIG"], "a") as f:
        f.write(f"encryption_key: jwe:{seal_keys['ec'][1]}\n")
    b = env.tmp / "bundle-ctr"
    env.container("ctr")
    env.register_state("ctr")
    env.register_criu_check(supported=True)
    tail = ["--image-path", f"{b}/pre-checkpoint", "--work-path", str(b), "--leave-running", "--pre-dump", "ctr"]
    env.register_checkpoint(tail)
    assert env.main("checkpoint", *tail) == 0
    assert env.checkpoint_calls() == [[env.runc, "checkpoint", *tail]]
    assert os.listdir(fake_tmpfs.root) == []


def test_podman_pre_dump_shape_checks_memory_tracking_first(env, capfd):
    b = env.tmp / "bundle-ctr"
    env.container("ctr")
    env.register_state("ctr")
    env.register_criu_check(supported=True)
    tail = ["--image-path", f"{b}/pre-checkpoint", "--work-path", str(b), "--leave-running", "--pre-dump", "ctr"]
    env.register_checkpoint(tail)
    assert env.main("checkpoint", *tail) == 0
    assert env.checkpoint_calls() == [[env.runc, "checkpoint", *tail]]


def test_podman_with_previous_shape_validates_its_relative_parent(env):
    b = env.tmp / "bundle-ctr"
    env.container("ctr")
    (b / "pre-checkpoint").mkdir()
    env.register_state("ctr")
    env.register_criu_check(supported=True)
    tail = ["--image-path", f"{b}/checkpoint", "--work-path", str(b), "--parent-path", "../pre-checkpoint", "ctr"]
    env.register_checkpoint(tail, absolute_parent=True)
    assert env.main("checkpoint", *tail) == 0
    assert env.checkpoint_calls() == [[env.runc, "checkpoint", *tail]]
    # CRIU's absolute link (CRIU issue 116) was made relative.
    assert os.readlink(b / "checkpoint" / "parent") == "../pre-checkpoint"


def test_crio_shape_keeps_globals_and_flags(env):
    root = str(env.tmp / "crio-root")
    g = ["--root", root, "--systemd-cgroup"]
    d = env.tmp / "crio-ckpt"
    env.container("ctr")
    env.register_state("ctr", g)
    tail = ["--file-locks", "--image-path", f"{d}/checkpoint", "--work-path", str(d), "--leave-running", "ctr"]
    env.register_checkpoint(tail, globals_=g)
    assert env.main(*g, "checkpoint", *tail) == 0
    assert env.checkpoint_calls() == [[env.runc, *g, "checkpoint", *tail]]


def test_containerd_shape_relays_a_private_log(env):
    b = env.tmp / "bundle-ctr"
    log = b / "log.json"
    g = ["--root", str(env.tmp / "ctrd"), "--log", str(log), "--log-format", "json"]
    env.container("ctr")
    env.register_state("ctr", g)
    tail = ["--image-path", str(env.tmp / "img"), "--work-path", str(env.tmp / "wrk"), "--tcp-established",
            "--ext-unix-sk", "--shell-job", "--file-locks", "--empty-ns", "network", "--leave-running", "ctr"]
    env.register_checkpoint(tail, globals_=[*g, "--log", env.fp.any(min=1, max=1)],
                            log_lines=['{"level":"info","msg":"checkpoint done","time":"2026-11-26T09:00:00Z"}'])
    assert env.main(*g, "checkpoint", *tail) == 0
    (call,) = env.checkpoint_calls()
    private = call[len(g) + 2]
    assert call[:len(g) + 1] == [env.runc, *g]
    assert call[len(g) + 1] == "--log" and private != str(log)
    assert call[len(g) + 3:] == ["checkpoint", *tail]
    assert not os.path.exists(private)
    assert log.read_text().splitlines() == ['{"level":"info","msg":"checkpoint done","time":"2026-11-26T09:00:00Z"}']


def test_short_leave_running_is_spelled_for_runc(env):
    env.container("ctr")
    env.register_state("ctr")
    img = str(env.tmp / "img")
    env.register_checkpoint(["--image-path", img, "--leave-running", "ctr"])
    assert env.main("checkpoint", "--image-path", img, "-R", "ctr") == 0
    assert env.checkpoint_calls()[0][-2] == "--leave-running"


def test_flags_after_the_id_and_equals_forms_are_forwarded(env):
    env.container("ctr")
    env.register_state("ctr")
    img = str(env.tmp / "img")
    # The caller's order, as given; only our -R alias is spelled the way runc knows it.
    env.register_checkpoint([f"--image-path={img}", "ctr", "--manage-cgroups-mode", "soft", "--leave-running=true"])
    assert env.main("checkpoint", f"--image-path={img}", "ctr", "--manage-cgroups-mode", "soft", "-R=true") == 0


# ---- our state dir and pre-dump chains -------------------------------------------------------

def test_plain_checkpoint_goes_where_runc_writes(env):
    env.container("ctr")
    env.register_state("ctr")
    env.register_checkpoint(["ctr"])       # runc's argv unchanged: runc picks ./checkpoint itself
    assert env.main("checkpoint", "ctr") == 0
    assert (env.tmp / "checkpoint" / "inventory.img").exists()
    assert (env.tmp / "checkpoint" / "stats-dump").exists()   # work dir = image dir, as runc
    assert not env.state_dir.exists()


def test_several_containers_go_to_the_state_dir(env):
    for cid in ("a", "b"):
        env.container(cid)
        env.register_state(cid)
        env.register_checkpoint(["--image-path", str(ours(env, cid, f".checkpoint.new-{PID}")),
                                 "--work-path", str(ours(env, cid, "work")), "--leave-running", cid])
    assert env.main("checkpoint", "a", "--leave-running", "b") == 0
    for cid in ("a", "b"):
        assert ours(env, cid, "checkpoint", "inventory.img").exists()
    assert not (env.tmp / "checkpoint").exists()


@pytest.mark.parametrize("given, sent", [
    (["--bogus", "ctr"], ["--bogus", "ctr"]),                      # a boolean runc may know
    (["--newer", "v", "ctr"], ["--newer", "v", "ctr"]),            # a value flag runc may know
    (["ctr", "--newer=v", "-R"], ["ctr", "--newer=v", "--leave-running"]),
])
def test_unknown_flags_go_to_runc_as_given(env, given, sent):
    env.container("ctr")
    env.register_state("ctr")
    env.register_checkpoint(sent)
    assert env.main("checkpoint", *given) == 0


def test_an_unknown_flag_before_several_ids_is_ambiguous(env, capfd):
    assert env.main("checkpoint", "-k", "--newer", "a", "b", "c") == 1
    assert "cannot tell whether 'a' is the value of -newer" in capfd.readouterr().err
    assert not env.checkpoint_calls()


@pytest.mark.parametrize("argv", [["--image-path"], ["--status-fd", "three", "x"], ["--leave-running=maybe", "x"],
                                  [], ["--leave-running"], ["--newer", "a", "b", "c"]])
def test_a_usage_error_without_our_flags_is_runcs_to_report(env, argv):
    with pytest.raises(SystemExit):
        pass_through_exec(env, "checkpoint", *argv)
    assert not env.fp.calls


@pytest.mark.parametrize("argv, words", [
    (["--status-fd", "three", "-k", "x"], 'three\\" for flag -status-fd: parse error'),
    (["-e", "a.tar", "--image-path"], "flag needs an argument: -image-path"),
    (["--leave-running=maybe", "--print-stats", "x"], 'maybe\\" for -leave-running: parse error'),
])
def test_a_usage_error_with_our_flags_is_ours(env, capfd, argv, words):
    assert env.main("checkpoint", *argv) == 1
    assert words in capfd.readouterr().err
    assert not env.fp.calls


def pass_through_exec(env, *argv: str) -> None:
    """cli.main with os.execv faked: the call must be handed to runc unchanged."""
    import runc_ckpt.base.realrunc as pt

    def fake_exec(path: str, args: list[str]) -> None:
        assert [path, *args[1:]] == [env.runc, *argv]
        raise SystemExit(0)
    saved = pt.os.execv
    pt.os.execv = fake_exec
    try:
        env.main(*argv)
    finally:
        pt.os.execv = saved


def test_second_checkpoint_replaces_the_first_only_on_success(env):
    env.container("ctr")
    ours(env, "ctr", "checkpoint").mkdir(parents=True)
    ours(env, "ctr", "checkpoint", "stale.img").write_text("old")
    env.register_list()
    new = str(ours(env, "ctr", f".checkpoint.new-{PID}"))
    tail = ["--image-path", new, "--work-path", str(ours(env, "ctr", "work")), "ctr"]
    env.register_checkpoint(tail, returncode=1)
    assert env.main("checkpoint", "--latest") == 1       # --latest: the state dir
    assert ours(env, "ctr", "checkpoint", "stale.img").exists()   # the old checkpoint survives a failure
    assert not os.path.exists(new)
    env.register_checkpoint(tail)
    env.register_list()
    assert env.main("checkpoint", "--latest") == 0
    assert sorted(os.listdir(ours(env, "ctr", "checkpoint"))) == ["inventory.img"]


def test_pre_checkpoints_chain_and_with_previous_uses_the_newest(env):
    env.container("ctr")
    work = str(ours(env, "ctr", "work"))
    env.register_criu_check(supported=True)   # asked once, then cached
    env.register_state("ctr", occurrences=4)
    p1, p2 = str(ours(env, "ctr", "pre-checkpoint.1")), str(ours(env, "ctr", "pre-checkpoint.2"))
    env.register_checkpoint(["--image-path", p1, "--work-path", work, "--pre-dump", "ctr"])
    env.register_checkpoint(["--image-path", p2, "--work-path", work, "--pre-dump",
                             "--parent-path", "../pre-checkpoint.1", "ctr"], absolute_parent=True)
    new = str(ours(env, "ctr", f".checkpoint.new-{PID}"))
    env.register_checkpoint(["--image-path", new, "--work-path", work,
                             "--parent-path", "../pre-checkpoint.2", "ctr"])
    assert env.main("checkpoint", "--pre-checkpoint", "ctr") == 0
    assert os.readlink(ours(env, "ctr", "pre-checkpoint")) == "pre-checkpoint.1"
    assert env.main("checkpoint", "-P", "ctr") == 0
    assert os.readlink(ours(env, "ctr", "pre-checkpoint")) == "pre-checkpoint.2"
    assert os.readlink(ours(env, "ctr", "pre-checkpoint.2", "parent")) == "../pre-checkpoint.1"
    assert env.main("checkpoint", "--with-previous", "ctr") == 0
    assert os.readlink(ours(env, "ctr", "checkpoint", "parent")) == "../pre-checkpoint.2"
    assert os.path.isdir(ours(env, "ctr", "checkpoint", "parent"))
    # A full checkpoint ends the chain: --with-previous now needs a new pre-checkpoint.
    assert not os.path.lexists(ours(env, "ctr", "pre-checkpoint"))
    assert env.main("checkpoint", "--with-previous", "ctr") == 1
    assert len(env.checkpoint_calls()) == 3


def test_new_chain_after_a_full_checkpoint_starts_without_parent(env):
    env.container("ctr")
    ours(env, "ctr", "pre-checkpoint.1").mkdir(parents=True)
    ours(env, "ctr", "pre-checkpoint.2").mkdir()        # chain ended: no pointer
    env.register_criu_check(supported=True)
    env.register_state("ctr")
    p3 = str(ours(env, "ctr", "pre-checkpoint.3"))
    env.register_checkpoint(["--image-path", p3, "--work-path", str(ours(env, "ctr", "work")), "--pre-dump", "ctr"])
    assert env.main("checkpoint", "-P", "ctr") == 0


def test_with_previous_under_caller_paths_uses_the_podman_sibling(env):
    b = env.tmp / "bundle-ctr"
    env.container("ctr")
    (b / "pre-checkpoint").mkdir()
    env.register_state("ctr")
    env.register_criu_check(supported=True)
    env.register_checkpoint(["--parent-path", "../pre-checkpoint", "--image-path", f"{b}/checkpoint",
                             "--work-path", str(b), "ctr"])
    assert env.main("checkpoint", "--image-path", f"{b}/checkpoint", "--work-path", str(b),
                    "--with-previous", "ctr") == 0


def test_with_previous_without_pre_checkpoint_touches_nothing(env, capfd):
    env.container("ctr")
    env.register_state("ctr")
    assert env.main("checkpoint", "--with-previous", "ctr") == 1
    assert "no pre-checkpoint" in capfd.readouterr().err
    assert not env.checkpoint_calls()
    assert not ours(env, "ctr").exists()


def test_pre_checkpoint_with_previous_is_an_error(env, capfd):
    assert env.main("checkpoint", "--pre-checkpoint", "--with-previous", "ctr") == 1
    assert "--with-previous cannot be used with --pre-checkpoint" in capfd.readouterr().err
    assert not env.fp.calls


@pytest.mark.parametrize("parent, words", [("/abs/pre", "--parent-path must be relative"),
                                           ("../missing", "is not a directory")])
def test_caller_parent_path_is_validated(env, capfd, parent, words):
    env.container("ctr")
    env.register_state("ctr")
    assert env.main("checkpoint", "--image-path", str(env.tmp / "b" / "checkpoint"), "--parent-path", parent,
                    "ctr") == 1
    assert words in capfd.readouterr().err
    assert not env.checkpoint_calls()


def test_missing_memory_tracking_is_a_clear_error_and_cached(env, capfd):
    env.container("ctr")
    env.register_state("ctr", occurrences=2)
    env.register_criu_check(supported=False)   # registered once: the second run must use the cache
    for _ in range(2):
        assert env.main("checkpoint", "--pre-checkpoint", "ctr") == 1
        err = capfd.readouterr().err
        assert "memory tracking" in err and "Dirty tracking is OFF" in err
    assert not env.checkpoint_calls()
    assert not ours(env, "ctr").exists()
    cache = json.loads((env.state_dir / "criu-features.json").read_text())
    assert cache["value"]["supported"] is False
    assert cache["key"]["path"] == os.path.realpath(env.criu) and cache["key"]["feature"] == "mem_dirty_track"


def test_memory_tracking_cache_is_keyed_by_criu_mtime(env, capfd):
    env.container("ctr")
    env.register_state("ctr", occurrences=2)
    env.register_criu_check(supported=False)
    assert env.main("checkpoint", "-P", "ctr") == 1
    os.utime(env.criu, ns=(1, 1))               # "a new CRIU": asked again
    env.register_criu_check(supported=False)
    assert env.main("checkpoint", "-P", "ctr") == 1
    assert sum(1 for c in env.fp.calls if "check" in c) == 2


def test_global_criu_flag_names_the_criu_to_check(env, tmp_path):
    other = tmp_path / "other-criu"
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    env.container("ctr")
    g = ["--criu", str(other)]
    env.register_state("ctr", g)
    env.fp.register([str(other), "check", "--feature", "mem_dirty_track"], returncode=1)
    assert env.main(*g, "checkpoint", "-P", "ctr") == 1


# ---- container selection ---------------------------------------------------------------------

def test_all_checkpoints_every_running_container(env):
    env.container("a")
    env.container("b", status="stopped")
    env.container("c", status="paused")
    env.container("d")
    env.register_list()
    for cid in ("a", "d"):
        env.register_checkpoint(["--image-path", str(ours(env, cid, f".checkpoint.new-{PID}")),
                                 "--work-path", str(ours(env, cid, "work")), cid])
    assert env.main("checkpoint", "--all") == 0
    assert [c[-1] for c in env.checkpoint_calls()] == ["a", "d"]


def test_latest_picks_the_newest_created_with_nanoseconds(env):
    env.container("old", created="2026-11-26T09:56:47.4305Z")
    env.container("new", created="2026-11-26T09:56:47.43051Z")
    env.container("older", created="2026-11-26T09:56:47.43Z")
    g = ["--root", str(env.tmp / "r")]
    env.register_list(g)
    env.register_checkpoint(["--image-path", str(ours(env, "new", f".checkpoint.new-{PID}")),
                             "--work-path", str(ours(env, "new", "work")), "new"], globals_=g)
    assert env.main(*g, "checkpoint", "-l") == 0
    assert env.checkpoint_calls()[0][-1] == "new"


def test_latest_that_is_stopped_gets_runcs_error(env, capfd):
    env.container("a", created="2026-11-26T09:00:00Z")
    env.container("b", status="stopped", created="2026-11-26T10:00:00Z")
    env.register_list()
    assert env.main("checkpoint", "--latest") == 1
    assert "Container cannot be checkpointed in stopped state" in capfd.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["--all", "--latest"], "cannot be used together"),
    (["--all", "x"], "take no container names"),
    (["-k"], "requires at least 1 container id"),
    (["--ignore-rootfs", "x"], "--ignore-rootfs only works with --export"),
    (["--ignore-volumes", "x"], "--ignore-volumes only works with --export"),
    (["--compress", "lz4", "-e", "out.tar", "x"], "invalid value 'lz4' for --compress"),
])
def test_bad_flags_touch_nothing(env, capfd, argv, words):
    assert env.main("checkpoint", *argv) == 1
    assert words in capfd.readouterr().err
    assert not env.fp.calls
    assert not env.state_dir.exists()


# ---- bad input: one error line, nothing touched ----------------------------------------------

def only_asked_state(env) -> bool:
    """Nothing ran but `runc state`, the read-only query commands.checkpoint asks ahead (before the flow loads)."""
    return all(c[-2] == "state" for c in env.fp.calls)


def test_export_into_missing_dir_is_refused_before_touching(env, capfd):
    env.container("ctr")
    env.register_state("ctr")
    assert env.main("checkpoint", "-e", str(env.tmp / "nope" / "x.tar"), "ctr") == 1
    assert "does not exist" in capfd.readouterr().err
    assert only_asked_state(env)


@pytest.mark.parametrize("target, words", [("/proc/runc-ckpt-test.tar", "cannot write"), (".", "is a directory")])
def test_export_into_unwritable_place_is_refused(env, capfd, target, words):
    env.fp.register(env.query([], "state", "ctr"), returncode=1)
    assert env.main("checkpoint", "-e", target, "ctr") == 1
    assert words in capfd.readouterr().err
    assert only_asked_state(env)


def test_export_with_several_containers_is_refused(env, capfd):
    env.container("a")
    env.container("b")
    env.register_list()
    assert env.main("checkpoint", "--all", "-e", str(env.tmp / "x.tar")) == 1
    assert "one container" in capfd.readouterr().err
    assert not env.checkpoint_calls()
    assert not (env.tmp / "x.tar").exists()


def test_export_with_several_names_is_refused(env, capfd):
    env.container("a")
    env.container("b")
    env.register_state("a")
    env.register_state("b")
    assert env.main("checkpoint", "-e", str(env.tmp / "x.tar"), "a", "b") == 1
    assert "one container" in capfd.readouterr().err


def test_image_path_with_several_containers_is_refused(env, capfd):
    env.container("a")
    env.container("b")
    env.register_state("a")
    env.register_state("b")
    assert env.main("checkpoint", "--image-path", "x", "a", "b") == 1
    assert "--image-path/--work-path name one container" in capfd.readouterr().err


@pytest.mark.parametrize("text, words", [
    ("{not json", "not valid JSON"),
    (json.dumps({**SPEC, "ociVersion": 1}), "ociVersion: 1 is not of type 'string'"),
    (json.dumps({k: v for k, v in SPEC.items() if k != "ociVersion"}), "'ociVersion' is a required property"),
    (json.dumps({**SPEC, "process": {"args": ["sh"]}}), "process: 'cwd' is a required property"),
    (json.dumps({**SPEC, "mounts": [{"type": "bind"}]}), "mounts/0: 'destination' is a required property"),
    (json.dumps({**SPEC, "linux": {"namespaces": [{"type": "bogus"}]}}), "linux/namespaces/0/type"),
])
def test_malformed_config_json_is_refused(env, capfd, text, words):
    env.container("ctr", config_text=text)
    log = env.tmp / "log.json"
    g = ["--log", str(log), "--log-format", "json"]
    env.register_state("ctr", g)
    assert env.main(*g, "checkpoint", "ctr") == 1
    (line,) = log.read_text().splitlines()
    doc = json.loads(line)
    assert doc["level"] == "error" and words in doc["msg"] and "config.json" in doc["msg"]
    assert not env.checkpoint_calls()


def test_missing_container_gets_runcs_words_in_one_log_line(env, capfd):
    log = env.tmp / "log.json"
    g = ["--log", str(log), "--log-format", "json"]
    env.register_missing("ghost", g)
    assert env.main(*g, "checkpoint", "ghost") == 1
    (line,) = log.read_text().splitlines()
    assert json.loads(line)["msg"] == "container does not exist"
    assert "container does not exist" in capfd.readouterr().err


@pytest.mark.parametrize("status", ["created", "stopped"])
def test_not_running_container_is_refused_like_runc(env, capfd, status):
    env.container("ctr", status=status)
    env.register_state("ctr")
    assert env.main("checkpoint", "ctr") == 1
    assert f"Container cannot be checkpointed in {status} state" in capfd.readouterr().err
    assert not env.checkpoint_calls()


# ---- runc failures ---------------------------------------------------------------------------

RUNC_TWO_ERRORS = [
    '{"level":"error","msg":"container still running","time":"2026-11-26T09:57:14Z"}',
    '{"level":"error","msg":"criu failed: type NOTIFY errno 0\\nlog file: /x/dump.log","time":"2026-11-26T09:57:14Z"}',
]


def test_runc_failure_leaves_one_error_line_in_a_json_log(env, capfd):
    log = env.tmp / "log.json"
    g = ["--log", str(log), "--log-format", "json"]
    env.container("ctr")
    env.register_state("ctr", g, occurrences=2)  # before, and after the failure for the context
    env.register_checkpoint(["ctr"], globals_=[*g, "--log", env.fp.any(min=1, max=1)],
                            returncode=1, log_lines=RUNC_TWO_ERRORS)
    assert env.main(*g, "checkpoint", "ctr") == 1
    (line,) = log.read_text().splitlines()
    # runc's one error, word for word, with what it lacks in parentheses: no second line.
    assert json.loads(line)["msg"] == (json.loads(RUNC_TWO_ERRORS[1])["msg"]
                                       + f" (runc-ckpt: CRIU's log is {env.tmp}/checkpoint/dump.log; the container "
                                         "is running; runc also said: container still running)")
    assert list(json.loads(line)) == ["level", "msg", "time"]
    assert capfd.readouterr().err == ""          # no free-form line of ours beside runc's


def test_runc_failure_context_is_a_debug_line_with_debug(env):
    log = env.tmp / "log.json"
    g = ["--log", str(log), "--log-format", "json", "--debug"]
    env.container("ctr")
    env.register_state("ctr", g, occurrences=3)  # before, and twice after the failure for the context
    env.register_checkpoint(["ctr"], globals_=[*g, "--log", env.fp.any(min=1, max=1)],
                            returncode=1, log_lines=RUNC_TWO_ERRORS)
    assert env.main(*g, "checkpoint", "ctr") == 1
    docs = [json.loads(line) for line in log.read_text().splitlines()]
    [error] = [d["msg"] for d in docs if d["level"] == "error"]
    assert error.startswith(json.loads(RUNC_TWO_ERRORS[1])["msg"] + " (runc-ckpt: CRIU's log is ")
    context = [d["msg"] for d in docs if "checkpoint of ctr failed" in d["msg"]]
    assert len(context) == 1 and f"CRIU's log: {env.tmp}/checkpoint/dump.log" in context[0]
    assert "the container is running" in context[0] and "runc also said: container still running" in context[0]
    assert (env.tmp / "checkpoint" / "dump.log").exists()     # CRIU's log stays where runc had it written
    assert not env.state_dir.exists()


def test_runc_failure_with_text_log_keeps_the_last_error(env):
    """The one error keeps logrus's text layout (time first, msg quoted) with our context in it."""
    log = env.tmp / "log.txt"
    g = ["--log", str(log)]
    env.container("ctr")
    env.register_state("ctr", g, occurrences=2)
    img = str(env.tmp / "img")
    env.register_checkpoint(["--image-path", img, "ctr"], globals_=[*g, "--log", env.fp.any(min=1, max=1)],
                            returncode=1, log_lines=[
                                'time="2026-11-26T09:57:14Z" level=warning msg="something"',
                                'time="2026-11-26T09:57:14Z" level=error msg="container still running"',
                                'time="2026-11-26T09:57:14Z" level=error msg="criu failed"'])
    assert env.main(*g, "checkpoint", "--image-path", img, "ctr") == 1
    lines = log.read_text().splitlines()
    assert [ln for ln in lines if "level=error" in ln] == [
        f'time="2026-11-26T09:57:14Z" level=error msg="criu failed (runc-ckpt: CRIU\'s log is {img}/dump.log; '
        'the container is running; runc also said: container still running)"']
    assert len(lines) == 2
    assert os.path.isdir(img)       # a caller's image path is never removed


def test_runc_failure_logging_to_stderr_returns_runcs_code(env, capfd):
    env.container("ctr")
    env.register_state("ctr")
    img = str(env.tmp / "img")
    env.register_checkpoint(["--image-path", img, "ctr"], returncode=3)
    assert env.main("checkpoint", "--image-path", img, "ctr") == 3
    assert capfd.readouterr().err == ""          # runc's own stderr only (faked runc: none)


def test_runc_killed_by_a_signal_gets_our_one_error_line(env):
    log = env.tmp / "log.json"
    g = ["--log", str(log), "--log-format", "json"]
    env.container("ctr")
    env.register_state("ctr", g, occurrences=2)
    img = str(env.tmp / "img")
    env.register_checkpoint(["--image-path", img, "ctr"], globals_=[*g, "--log", env.fp.any(min=1, max=1)],
                            returncode=-9)
    assert env.main(*g, "checkpoint", "--image-path", img, "ctr") == 1
    (line,) = log.read_text().splitlines()
    assert "runc checkpoint ctr failed (exit status -9)" in json.loads(line)["msg"]


# ---- print-stats -----------------------------------------------------------------------------

def test_print_stats_is_podman_shaped_json_on_a_clean_stdout(env, capfd):
    env.container("ctr")
    env.register_state("ctr")
    img = str(env.tmp / "img")
    env.register_checkpoint(["--image-path", img, "ctr"], stdout="noise from runc\n", pages_written=77)
    assert env.main("checkpoint", "--print-stats", "--image-path", img, "ctr") == 0
    out, err = capfd.readouterr()
    doc = json.loads(out)
    assert list(doc) == ["checkpoint_duration", "podman_checkpoint_duration", "container_statistics"]
    assert doc["checkpoint_duration"] == doc["podman_checkpoint_duration"] > 0
    (c,) = doc["container_statistics"]
    assert c["Id"] == "ctr" and c["RawInput"] == "ctr" and c["runtime_checkpoint_duration"] >= 0
    assert c["criu_statistics"] == {"freezing_time": 11, "frozen_time": 22, "memdump_time": 33,
                                    "memwrite_time": 44, "pages_scanned": 55, "pages_written": 77}
    assert "noise from runc" in err


# ---- export wiring (the archive writer itself is export.py's, tested there) -------------------

@pytest.fixture
def captured_export(monkeypatch):
    from runc_ckpt.archive import export
    requests = []

    def fake(req):
        requests.append(req)
        assert os.path.exists(os.path.join(req.image_dir, "inventory.img"))
        assert os.path.exists(os.path.join(req.work_dir, "stats-dump"))
        return export.ExportResult(req.archive, 1, {}, "none", [])

    monkeypatch.setattr(export, "write_archive", fake)
    return requests


def test_export_request_carries_config_dump_and_manifest_fields(env, captured_export):
    ann = {"io.container.manager": "cri-o", "io.kubernetes.cri-o.Name": "k8s_web",
           "io.kubernetes.cri-o.ImageName": "busybox:latest", "io.kubernetes.cri-o.ImageRef": "sha256:abc"}
    env.container("ctr", annotations=ann, created="2026-11-26T08:00:00.123456789Z")
    env.register_state("ctr")
    env.fp.register([env.runc, "--version"], stdout="runc version 1.1.5\ncommit: v1.1.5\n")
    env.fp.register([env.criu, "--version"], stdout="Version: 4.2.1\n")
    new = str(ours(env, "ctr", f".checkpoint.new-{PID}"))
    env.register_checkpoint(["--image-path", new, "--work-path", str(ours(env, "ctr", "work")), "ctr"])
    assert env.main("checkpoint", "-e", "out.tar.gz", "-c", "gzip", "--ignore-volumes",
                    "ctr") == 0
    (req,) = captured_export
    assert req.archive == str(env.tmp / "out.tar.gz")
    assert req.compress == "gzip" and req.image_member == "checkpoint"
    assert req.image_dir == str(ours(env, "ctr", "checkpoint"))
    assert req.include_rootfs is True and req.include_volumes is False
    assert req.rootfs == str(env.tmp / "bundle-ctr" / "rootfs") and req.spec["annotations"] == ann
    d = req.config_dump
    assert (d["id"], d["name"], d["runtime"], d["restored"]) == ("ctr", "k8s_web", "runc-ckpt", False)
    assert (d["rootfsImageName"], d["rootfsImageRef"]) == ("busybox:latest", "sha256:abc")
    assert d["createdTime"] == "2026-11-26T08:00:00.123456789Z" and d["checkpointedTime"].endswith("Z")
    assert req.manifest_fields["versions"] == {"runc-ckpt": req.manifest_fields["versions"]["runc-ckpt"],
                                               "runc": "1.1.5", "criu": "4.2.1"}
    assert req.manifest_fields["container"] == {"id": "ctr", "name": "k8s_web"}
    assert req.manifest_fields["options"]["compress"] == "gzip"


def _export_run(env, *extra: str, image: str | None = None) -> int:
    """An --export of ctr; image: where CRIU is told to dump (default: our state dir's new images dir)."""
    env.container("ctr")
    env.register_state("ctr")
    env.fp.register([env.runc, "--version"], stdout="runc version 1.1.5\n")
    env.fp.register([env.criu, "--version"], stdout="Version: 4.2.1\n")
    new = image or str(ours(env, "ctr", f".checkpoint.new-{PID}"))
    env.register_checkpoint(["--image-path", new, "--work-path", str(ours(env, "ctr", "work")), "ctr"])
    return env.main("checkpoint", "-e", "out.tar", *extra, "ctr")


def test_export_without_keep_removes_our_images_and_logs(env, captured_export):
    assert _export_run(env) == 0
    assert not ours(env, "ctr", "checkpoint").exists()
    assert not ours(env, "ctr", "work", "stats-dump").exists()
    assert not ours(env, "ctr", "work", "dump.log").exists()


def test_export_target_is_checked_before_the_dump_and_not_probed_again(env, captured_export):
    assert _export_run(env) == 0
    (req,) = captured_export
    assert req.archive == os.path.abspath("out.tar") and req.target_checked is True


def test_export_with_keep_keeps_everything(env, captured_export):
    assert _export_run(env, "--keep") == 0
    assert ours(env, "ctr", "checkpoint", "inventory.img").exists()
    assert ours(env, "ctr", "work", "stats-dump").exists()
    assert ours(env, "ctr", "work", "dump.log").exists()


def test_export_never_removes_a_callers_paths(env, captured_export):
    env.container("ctr")
    env.register_state("ctr")
    env.fp.register([env.runc, "--version"], stdout="runc version 1.1.5\n")
    env.fp.register([env.criu, "--version"], stdout="Version: 4.2.1\n")
    b = env.tmp / "bundle-ctr"
    env.register_checkpoint(["--image-path", f"{b}/checkpoint", "--work-path", str(b), "ctr"])
    assert env.main("checkpoint", "--image-path", f"{b}/checkpoint", "--work-path", str(b),
                    "-e", "out.tar", "ctr") == 0
    assert (b / "checkpoint" / "inventory.img").exists() and (b / "stats-dump").exists()
    assert (b / "dump.log").exists()


def test_failed_export_keeps_the_images_and_says_where(env, monkeypatch, capfd):
    from runc_ckpt.archive import export
    from runc_ckpt.base.errors import RuncCkptError

    def broken(req):
        raise RuncCkptError("writing archive out.tar failed: No space left on device")

    monkeypatch.setattr(export, "write_archive", broken)
    log = env.tmp / "log.json"
    env.container("ctr")
    g = ["--log", str(log), "--log-format", "json"]
    env.register_state("ctr", g)
    env.fp.register([env.runc, "--version"], stdout="runc version 1.1.5\n")
    env.fp.register([env.criu, "--version"], stdout="Version: 4.2.1\n")
    new = str(ours(env, "ctr", f".checkpoint.new-{PID}"))
    env.register_checkpoint(["--image-path", new, "--work-path", str(ours(env, "ctr", "work")), "ctr"],
                            globals_=[*g, "--log", env.fp.any(min=1, max=1)])
    assert env.main(*g, "checkpoint", "-e", "out.tar", "ctr") == 1
    (line,) = log.read_text().splitlines()
    msg = json.loads(line)["msg"]
    assert "No space left" in msg and f"images are kept in {ours(env, 'ctr', 'checkpoint')}" in msg
    assert ours(env, "ctr", "checkpoint", "inventory.img").exists()


def test_pre_checkpoint_export_keeps_the_chain(env, captured_export):
    env.container("ctr")
    env.register_state("ctr")
    env.register_criu_check(supported=True)
    env.fp.register([env.runc, "--version"], stdout="runc version 1.1.5\n")
    env.fp.register([env.criu, "--version"], stdout="Version: 4.2.1\n")
    p1 = str(ours(env, "ctr", "pre-checkpoint.1"))
    env.register_checkpoint(["--image-path", p1, "--work-path", str(ours(env, "ctr", "work")), "--pre-dump", "ctr"])
    assert env.main("checkpoint", "-P", "-e", "pre.tar", "ctr") == 0
    (req,) = captured_export
    assert req.image_member == "pre-checkpoint" and req.image_dir == p1 and req.include_rootfs is False
    assert os.path.isdir(p1)


def test_interrupt_during_runc_stops_before_export_and_says_where_the_images_are(env, monkeypatch, capfd,
                                                                                    captured_export):
    from runc_ckpt.runtime import logrelay
    real_wait = logrelay._wait_through_interrupts
    monkeypatch.setattr(logrelay, "_wait_through_interrupts",
                        lambda *a, **k: (real_wait(*a, **k)[0], signal.SIGINT))
    env.container("ctr")
    env.register_state("ctr")
    new = str(ours(env, "ctr", f".checkpoint.new-{PID}"))
    env.register_checkpoint(["--image-path", new, "--work-path", str(ours(env, "ctr", "work")), "ctr"])
    assert env.main("checkpoint", "-e", "out.tar", "ctr") == 130
    assert f"images are in {ours(env, 'ctr', 'checkpoint')}" in capfd.readouterr().err
    assert ours(env, "ctr", "checkpoint", "inventory.img").exists()
    assert captured_export == []


def test_export_of_a_chained_pre_checkpoint_is_refused_before_touching(env, capfd):
    env.container("ctr")
    ours(env, "ctr", "pre-checkpoint.1").mkdir(parents=True)
    ours(env, "ctr", "pre-checkpoint").symlink_to("pre-checkpoint.1")
    env.register_state("ctr")
    assert env.main("checkpoint", "-P", "-e", "pre.tar", "ctr") == 1
    assert "an archive holds one self-contained pre-checkpoint" in capfd.readouterr().err
    assert not env.checkpoint_calls() and not (env.tmp / "pre.tar").exists()


def test_export_with_previous_on_a_chain_of_two_is_refused(env, capfd):
    env.container("ctr")
    ours(env, "ctr", "pre-checkpoint.1").mkdir(parents=True)
    ours(env, "ctr", "pre-checkpoint.2").mkdir()
    ours(env, "ctr", "pre-checkpoint.2", "parent").symlink_to("../pre-checkpoint.1")
    ours(env, "ctr", "pre-checkpoint").symlink_to("pre-checkpoint.2")
    env.register_state("ctr")
    assert env.main("checkpoint", "--with-previous", "-e", "ckpt.tar", "ctr") == 1
    assert "itself builds on another one" in capfd.readouterr().err
    assert not env.checkpoint_calls()


def test_export_with_previous_on_a_single_pre_checkpoint_is_fine(env, captured_export):
    env.container("ctr")
    ours(env, "ctr", "pre-checkpoint.1").mkdir(parents=True)
    ours(env, "ctr", "pre-checkpoint").symlink_to("pre-checkpoint.1")
    env.register_state("ctr")
    env.register_criu_check(supported=True)
    env.fp.register([env.runc, "--version"], stdout="runc version 1.1.5\n")
    env.fp.register([env.criu, "--version"], stdout="Version: 4.2.1\n")
    new = str(ours(env, "ctr", f".checkpoint.new-{PID}"))
    env.register_checkpoint(["--image-path", new, "--work-path", str(ours(env, "ctr", "work")),
                             "--parent-path", "../pre-checkpoint.1", "ctr"])
    assert env.main("checkpoint", "--with-previous", "-e", "ckpt.tar", "--keep", "ctr") == 0
    (req,) = captured_export
    assert os.readlink(os.path.join(req.image_dir, "parent")) == "../pre-checkpoint.1"


# ---- encryption (trust.seal): the keys reach the writer, or the call is refused before the dump -----

def test_encryption_keys_reach_the_writer(env, captured_export, seal_keys, fake_tmpfs):
    assert _export_run(env, "--encryption-key", f"jwe:{seal_keys['rsa'][1]}",
                       "--encryption-key", f"jwe:{seal_keys['ec'][1]}", image=fake_tmpfs.images) == 0
    (req,) = captured_export
    assert [k.path for k in req.seal_for] == [seal_keys["rsa"][1], seal_keys["ec"][1]]


def test_the_node_key_applies_without_the_flag(env, captured_export, seal_keys, fake_tmpfs):
    with open(os.environ["RUNC_CKPT_CONFIG"], "a") as f:
        f.write(f"encryption_key: jwe:{seal_keys['ec'][1]}\n")
    assert _export_run(env, image=fake_tmpfs.images) == 0
    (req,) = captured_export
    assert [k.path for k in req.seal_for] == [seal_keys["ec"][1]]


def test_an_encrypted_export_dumps_into_tmpfs_and_wipes_it(env, seal_keys, fake_tmpfs, monkeypatch):
    """CRIU is told to dump into the tmpfs dir, the state dir only links to it while the export reads it, and
    afterwards neither the images, nor the link, nor the record naming the tmpfs dir is left."""
    from runc_ckpt.archive import export
    seen = []

    def fake(req):
        seen.append((os.readlink(req.image_dir), sorted(os.listdir(req.image_dir)),
                     [n for n in os.listdir(ours(env, "ctr")) if n.startswith(".tmpfs-")]))
        return export.ExportResult(req.archive, 1, {}, "none", [])

    monkeypatch.setattr(export, "write_archive", fake)
    assert _export_run(env, "--encryption-key", f"jwe:{seal_keys['ec'][1]}", image=fake_tmpfs.images) == 0
    assert seen == [(fake_tmpfs.images, ["inventory.img"], [".tmpfs-runc-ckpt-images-unit.json"])]
    assert os.listdir(fake_tmpfs.root) == []
    assert not ours(env, "ctr").exists() or not [n for n in os.listdir(ours(env, "ctr")) if n != "work"]


def test_a_failed_encrypted_dump_wipes_the_tmpfs_dir(env, seal_keys, fake_tmpfs):
    env.container("ctr")
    env.register_state("ctr")
    env.register_checkpoint(["--image-path", fake_tmpfs.images, "--work-path", str(ours(env, "ctr", "work")), "ctr"],
                            returncode=1)
    assert env.main("checkpoint", "-e", "out.tar", "--encryption-key", f"jwe:{seal_keys['ec'][1]}", "ctr") != 0
    assert os.listdir(fake_tmpfs.root) == []
    assert not [n for n in os.listdir(ours(env, "ctr")) if n.startswith((".tmpfs-", "checkpoint"))]


def test_images_an_encrypted_export_could_not_write_stay_on_tmpfs_while_they_are_the_only_copy(
        env, seal_keys, fake_tmpfs, monkeypatch, capfd):
    """Issue 19: the container is gone after the dump; a failed export keeps its images (on tmpfs, linked as
    the state dir's checkpoint, so a plain `restore ID` finds them)."""
    from runc_ckpt.archive import export

    def broken(req):
        raise RuncCkptError("disk full")

    monkeypatch.setattr(export, "write_archive", broken)
    env.container("ctr")
    env.register_state("ctr")
    env.fp.register([env.runc, "--version"], stdout="runc version 1.1.5\n")
    env.fp.register([env.criu, "--version"], stdout="Version: 4.2.1\n")
    env.register_checkpoint(["--image-path", fake_tmpfs.images, "--work-path", str(ours(env, "ctr", "work")), "ctr"])
    env.register_missing("ctr")          # after the dump, runc has removed the container
    assert env.main("checkpoint", "-e", "out.tar", "--encryption-key", f"jwe:{seal_keys['ec'][1]}", "ctr") == 1
    assert f"the checkpoint images are kept in {ours(env, 'ctr', 'checkpoint')}" in capfd.readouterr().err
    assert os.readlink(ours(env, "ctr", "checkpoint")) == fake_tmpfs.images
    assert os.path.isfile(os.path.join(fake_tmpfs.images, "inventory.img"))


@pytest.mark.parametrize("extra, words", [
    (["--keep"], "--keep would keep the checkpoint's memory on disk"),
    (["--image-path", "imgs"], "--image-path would keep"),
    (["--pre-checkpoint"], "--pre-checkpoint would keep"),
])
def test_what_would_keep_an_encrypted_checkpoint_on_disk_is_refused_first(env, capfd, seal_keys, fake_tmpfs,
                                                                        extra, words):
    env.container("ctr")
    env.register_state("ctr")
    assert env.main("checkpoint", "-e", "out.tar", "--encryption-key", f"jwe:{seal_keys['ec'][1]}", *extra,
                    "ctr") == 1
    err = capfd.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not env.checkpoint_calls() and os.listdir(fake_tmpfs.root) == []


def test_without_a_tmpfs_an_encrypted_export_is_refused_before_the_dump(env, capfd, seal_keys, fake_tmpfs,
                                                                        monkeypatch):
    from runc_ckpt.rootfs import mountinfo
    monkeypatch.setattr(mountinfo, "find_mount", lambda path, mountinfo_path=None: mountinfo.Mount(path, "ext4", "/dev/sda1"))
    env.container("ctr")
    env.register_state("ctr")
    assert env.main("checkpoint", "-e", "out.tar", "--encryption-key", f"jwe:{seal_keys['ec'][1]}", "ctr") == 1
    assert "is not a tmpfs mount" in capfd.readouterr().err
    assert not env.checkpoint_calls() and not os.path.exists("out.tar")


@pytest.mark.parametrize("argv, words", [
    (["--encryption-key", "jwe:/k.pub", "x"], "--encryption-key only works with --export"),
    (["-e", "out.tar", "--encryption-key", "/k.pub", "x"], "expected jwe:PATH"),
    (["-e", "out.tar", "--encryption-key", "jwe:/nonexistent/k.pub", "x"], "cannot read key"),
])
def test_bad_encryption_keys_touch_nothing(env, capfd, argv, words):
    env.container("x")
    env.register_state("x")
    assert env.main("checkpoint", *argv) == 1
    assert words in capfd.readouterr().err
    assert not env.checkpoint_calls()
    assert not os.path.exists("out.tar")
