"""runclog writes runc 1.1.5's (logrus) log lines, and fatal() behaves like runc's fatal()."""

from __future__ import annotations

import calendar
import json
import os
import re
import subprocess
import sys
import time

import pytest

from runc_ckpt.base import runclog
from runc_ckpt.base.globalflags import parse

NOW = float(calendar.timegm((2026, 11, 26, 8, 45, 49)))


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_json_line_is_runcs(utc):
    assert runclog.format_line("error", "container does not exist", "json", NOW) == \
        '{"level":"error","msg":"container does not exist","time":"2026-11-26T08:45:49Z"}\n'


def test_text_line_is_logrus(utc):
    assert runclog.format_line("error", "container does not exist", "text", NOW) == \
        'time="2026-11-26T08:45:49Z" level=error msg="container does not exist"\n'
    assert runclog.format_line("warning", "bare_value-1.0/x@y^z+", "text", NOW).endswith(
        "level=warning msg=bare_value-1.0/x@y^z+\n")
    assert runclog.format_line("error", 'say "hi"\\', "text", NOW).endswith(r'msg="say \"hi\"\\"' + "\n")


def test_json_escapes_html_like_go(utc):
    line = runclog.format_line("error", "a<b>&c", "json", NOW)
    assert '"msg":"a\\u003cb\\u003e\\u0026c"' in line
    assert json.loads(line)["msg"] == "a<b>&c"


def test_time_carries_the_local_offset(monkeypatch):
    monkeypatch.setenv("TZ", "EST5")
    time.tzset()
    try:
        assert json.loads(runclog.format_line("error", "m", "json", NOW))["time"] == "2026-11-26T03:45:49-05:00"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_fatal_to_log_file_json_appends_one_line_and_prints_message(tmp_path, capfd):
    log = tmp_path / "oci-log"
    log.write_text('{"level":"warning","msg":"earlier","time":"x"}\n')
    flags = parse(["--log", str(log), "--log-format", "json", "checkpoint", "x"]).flags
    assert runclog.fatal(flags, "cannot checkpoint:\nCRIU failed") == 1
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and lines[0].endswith('"earlier","time":"x"}')
    obj = json.loads(lines[1])
    assert set(obj) == {"level", "msg", "time"}
    assert (obj["level"], obj["msg"]) == ("error", "cannot checkpoint: CRIU failed")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "cannot checkpoint: CRIU failed\n")


def test_fatal_without_log_writes_one_text_line_to_stderr(capfd):
    flags = parse(["state", "x"]).flags
    assert runclog.fatal(flags, "boom", 3) == 3
    out, err = capfd.readouterr()
    assert out == ""
    assert re.fullmatch(r'time="[^"]+" level=error msg=boom\n', err)


def test_fatal_json_without_log_goes_to_stderr_once(capfd):
    runclog.fatal(parse(["--log-format=json", "state"]).flags, "boom")
    err = capfd.readouterr().err
    assert len(err.splitlines()) == 1 and json.loads(err)["msg"] == "boom"


def test_fatal_log_dev_stderr_prints_line_and_message_like_runc():
    # A pipe, as a caller would give: /dev/stderr reopens it, so both lines arrive in order.
    code = "from runc_ckpt.base import runclog, globalflags as g; runclog.fatal(g.parse(['--log', '/dev/stderr']).flags, 'boom')"
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr.splitlines()
    assert len(err) == 2 and err[0].endswith("level=error msg=boom") and err[1] == "boom"


def test_unwritable_log_still_reports_on_stderr(tmp_path, capfd):
    flags = parse(["--log", str(tmp_path / "no" / "such" / "dir" / "log"), "state"]).flags
    assert runclog.fatal(flags, "boom") == 1
    assert capfd.readouterr().err == "boom\n"


def test_undecodable_arguments_never_raise(tmp_path, capfd):
    log = tmp_path / "log"
    flags = parse(["--log", str(log), "--log-format", "json", "state"]).flags
    bad = os.fsdecode(b"no container \xff\xfe")
    assert runclog.fatal(flags, bad) == 1
    assert json.loads(log.read_text())["msg"].startswith("no container ")
    assert capfd.readouterr().err.startswith("no container ")


def test_empty_message_is_still_a_message(capfd):
    runclog.fatal(parse([]).flags, " \n ")
    assert "msg=\"unknown error\"" in capfd.readouterr().err


def test_debug_only_with_debug_flag(capfd):
    runclog.debug(parse(["state"]).flags, "quiet")
    assert capfd.readouterr().err == ""
    runclog.debug(parse(["--debug", "state"]).flags, "loud")
    assert "level=debug msg=loud" in capfd.readouterr().err
    runclog.warn(parse(["state"]).flags, "careful")
    assert "level=warning msg=careful" in capfd.readouterr().err


@pytest.mark.parametrize("line, want", [
    ('{"level":"error","msg":"old","time":"T"}\n', '{"level":"error","msg":"new \\u003cx\\u003e","time":"T"}\n'),
    ('time="T" level=error msg="old one"\n', 'time="T" level=error msg="new <x>"\n'),
    ('time="T" level=error msg=old file=x', 'time="T" level=error msg="new <x>" file=x'),
])
def test_with_message_keeps_the_line_and_replaces_the_message(line, want):
    assert runclog.with_message(line, "new <x>") == want
