"""globalflags.parse follows Go's flag package as runc 1.1.5 uses it."""

from __future__ import annotations

import pytest

from runc_ckpt.base.globalflags import parse

VALUE_FLAGS = [("log", "log", "/tmp/x.log"), ("log-format", "log_format", "json"), ("root", "root", "/tmp/r"),
               ("criu", "criu", "/usr/local/sbin/criu"), ("rootless", "rootless", "true")]


def _forms(name: str, value: str) -> list[list[str]]:
    return [[f"--{name}", value], [f"--{name}={value}"], [f"-{name}", value], [f"-{name}={value}"]]


@pytest.mark.parametrize("name,attr,value", VALUE_FLAGS)
@pytest.mark.parametrize("form", range(4))
def test_value_flag_every_spelling(name, attr, value, form):
    given = _forms(name, value)[form]
    inv = parse([*given, "state", "c1"])
    assert getattr(inv.flags, attr) == value
    assert (inv.command, inv.args) == ("state", ["c1"])
    assert inv.runc_globals == given
    assert inv.runc_argv() == [*given, "state", "c1"]


@pytest.mark.parametrize("spelling,expected", [
    ("--debug", True), ("-debug", True), ("--debug=true", True), ("-debug=1", True), ("--debug=T", True),
    ("--debug=false", False), ("-debug=0", False), ("--debug=F", False),
])
def test_bool_flag_spellings(spelling, expected):
    inv = parse([spelling, "list"])
    assert inv.flags.debug is expected
    assert inv.command == "list"
    inv = parse([spelling.replace("debug", "systemd-cgroup"), "list"])
    assert inv.flags.systemd_cgroup is expected


def test_bool_flag_does_not_take_the_next_argument():
    inv = parse(["--debug", "true", "list"])
    assert inv.flags.debug is True
    assert (inv.command, inv.args) == ("true", ["list"])


def test_defaults_are_runcs():
    f = parse(["list"]).flags
    assert (f.debug, f.log, f.log_format, f.root, f.criu, f.systemd_cgroup, f.rootless) == \
        (False, "", "text", "/run/runc", "criu", False, "auto")


def test_all_flags_together_as_containerd_and_podman_pass_them():
    argv = ["--root", "/run/containerd/runc/k8s.io", "--log", "/b/log.json", "--log-format", "json",
            "--systemd-cgroup", "-criu=/c", "-rootless", "false", "--debug",
            "restore", "--detach", "-no-subreaper", "--bundle", "/b", "id"]
    inv = parse(argv)
    f = inv.flags
    assert (f.root, f.log, f.log_format, f.systemd_cgroup, f.criu, f.rootless, f.debug) == \
        ("/run/containerd/runc/k8s.io", "/b/log.json", "json", True, "/c", "false", True)
    assert inv.command == "restore"
    assert inv.args == ["--detach", "-no-subreaper", "--bundle", "/b", "id"]
    assert inv.runc_argv() == argv


def test_value_flag_takes_the_next_argument_even_if_it_looks_like_a_flag():
    inv = parse(["--log", "--debug", "state", "x"])
    assert inv.flags.log == "--debug"
    assert inv.flags.debug is False
    assert inv.command == "state"


def test_empty_value_is_allowed():
    inv = parse(["--log=", "--root", "", "list"])
    assert (inv.flags.log, inv.flags.root, inv.command) == ("", "", "list")


def test_later_flag_wins():
    assert parse(["--root", "/a", "--root=/b", "list"]).flags.root == "/b"


def test_flags_after_the_subcommand_are_its_own():
    inv = parse(["state", "--root", "/x", "c1"])
    assert inv.flags.root == "/run/runc"
    assert (inv.command, inv.args) == ("state", ["--root", "/x", "c1"])


def test_double_dash_ends_flags():
    inv = parse(["--debug", "--", "--root", "x"])
    assert inv.flags.debug is True
    assert (inv.command, inv.args) == ("--root", ["x"])
    assert inv.runc_argv() == ["--debug", "--", "--root", "x"]
    inv = parse(["--"])
    assert (inv.command, inv.args, inv.runc_argv()) == (None, [], ["--"])


def test_single_dash_is_a_subcommand_not_a_flag():
    assert parse(["-", "x"]).command == "-"


@pytest.mark.parametrize("argv", [
    ["--bogus", "list"],              # unknown flag
    ["---debug", "list"],             # bad flag syntax
    ["--debug=maybe", "list"],        # bad boolean
    ["--log"],                        # value missing
    ["--root"],
])
def test_anything_unexpected_is_left_for_runc(argv):
    inv = parse(["--root", "/r", *argv])
    assert inv.command is None
    assert inv.args == argv
    assert inv.runc_argv() == ["--root", "/r", *argv]


@pytest.mark.parametrize("given", [["--config", "/c.yaml"], ["--config=/c.yaml"], ["-config", "/c.yaml"]])
def test_config_is_ours_and_not_passed_to_runc(given):
    inv = parse(["--root", "/r", *given, "--debug", "state", "x"])
    assert inv.flags.config == "/c.yaml"
    assert inv.runc_argv() == ["--root", "/r", "--debug", "state", "x"]


@pytest.mark.parametrize("flag,attr", [("-v", "version"), ("--version", "version"), ("-h", "help"),
                                       ("--help", "help"), ("-version=true", "version")])
def test_help_and_version(flag, attr):
    inv = parse([flag])
    assert getattr(inv.flags, attr) is True
    assert inv.command is None
    assert inv.runc_argv() == [flag]


def test_no_arguments():
    inv = parse([])
    assert (inv.command, inv.args, inv.runc_argv()) == (None, [], [])
