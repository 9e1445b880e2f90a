"""The one Go-style flag lexer, ParseBool, Go's IntFlag parse, runc's ID rule and --root default."""

from __future__ import annotations

import pytest

from runc_ckpt.base import globalflags, goflags
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.commands import cmdflags, options
from runc_ckpt.runtime import containerid

KINDS = {"b": goflags.BOOL, "v": goflags.VALUE}


def kinds(argv: list[str]) -> list[tuple[str, str, object]]:
    return [(t.kind, t.name, t.value) for t in goflags.lex(argv, KINDS)]


@pytest.mark.parametrize("argv, want", [
    (["-b", "--b=false", "-b=T"], [("bool", "b", True), ("bool", "b", False), ("bool", "b", True)]),
    (["-b=yes"], [("bad-bool", "b", "yes")]),
    (["--v", "x", "-v=y", "--v"], [("value", "v", "x"), ("value", "v", "y"), ("missing", "v", None)]),
    (["--v", "-b"], [("value", "v", "-b")]),                     # Go: the next token is the value
    (["w", "-", "--x", "--x=1"], [("word", "w", "w"), ("word", "-", "-"), ("unknown", "x", None),
                                  ("unknown", "x", "1")]),
    (["--", "-b", "w"], [("end", "", None), ("word", "-b", "-b"), ("word", "w", "w")]),
])
def test_lex(argv, want):
    assert kinds(argv) == want


def test_not_interspersed_stops_at_the_first_word():
    toks = goflags.lex(["-b", "cmd", "-v"], KINDS, interspersed=False)
    assert [(t.kind, t.end) for t in toks] == [("bool", 1), ("word", 2)]


@pytest.mark.parametrize("text, value", [("1", True), ("t", True), ("TRUE", True), ("True", True),
                                         ("0", False), ("F", False), ("false", False),
                                         ("yes", None), ("tRUE", None), ("", None)])
def test_parse_bool_is_gos(text, value):
    assert goflags.parse_bool(text) is value


@pytest.mark.parametrize("text, value", [("-1", -1), ("3", 3), ("0x10", 16), ("010", 8), ("-010", -8),
                                         ("0b11", 3), ("+5", 5), ("08", None), ("x", None), ("", None),
                                         (" 3", None), ("1_0", None), (str(2**63), None)])
def test_go_int(text, value):
    assert cmdflags.go_int(text) == value


@pytest.mark.parametrize("cid, ok", [
    ("web", True), ("a.b-c_d+e", True), ("a,b", True), ("A9", True), ("..a", True),
    (".", False), ("..", False), ("", False), ("a/b", False), ("é", False), ("a b", False),
    ("a\u0660", False),     # a Unicode digit: Go's \w is ASCII
    ("a*", False), ("a:b", False),
])
def test_container_id_is_runcs_rule(cid, ok):
    assert containerid.is_valid(cid) is ok
    if not ok:
        with pytest.raises(RuncCkptError, match="invalid container id"):
            containerid.check(cid)


def test_unknown_flag_values_follow_runcs_one_id_rule():
    p = cmdflags.parse(options.RESTORE, ["--new", "v", "ID"], "restore")
    assert (p.positionals, p.unknown, p.forward) == (["ID"], ["--new", "v"], ["--new", "v", "ID"])
    p = cmdflags.parse(options.RESTORE, ["--new", "ID"], "restore")
    assert (p.positionals, p.unknown) == (["ID"], ["--new"])
    with pytest.raises(RuncCkptError, match="cannot tell whether 'a'"):
        cmdflags.parse(options.CHECKPOINT, ["--new", "a", "b", "c"], "checkpoint")
    with pytest.raises(RuncCkptError, match="flag provided but not defined: -new"):
        cmdflags.parse(options.INSPECT, ["--new", "a"], "inspect", allow_unknown=False)


@pytest.mark.parametrize("euid, userns, user, want", [
    (1000, False, "me", "/run/user/1000/runc"),      # rootless
    (0, False, "root", "/run/runc"),                 # real root ignores XDG_RUNTIME_DIR
    (0, True, "me", "/run/user/1000/runc"),          # root in a user namespace, not USER=root
    (0, True, "root", "/run/runc"),
    (0, True, None, "/run/user/1000/runc"),          # no $USER at all
])
def test_root_default_is_runcs(monkeypatch, euid, userns, user, want):
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    monkeypatch.setattr(globalflags.os, "geteuid", lambda: euid)
    monkeypatch.setattr(globalflags, "_in_user_namespace", lambda: userns)
    if user is None:
        monkeypatch.delenv("USER", raising=False)
    else:
        monkeypatch.setenv("USER", user)
    assert globalflags.parse(["state", "x"]).flags.root == want
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert globalflags.default_root() == "/run/runc"
