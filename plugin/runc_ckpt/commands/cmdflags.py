"""Subcommand flags parsed as runc's urfave/cli does, plus the help text.

runc-ckpt's own commands accept runc's spelling rules: `-f`/`--f`, `-f=v`,
`-f v`, booleans as `-f` or `-f=BOOL`, repeated booleans, flags after the
container ID, and `--` to end flags. Each Option carries its help line, so
`--help` and the man pages are generated from, and checked against, one list.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from runc_ckpt.frontend.errors import RuncCkptError

_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


@dataclass(frozen=True)
class Option:
    """One flag. kind: 'bool', 'value' (last wins) or 'list' (repeatable value)."""

    names: tuple[str, ...]
    kind: str
    help: str
    default: str | None = None
    choices: tuple[str, ...] = ()
    runc: bool = False  # forwarded to runc as given

    @property
    def key(self) -> str:
        return self.names[0].replace("-", "_")


@dataclass
class Parsed:
    """Parsed flags: values by Option.key, the runc flags as given, positionals."""

    values: dict[str, object]
    runc_args: list[str]
    positionals: list[str]
    given: set[str]

    def __getattr__(self, key: str) -> object:
        try:
            return self.values[key]
        except KeyError:
            raise AttributeError(key) from None


def parse(options: list[Option], argv: list[str], command: str) -> Parsed:
    """Parse argv against options; unknown flags are an error like runc's."""
    by_name = {n: o for o in options for n in o.names}
    values: dict[str, object] = {}
    for o in options:
        values[o.key] = [] if o.kind == "list" else (False if o.kind == "bool" else o.default)
    values["help"] = False
    runc_args: list[str] = []
    positionals: list[str] = []
    given: set[str] = set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positionals.extend(argv[i:])
            break
        if len(arg) < 2 or arg[0] != "-":
            positionals.append(arg)
            continue
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, eq, value = body.partition("=")
        if name in ("help", "h") and not eq:
            values["help"] = True
            continue
        opt = by_name.get(name)
        if opt is None:
            raise RuncCkptError(f"{command}: flag provided but not defined: -{name}")
        if opt.kind == "bool":
            if eq and value not in _TRUE | _FALSE:
                raise RuncCkptError(f'{command}: invalid boolean value "{value}" for -{name}')
            values[opt.key] = not eq or value in _TRUE
            consumed = [arg]
        else:
            if not eq:
                if i >= len(argv):
                    raise RuncCkptError(f"{command}: flag needs an argument: -{name}")
                value = argv[i]
                i += 1
                consumed = [arg, value]
            else:
                consumed = [arg]
            if opt.choices and value not in opt.choices:
                raise RuncCkptError(f"{command}: invalid value {value!r} for --{opt.names[0]}: "
                                    f"choose one of {', '.join(opt.choices)}")
            if opt.kind == "list":
                values[opt.key].append(value)  # type: ignore[union-attr]
            else:
                values[opt.key] = value
        given.add(opt.key)
        if opt.runc:
            runc_args.extend(consumed)
    return Parsed(values, runc_args, positionals, given)


def parse_or_help(options: list[Option], argv: list[str], command: str, usage: str,
                  description: str) -> Parsed | None:
    """The one --help rule of our commands: parse argv, and on -h/--help print the help
    (stdout, exit 0 as runc does) and return None instead of the flags."""
    parsed = parse(options, argv, command)
    if parsed.values["help"]:
        sys.stdout.write(render_help(usage, description, options))
        return None
    return parsed


def render_help(usage: str, description: str, options: list[Option]) -> str:
    """runc-style help: usage, description, then one line per option."""
    rows = []
    for o in options:
        spelled = ", ".join(("--" if len(n) > 1 else "-") + n + ("" if o.kind == "bool" else " value")
                            for n in o.names)
        meaning = o.help
        if o.default not in (None, ""):
            meaning += f' (default: "{o.default}")'
        rows.append((spelled, meaning))
    width = max(len(s) for s, _ in rows) + 3
    body = "\n".join(f"   {s:<{width}}{m}" for s, m in rows)
    return f"USAGE:\n   {usage}\n\nDESCRIPTION:\n   {description}\n\nOPTIONS:\n{body}\n"
