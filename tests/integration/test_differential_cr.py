"""Differential tests: checkpoint and restore with the real runc and with runc-ckpt, side by side.

Each scenario runs on equal busybox bundles under separate private roots
(tests/integration/differential.py) and compares exit codes, stdout, log
lines, the files created and the container's state afterwards. Equal is the
rule; the only differences allowed are the ones runc-ckpt(1)'s COMPATIBILITY
section lists, and the tests below assert exactly those.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import require_tool
from tests.integration.conftest import COUNTER, make_spec, wait_for
from tests.integration.differential import OURS, REAL, Outcome, Pair, Side, Step, make_side

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pair(tmp_path_factory, busybox_lower, runc_ckpt_bin, real_runc) -> Iterator[Pair]:
    require_tool("criu")
    base = tmp_path_factory.mktemp("differential")
    p = Pair(make_side(REAL, real_runc, base / "real", busybox_lower, real_runc),
             make_side(OURS, runc_ckpt_bin, base / "ours", busybox_lower, real_runc))
    yield p
    p.close()


def fill(side: Side, args: tuple[str, ...]) -> list[str]:
    """Arguments with {B} (the side's bundle dir) and {LOG} (its log file) filled in."""
    return [a.format(B=side.bundle.path, LOG=side.log) for a in args]


def cr(checkpoint: tuple[str, ...] = (), restore: tuple[str, ...] | None = ("-d",),
       globals_: tuple[str, ...] = ()):
    """Scenario: `checkpoint ARGS ID`, then (unless None) `restore ARGS ID`, both from the bundle dir."""
    def scenario(side: Side, cid: str) -> list[Step]:
        g = tuple(fill(side, globals_))
        steps = [side.call("checkpoint", *fill(side, checkpoint), cid, globals_=g)]
        if restore is not None:
            steps.append(side.call("restore", *fill(side, restore), cid, globals_=g))
        return steps
    return scenario


def assert_same(real: Outcome, ours: Outcome) -> None:
    assert ours == real


FOUR = ("--tcp-established", "--file-locks", "--ext-unix-sk", "--shell-job")


@pytest.mark.parametrize("checkpoint, restore, globals_", [
    pytest.param((), ("-d",), (), id="no-path-flags"),
    pytest.param(("--image-path", "img", "--work-path", "wrk"), ("-d", "--image-path", "img", "--work-path", "wrk2"),
                 (), id="relative-paths"),
    pytest.param(("--image-path={B}/abs", "--work-path={B}/abswork"), ("--image-path", "{B}/abs", "-d"), (),
                 id="absolute-paths"),
    pytest.param(("--leave-running",), None, (), id="leave-running"),
    pytest.param(("--status-fd", "-1", "--leave-running"), None, (), id="status-fd-default"),
    pytest.param(("--status-fd=5", "--leave-running"), None, (), id="status-fd-closed"),
    pytest.param(("--page-server", "127.0.0.1:1", "--leave-running"), None, (), id="page-server-unreachable"),
    pytest.param(("--page-server", "nonsense", "--leave-running"), None, (), id="page-server-invalid"),
    pytest.param(("--manage-cgroups-mode", "full"), ("-d", "--manage-cgroups-mode", "full"), (),
                 id="manage-cgroups-mode"),
    pytest.param(("--manage-cgroups-mode", "bogus"), None, (), id="manage-cgroups-mode-invalid"),
    pytest.param(FOUR, ("-d", *FOUR), (), id="criu-options"),
    pytest.param((), ("-d", "--pid-file", "pid"), (), id="restore-pid-file"),
    pytest.param((), ("-d", "--no-subreaper"), (), id="restore-no-subreaper"),
    pytest.param((), ("-d", "--console-socket", "{B}/no-such-socket"), (), id="restore-console-socket"),
    pytest.param((), ("-d", "--bogus"), (), id="restore-unknown-flag"),
    pytest.param(("--bogus",), None, (), id="checkpoint-unknown-flag"),
    pytest.param(("--leave-running",), None, ("--log", "{LOG}", "--log-format", "json"), id="log-json"),
    pytest.param((), ("-d",), ("--log={LOG}", "--log-format=text"), id="log-text"),
    pytest.param((), ("-d",), ("--criu", "/usr/local/sbin/criu"), id="criu-path"),
])
def test_same_as_runc(pair, checkpoint, restore, globals_):
    real, ours = pair.run(cr(checkpoint, restore, globals_))
    assert_same(real, ours)


@pytest.mark.parametrize("argv", [
    ("checkpoint",), ("checkpoint", "--status-fd", "x", "{ID}"), ("checkpoint", "--leave-running=maybe", "{ID}"),
    ("checkpoint", "{ID}", "--image-path"), ("restore", "--lsm-mount-context"), ("restore",),
    ("checkpoint", "--help"), ("checkpoint", "-h", "{ID}"), ("restore", "--help"),
], ids=lambda a: " ".join(a))
def test_usage_errors_and_help_as_runc(pair, argv):
    """podman's probes among them: `checkpoint --help` exits 0, `restore --lsm-mount-context` says
    "flag needs an argument". --help lists our flags too (COMPATIBILITY), so only its NAME, exit
    code and runc's flags are compared."""
    def scenario(side: Side, cid: str) -> list[Step]:
        return [side.call(*(a.replace("{ID}", cid) for a in argv))]
    real, ours = pair.run(scenario)
    if "--help" in argv or "-h" in argv:
        r, o = real.steps[0], ours.steps[0]
        assert r.rc == o.rc == 0 and o.stdout.split("\n")[:2] == r.stdout.split("\n")[:2]
        theirs = [ln.split()[0].rstrip(",") for ln in r.stdout.split("OPTIONS:")[1].splitlines() if ln.strip()]
        mine = {ln.split()[0].rstrip(",") for ln in o.stdout.split("OPTIONS:")[1].splitlines() if ln.strip()}
        assert set(theirs) <= mine
        return
    assert real.steps[0].rc == 1 and real.steps[0].stdout.startswith("Incorrect Usage")
    assert_same(real, ours)


def test_a_plain_checkpoint_and_restore_bring_the_container_back(pair):
    real, ours = pair.run(cr())
    assert ours.files["checkpoint"] and "descriptors.json" in ours.files["checkpoint"]
    assert "dump.log" in ours.files["checkpoint"]                 # work dir = image dir, as runc
    assert ours.state == "running" and [s.rc for s in ours.steps] == [0, 0]
    assert_same(real, ours)


def test_missing_container_with_a_json_log(pair):
    def scenario(side: Side, cid: str) -> list[Step]:
        return [side.call("checkpoint", "no-such-ctr", globals_=("--log", str(side.log), "--log-format", "json"))]
    real, ours = pair.run(scenario, start=False)
    assert real.steps[0].rc == 1 and len(real.log) == 1
    assert_same(real, ours)


def test_restore_without_a_checkpoint(pair):
    def scenario(side: Side, cid: str) -> list[Step]:
        return [side.call("restore", "-d", cid)]
    real, ours = pair.run(scenario, start=False)
    assert real.steps[0].rc == 1 and real.files == {"checkpoint": []}   # runc made ./checkpoint, then failed
    assert_same(real, ours)


@pytest.mark.parametrize("status", ["paused", "created"])
def test_checkpoint_of_a_paused_or_created_container(pair, status):
    def scenario(side: Side, cid: str) -> list[Step]:
        if status == "paused":
            subprocess.run([side.runc, "--root", str(side.root), "pause", cid], check=True)
        else:
            side.started.append(cid)
            subprocess.run([side.runc, "--root", str(side.root), "create", "--bundle", str(side.bundle.path), cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=True, timeout=60)
        return [side.call("checkpoint", "--leave-running", cid)]
    real, ours = pair.run(scenario, start=status == "paused")
    assert real.state == status
    assert_same(real, ours)


def test_root_spelled_with_equals(pair):
    def scenario(side: Side, cid: str) -> list[Step]:
        return [side.call("checkpoint", "--leave-running", cid, globals_=(f"--root={side.root}",))]
    real, ours = pair.run(scenario)
    assert real.state == "running"
    assert_same(real, ours)


def test_debug_adds_only_debug_lines(pair):
    real, ours = pair.run(cr(("--leave-running",), None, ("--debug",)))

    def plain(o: Outcome) -> Outcome:
        return Outcome([Step(s.rc, s.stdout, [ln for ln in s.stderr if "level=debug" not in ln]) for s in o.steps],
                       o.log, o.files, o.state)
    assert any("level=debug" in ln for ln in real.steps[0].stderr)
    assert any("level=debug" in ln for ln in ours.steps[0].stderr)
    # runc's own debug lines carry pids and source lines; ours add a few (COMPATIBILITY).
    assert_same(plain(real), plain(ours))


def test_foreground_restore_returns_the_containers_exit_code(pair):
    args = ["sh", "-c", "while [ ! -e /stop ]; do echo 1 > /counter; sleep 0.1; done; exit 7"]

    def scenario(side: Side, cid: str) -> list[Step]:
        steps = [side.call("checkpoint", cid)]
        proc = side.popen("restore", cid)
        wait_for(lambda: side.status(cid) == "running", what=f"{side.label}: restored container")
        (side.bundle.rootfs / "stop").write_text("")
        out, err = proc.communicate(timeout=60)
        steps.append(Step(proc.returncode, side.norm(out), side.norm(err).splitlines()))
        return steps
    real, ours = pair.run(scenario, spec=lambda side: make_spec(args))
    assert real.steps[1].rc == 7
    assert_same(real, ours)


def _with_mounts(side: Side, mounts: list[tuple[str, str]], annotations: dict | None = None) -> dict:
    spec = make_spec(["sh", "-c", COUNTER])
    for dest, name in mounts:
        src = side.base / name
        src.mkdir(exist_ok=True)
        spec["mounts"].append({"destination": dest, "type": "bind", "source": str(src), "options": ["rbind", "rw"]})
    if annotations:
        spec["annotations"] = annotations
    return spec


def test_bind_mount_whose_destination_is_a_symlink(pair):
    def spec(side: Side) -> dict:
        link = side.bundle.rootfs / "data-link"
        if not link.is_symlink():
            link.symlink_to("/data")
        return _with_mounts(side, [("/data-link", "src-link")])
    real, ours = pair.run(cr(), spec=spec)
    assert_same(real, ours)


def test_nested_bind_mounts(pair):
    real, ours = pair.run(cr(), spec=lambda side: _with_mounts(side, [("/mnt/a", "src-a"), ("/mnt/a/b", "src-b")]))
    assert_same(real, ours)


def test_cgroup_namespace(pair):
    def spec(side: Side) -> dict:
        s = make_spec(["sh", "-c", COUNTER])
        s["linux"]["namespaces"].append({"type": "cgroup"})
        return s
    real, ours = pair.run(cr(), spec=spec)
    assert_same(real, ours)


def test_external_network_namespace(pair):
    require_tool("ip")
    names = {REAL: f"rcdiff-real-{time.monotonic_ns()}", OURS: f"rcdiff-ours-{time.monotonic_ns()}"}
    for n in names.values():
        subprocess.run(["ip", "netns", "add", n], check=True)
    try:
        def spec(side: Side) -> dict:
            s = make_spec(["sh", "-c", COUNTER])
            s["linux"]["namespaces"] = [ns if ns["type"] != "network" else
                                        {"type": "network", "path": f"/var/run/netns/{names[side.label]}"}
                                        for ns in s["linux"]["namespaces"]]
            return s
        real, ours = pair.run(cr((), ("-d", "--empty-ns", "network")), spec=spec)
    finally:
        for n in names.values():
            subprocess.run(["ip", "netns", "delete", n], check=False)
    assert_same(real, ours)


def test_criu_config_annotation(pair):
    def spec(side: Side) -> dict:
        conf = side.base / "criu.conf"
        conf.write_text("tcp-established\n")
        return _with_mounts(side, [], annotations={"org.criu.config": str(conf)})
    real, ours = pair.run(cr(), spec=spec)
    assert_same(real, ours)


# ---- documented differences (runc-ckpt(1), COMPATIBILITY) ----------------------------------------

def test_pre_dump_without_memory_tracking_is_refused_before_runc(pair):
    """runc lets CRIU fail (and leaves an image dir); we refuse first, touching nothing."""
    real, ours = pair.run(cr(("--pre-dump", "--image-path", "pre"), None))
    assert real.steps[0].rc == ours.steps[0].rc == 1
    assert real.state == ours.state == "running"
    assert "pre" in real.files and "pre" not in ours.files
    [msg] = [ln for ln in ours.steps[0].stderr if "level=error" in ln]
    assert "--pre-dump needs CRIU memory tracking" in msg and "the container was not touched" in msg


def test_parent_path_without_memory_tracking_is_refused_before_runc(pair):
    """A dump on top of a parent needs the parent's pages tracked: where CRIU cannot track them
    we refuse before runc (the chain logic itself is tested with a faked runc, unit tests)."""
    def scenario(side: Side, cid: str) -> list[Step]:
        (side.bundle.path / "pre").mkdir()
        return [side.call("checkpoint", "--pre-dump", "--image-path", "next", "--parent-path", "../pre", cid)]
    real, ours = pair.run(scenario)
    assert real.steps[0].rc == ours.steps[0].rc == 1
    assert real.state == ours.state == "running"
    assert "next" in real.files and "next" not in ours.files
    assert "needs CRIU memory tracking" in ours.errors()[0]


def test_a_failed_checkpoint_logs_only_runcs_last_error(pair):
    """runc 1.1.5 logs "container still running" before the real error when a checkpoint without
    --leave-running fails; podman reads the log as ONE object, so we relay only the last error."""
    real, ours = pair.run(cr((), None, ("--criu", "/no/such/criu", "--log", "{LOG}", "--log-format", "json")))
    assert real.errors()[0] == "container still running" and len(real.log) == 2
    assert ours.log == real.log[1:]
    assert (ours.steps, ours.files, ours.state) == (real.steps, real.files, real.state)


def test_a_malformed_config_json_is_refused_before_runc(pair):
    """runc checkpoint never reads config.json; we do (annotations, volumes, the archive's spec),
    and bad input gets one clear error before the container is touched."""
    def scenario(side: Side, cid: str) -> list[Step]:
        side.bundle.config_path.write_text("{")
        return [side.call("checkpoint", "--leave-running", cid)]
    real, ours = pair.run(scenario)
    assert (real.steps[0].rc, ours.steps[0].rc) == (0, 1)
    assert real.state == ours.state == "running"
    assert "checkpoint" in real.files and "checkpoint" not in ours.files
    [msg] = ours.errors()
    assert "config.json: not valid JSON" in msg


def test_a_failed_dump_names_criu_log_in_the_one_error_line(pair):
    """runc says "log file: dump.log", relative to a directory it does not name; in a --log file
    our one error line is runc's, word for word, with the absolute path and the container's state."""
    real, ours = pair.run(cr(("--page-server", "127.0.0.1:1", "--leave-running"), None,
                             ("--log", "{LOG}", "--log-format", "json")))
    [msg] = real.errors()[-1:]
    assert "dump.log" in msg and real.steps[0].rc == 1
    assert ours.errors() == [f"{msg} (runc-ckpt: CRIU's log is <BASE>/bundle/checkpoint/dump.log; "
                             "the container is running)"]
    assert len(ours.log) == len(real.log)
    assert (ours.steps, ours.files, ours.state) == (real.steps, real.files, real.state)
