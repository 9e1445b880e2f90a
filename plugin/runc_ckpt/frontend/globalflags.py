"""Parse runc's global flags the way runc (Go's flag package via urfave/cli) does.

This module sits on the pass-through path, so it imports nothing beyond the
builtins. It never rejects input: anything it does not understand ends the
global flags and is left for the real runc to judge, so runc's own error text
and exit code reach the caller unchanged.
"""

from __future__ import annotations

# Go's strconv.ParseBool spellings.
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}

BOOL_FLAGS = {"debug": "debug", "systemd-cgroup": "systemd_cgroup", "help": "help",
              "h": "help", "version": "version", "v": "version"}
VALUE_FLAGS = {"log": "log", "log-format": "log_format", "root": "root",
               "criu": "criu", "rootless": "rootless", "config": "config"}
# Ours, not runc's: stripped before runc sees the arguments.
OWN_FLAGS = {"config"}


class GlobalFlags:
    """runc's global settings, with runc's defaults."""

    __slots__ = ("debug", "log", "log_format", "root", "criu", "systemd_cgroup",
                 "rootless", "config", "help", "version")

    def __init__(self) -> None:
        self.debug = False
        self.log = ""
        self.log_format = "text"
        self.root = "/run/runc"
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

    __slots__ = ("flags", "runc_globals", "command", "args")

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


def parse(argv: list[str]) -> Invocation:
    """Split argv into global flags, the subcommand and its arguments.

    Go's flag rules: `-f` and `--f` are the same; `-f=v`, `-f v`; a boolean
    takes only `-f` or `-f=BOOL`; `--` ends the flags; the first non-flag
    argument is the subcommand. On anything unexpected (an unknown flag, a
    bad boolean, a missing value) parsing stops and the remainder, unparsed,
    becomes `args` with `command` None: runc will report it.
    """
    flags = GlobalFlags()
    kept: list[str] = []
    i = 0
    n = len(argv)
    while i < n:
        arg = argv[i]
        if arg == "--":
            kept.append(arg)
            i += 1
            if i < n:
                return Invocation(flags, kept, argv[i], argv[i + 1:])
            return Invocation(flags, kept, None, [])
        if len(arg) < 2 or arg[0] != "-":
            return Invocation(flags, kept, arg, argv[i + 1:])
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, eq, value = body.partition("=")
        if name in BOOL_FLAGS:
            if eq and value not in _TRUE and value not in _FALSE:
                break
            setattr(flags, BOOL_FLAGS[name], not eq or value in _TRUE)
            kept.append(arg)
            i += 1
            continue
        if name in VALUE_FLAGS:
            if not eq:
                if i + 1 >= n:
                    break
                value = argv[i + 1]
            setattr(flags, VALUE_FLAGS[name], value)
            if name not in OWN_FLAGS:
                kept.extend(argv[i:i + (1 if eq else 2)])
            i += 1 if eq else 2
            continue
        break
    return Invocation(flags, kept, None, argv[i:])
