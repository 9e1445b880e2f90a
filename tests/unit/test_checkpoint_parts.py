"""The small modules behind checkpoint: runc output parsing, log relay, stats JSON, OCI spec, options."""

from __future__ import annotations

import json

import pytest

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.checkpoint import stats_report
from runc_ckpt.commands import cmdflags, options
from runc_ckpt.runtime import containerstate, logrelay, ocispec


@pytest.mark.parametrize("stderr, msg", [
    ('time="2026-11-26T09:00:00Z" level=error msg="container does not exist"\n', "container does not exist"),
    ('time="x" level=warning msg=w\ntime="x" level=error msg="a \\"quoted\\" id"\n', 'a "quoted" id'),
    ("time=x level=error msg=bare\n", "bare"),
    ("something odd\n  happened\n", "something odd happened"),
    ("", "runc failed without a message"),
])
def test_runc_error_takes_the_last_error_message(stderr, msg):
    assert containerstate.runc_error(stderr) == msg


def test_created_key_orders_by_time_not_by_string():
    stamps = ["2026-11-26T09:56:47.43Z", "2026-11-26T09:56:47.4305Z", "2026-11-26T09:56:47.43051Z",
              "2026-11-26T10:56:47+01:00", "2026-11-26T09:56:48Z"]
    assert sorted(stamps) != stamps                    # a string sort would get it wrong
    assert sorted(stamps, key=containerstate.created_key) == [stamps[3], *stamps[:3], stamps[4]]


def test_unparseable_created_sorts_first():
    assert containerstate.created_key("yesterday") < containerstate.created_key("2000-01-01T00:00:00Z")


def test_state_without_required_fields_is_an_error():
    with pytest.raises(RuncCkptError, match="unexpected output of runc state"):
        containerstate.ContainerState.from_json({"id": "x"})


@pytest.mark.parametrize("line, msg", [
    ('{"level":"error","msg":"boom","time":"t"}', "boom"),
    ('{"level":"fatal","msg":"dead","time":"t"}', "dead"),
    ('{"level":"warning","msg":"meh","time":"t"}', None),
    ('time="t" level=error msg="criu failed: x"', "criu failed: x"),
    ('time="t" level=info msg="level=error inside"', None),
    ("not a log line", None),
])
def test_error_message_reads_both_formats(line, msg):
    assert logrelay.error_message(line) == msg


def test_keep_last_error_drops_earlier_errors_only():
    lines = ['{"level":"debug","msg":"d"}', '{"level":"error","msg":"container still running"}',
             '{"level":"info","msg":"i"}', '{"level":"error","msg":"criu failed"}']
    kept, dropped, has_error = logrelay.keep_last_error(lines)
    assert kept == [lines[0], lines[2], lines[3]]
    assert dropped == ["container still running"] and has_error


def test_stats_render_in_podman_shape():
    doc = json.loads(stats_report.render(1.5, [stats_report.ContainerStats("id1", "name1", 250, {"pages_written": 3})]))
    assert doc == {"checkpoint_duration": 1500000, "podman_checkpoint_duration": 1500000,
                   "container_statistics": [{"Id": "id1", "RawInput": "name1", "runtime_checkpoint_duration": 250,
                                             "criu_statistics": {"pages_written": 3}}]}


def test_missing_config_json_is_an_error(tmp_path):
    with pytest.raises(RuncCkptError, match="config.json: No such file"):
        ocispec.load(str(tmp_path))


def test_null_annotations_are_none():
    assert ocispec.annotations({"annotations": None}) == {}


def test_checkpoint_options_are_sorted_bytewise_by_long_name():
    names = [o.names[0] for o in options.CHECKPOINT]
    assert names == sorted(names, key=lambda n: n.encode())


def test_every_runc_checkpoint_flag_is_forwarded():
    runc_flags = {"image-path", "work-path", "parent-path", "leave-running", "tcp-established", "ext-unix-sk",
                  "shell-job", "lazy-pages", "status-fd", "page-server", "file-locks", "pre-dump",
                  "manage-cgroups-mode", "empty-ns", "auto-dedup"}
    assert {o.names[0] for o in options.CHECKPOINT if o.runc} == runc_flags


@pytest.mark.parametrize("given, sent", [
    (["-R"], ["--leave-running"]),
    (["--R=false"], ["--leave-running=false"]),
    (["--work-path", "-R"], ["--work-path", "-R"]),          # a value, not a flag
    (["-image-path", "x", "--empty-ns", "network"], ["-image-path", "x", "--empty-ns", "network"]),
    (["--export", "a.tar", "-k", "--print-stats", "--newer=1"], ["--newer=1"]),   # ours left out
])
def test_runc_args_keep_callers_spelling_but_ours(given, sent):
    assert cmdflags.parse(options.CHECKPOINT, given, "checkpoint").runc_args == sent


def test_an_interrupt_lets_runc_finish_instead_of_killing_it(monkeypatch):
    from runc_ckpt.base.globalflags import GlobalFlags

    class Proc:
        waits = 0

        def __init__(self, *args, **kwargs) -> None:
            pass

        def wait(self) -> int:
            import os
            import signal
            Proc.waits += 1
            os.kill(os.getpid(), signal.SIGINT)   # ^C while runc works: no KeyboardInterrupt, runc goes on
            return 0

        def kill(self) -> None:
            raise AssertionError("runc must not be killed mid-checkpoint")

    monkeypatch.setattr(logrelay.subprocess, "Popen", Proc)
    result = logrelay.run("/x/runc", [], ["checkpoint", "c"], GlobalFlags())
    assert (result.returncode, result.interrupted, Proc.waits) == (0, True, 1)


def test_sigterm_while_runc_runs_is_remembered_not_fatal(tmp_path):
    import os
    import signal

    from runc_ckpt.base.globalflags import GlobalFlags
    # A "runc" that sends us SIGTERM, then finishes its work.
    fake = tmp_path / "runc"
    fake.write_text(f"#!/bin/sh\nkill -TERM {os.getpid()}\nsleep 0.2\necho done > {tmp_path}/finished\n")
    fake.chmod(0o755)
    before = signal.getsignal(signal.SIGTERM)
    result = logrelay.run(str(fake), [], ["checkpoint", "c"], GlobalFlags())
    assert result.returncode == 0 and result.interrupted
    assert (tmp_path / "finished").read_text() == "done\n"
    assert signal.getsignal(signal.SIGTERM) == before


def test_config_dump_without_engine_annotations_is_podman_shaped_and_empty():
    from datetime import datetime, timezone

    from runc_ckpt.metadata import configdump
    st = containerstate.ContainerState("c1", "running", "/b", "/b/rootfs", "2026-11-26T08:00:00.5Z", 1, {})
    dump = configdump.config_dump(st, {"ociVersion": "1.0.2", "annotations": None},
                                  datetime(2026, 11, 26, 9, 0, 0, 123456, tzinfo=timezone.utc))
    assert dump == {"id": "c1", "name": "c1", "rootfsImage": "", "rootfsImageRef": "", "rootfsImageName": "",
                    "runtime": "runc-ckpt", "createdTime": "2026-11-26T08:00:00.5Z",
                    "checkpointedTime": "2026-11-26T09:00:00.123456Z", "restoredTime": "0001-01-01T00:00:00Z",
                    "restored": False}


def test_versions_read_from_the_tools(tmp_path):
    from runc_ckpt.metadata import configdump
    runc = tmp_path / "runc"
    runc.write_text("#!/bin/sh\necho 'runc version 1.1.5'\necho 'commit: v1.1.5'\n")
    criu = tmp_path / "criu"
    criu.write_text("#!/bin/sh\necho 'Version: 4.2.1'\n")
    for exe in (runc, criu):
        exe.chmod(0o755)
    assert configdump.versions(str(runc), str(criu))["runc"] == "1.1.5"
    assert configdump.versions(str(runc), str(criu))["criu"] == "4.2.1"
    assert configdump.versions(str(tmp_path / "missing"), "no-such-criu")["runc"] == "unknown"
