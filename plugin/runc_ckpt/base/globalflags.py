"""Parse runc's global flags the way runc (Go's flag package via urfave/cli) does.

This module sits on the pass-through path, so it imports only os and the
shared lexer (runc_ckpt.base.goflags). It never rejects input: anything it does not understand ends the
global flags and is left for the real runc to judge, so runc's own error text
and exit code reach the caller unchanged.
"""

from __future__ import annotations

import os

from runc_ckpt.base import goflags

BOOL_FLAGS = {"debug": "debug", "systemd-cgroup": "systemd_cgroup", "help": "help",
              "h": "help", "version": "version", "v": "version"}
VALUE_FLAGS = {"log": "log", "log-format": "log_format", "root": "root",
               "criu": "criu", "rootless": "rootless", "config": "config"}
# Ours, not runc's: stripped before runc sees the arguments.
OWN_FLAGS = {"config"}


def _in_user_namespace() -> bool:
    """libcontainer/userns.RunningInUserNS: uid_map is not the initial namespace's identity map."""
    try:
        with open("/proc/self/uid_map", encoding="ascii") as f:
            fields = f.read().split()
    except OSError:
        return False
    return fields != ["0", "0", "4294967295"]


def default_root() -> str:
    """runc 1.1.5's --root default (main.go, shouldHonorXDGRuntimeDir): $XDG_RUNTIME_DIR/runc when
    runc runs rootless, else /run/runc. Our own queries and cleanups must use the root runc uses."""
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if not xdg:
        return "/run/runc"
    if os.geteuid() != 0:
        return xdg + "/runc"
    if not _in_user_namespace():
        return "/run/runc"
    return xdg + "/runc" if os.environ.get("USER") != "root" else "/run/runc"


class GlobalFlags:
    """runc's global settings, with runc's defaults."""

    __slots__ = ("config", "criu", "debug", "help", "log", "log_format", "root", "rootless",
                 "systemd_cgroup", "version")

    def __init__(self) -> None:
        self.debug = False
        self.log = ""
        self.log_format = "text"
        self.root = default_root()
        self.criu = "criu"
        self.systemd_cgroup = False
        self.rootless = "auto"
        self.config: str | None = None
        self.help = False
        self.version = False


class Invocation:
    """One call of runc-ckpt: its global flags, subcommand and the rest.

    `runc_globals` holds the global arguments exactly as given, minus our own
    flags, so that the real runc can be called with the caller's spelling.
    """

    __slots__ = ("args", "command", "flags", "runc_globals")

    def __init__(self, flags: GlobalFlags, runc_globals: list[str],
                 command: str | None, args: list[str]) -> None:
        self.flags = flags
        self.runc_globals = runc_globals
        self.command = command
        self.args = args

    def runc_argv(self) -> list[str]:
        """Arguments for the real runc (without argv[0])."""
        head = self.runc_globals + ([self.command] if self.command is not None else [])
        return head + self.args


KINDS = {**{n: goflags.BOOL for n in BOOL_FLAGS}, **{n: goflags.VALUE for n in VALUE_FLAGS}}


def parse(argv: list[str]) -> Invocation:
    """Split argv into global flags, the subcommand and its arguments.

    Go's flag rules (runc_ckpt.base.goflags); the first word is the
    subcommand, and after `--` the next argument is. On anything unexpected
    (an unknown flag, a bad boolean, a missing value) parsing stops and the
    remainder, unparsed, becomes `args` with `command` None: runc will report it.
    """
    flags = GlobalFlags()
    kept: list[str] = []
    for tok in goflags.lex(argv, KINDS, interspersed=False):
        if tok.kind == goflags.END:
            kept.append("--")
            if tok.end < len(argv):
                return Invocation(flags, kept, argv[tok.end], argv[tok.end + 1:])
            return Invocation(flags, kept, None, [])
        if tok.kind == goflags.WORD:
            return Invocation(flags, kept, argv[tok.start], argv[tok.end:])  # the word is the subcommand
        if tok.kind == goflags.BOOL:
            setattr(flags, BOOL_FLAGS[tok.name], tok.value)
        elif tok.kind == goflags.VALUE:
            setattr(flags, VALUE_FLAGS[tok.name], tok.value)
            if tok.name in OWN_FLAGS:
                continue
        else:
            return Invocation(flags, kept, None, argv[tok.start:])
        kept.extend(tok.raw(argv))
    return Invocation(flags, kept, None, [])
