"""Subcommand flags parsed as runc's urfave/cli does, plus the help text.

runc-ckpt's own commands accept runc's spelling rules, read by the one lexer
(runc_ckpt.base.goflags): `-f`/`--f`, `-f=v`, `-f v`, booleans as `-f` or
`-f=BOOL`, repeated booleans, flags after the container ID, and `--` to end
flags. Flags we do not know are kept, in place, for runc. Each Option carries its help line, so
`--help` and the man pages are generated from, and checked against, one list.
"""

from __future__ import annotations

import sys

from runc_ckpt.base import goflags
from runc_ckpt.base.errors import PassToRunc, RuncCkptError
from runc_ckpt.base.record import Record


class Option(Record):
    """One flag. kind: 'bool', 'value' (last wins) or 'list' (repeatable value)."""

    names: tuple[str, ...]
    kind: str
    help: str
    default: str | None = None
    choices: tuple[str, ...] = ()
    runc: bool = False  # runc's own flag: forwarded to runc as given
    own_aliases: tuple[str, ...] = ()  # names of a runc flag that only we know, respelled for runc
    integer: bool = False  # a Go IntFlag: its value must parse as strconv.ParseInt(v, 0, 64) does

    @property
    def key(self) -> str:
        return self.names[0].replace("-", "_")


class Parsed(Record):
    """Parsed flags: values by Option.key, what runc gets, positionals.

    forward holds the tokens meant for runc in the caller's order: runc's
    flags (our aliases respelled), unknown flags with what we read as their
    values, the positionals and `--`; only our own flags are left out.
    runc_args is forward without the positionals and `--`.
    """

    values: dict[str, object]
    runc_args: list[str]
    positionals: list[str]
    given: set[str]
    forward: list[str]
    unknown: list[str]

    def __getattr__(self, key: str) -> object:
        try:
            return self.values[key]
        except KeyError:
            raise AttributeError(key) from None

    # Typed reads for the request builders: the parser stores a bool for 'bool' options, a str
    # (or the default) for 'value' options and a list of str for 'list' options.

    def flag(self, key: str) -> bool:
        """A 'bool' option's value (False when not given)."""
        value = self.values[key]
        assert isinstance(value, bool), key
        return value

    def given_flag(self, key: str) -> bool | None:
        """A 'bool' option's value, None when it is not on the command line (policy: flag > annotation)."""
        return self.flag(key) if key in self.given else None

    def text(self, key: str) -> str | None:
        """A 'value' option's value: what was given, else its default (None without one)."""
        value = self.values[key]
        assert value is None or isinstance(value, str), key
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        """A 'list' option's values, in the caller's order."""
        value = self.values[key]
        assert isinstance(value, list), key
        return tuple(str(v) for v in value)


class UsageError(RuncCkptError):
    """Arguments runc would refuse too (a missing value, a bad boolean or number, too many words)."""


def _kinds(options: list[Option]) -> dict[str, str]:
    kinds = {n: goflags.BOOL if o.kind == "bool" else goflags.VALUE for o in options for n in o.names}
    kinds.update({"help": goflags.BOOL, "h": goflags.BOOL})
    return kinds


def _unknown_values(toks: list[goflags.Token], command: str) -> set[int]:
    """Indexes of the WORD tokens read as the value of the unknown flag just before them.

    We cannot know whether a flag runc-ckpt does not know takes a value. runc
    (urfave/cli) moves a command's flags before its arguments and then wants
    exactly one container ID, so `--new X ID` only makes sense with X as the
    value and `--new ID` only with the flag as a boolean: a word after an
    unknown flag is its value when exactly one other word remains. With more
    words (our several-container checkpoint) both readings name containers,
    so we refuse rather than guess (a UsageError: without our flags runc,
    which takes one ID, refuses the call itself).
    """
    words = sum(1 for t in toks if t.kind == goflags.WORD)
    taken: set[int] = set()
    for k, t in enumerate(toks[:-1]):
        nxt = toks[k + 1]
        if t.kind != goflags.UNKNOWN or t.value is not None or nxt.kind != goflags.WORD:
            continue
        if words - len(taken) > 2:
            raise UsageError(f"{command}: cannot tell whether {nxt.name!r} is the value of -{t.name} "
                                f"or a container ID: write -{t.name}=VALUE, or put -{t.name} after the IDs")
        if words - len(taken) == 2:
            taken.add(k + 1)
    return taken


def parse(options: list[Option], argv: list[str], command: str, allow_unknown: bool = True) -> Parsed:
    """Parse argv against options.

    Unknown flags are kept for runc (allow_unknown), which accepts or refuses
    them in its own words; for our own commands they are an error like runc's.
    """
    by_name = {n: o for o in options for n in o.names}
    values: dict[str, object] = {}
    for o in options:
        values[o.key] = [] if o.kind == "list" else (False if o.kind == "bool" else o.default)
    values["help"] = False
    runc_args: list[str] = []
    positionals: list[str] = []
    forward: list[str] = []
    unknown: list[str] = []
    given: set[str] = set()
    toks = goflags.lex(argv, _kinds(options))
    taken = _unknown_values(toks, command) if allow_unknown else set()
    for k, tok in enumerate(toks):
        raw = tok.raw(argv)
        if tok.kind == goflags.END:
            forward.extend(raw)
            continue
        if tok.kind == goflags.WORD:
            forward.extend(raw)
            if k in taken:
                runc_args.extend(raw)
                unknown.extend(raw)
            else:
                positionals.append(str(tok.value))
            continue
        if tok.kind == goflags.UNKNOWN:
            if not allow_unknown:
                raise RuncCkptError(f"{command}: flag provided but not defined: -{tok.name}")
            forward.extend(raw)
            runc_args.extend(raw)
            unknown.extend(raw)
            continue
        if tok.kind == goflags.MISSING:
            raise UsageError(f"flag needs an argument: -{tok.name}")
        if tok.kind == goflags.BAD_BOOL:
            raise UsageError(f'invalid boolean value "{tok.value}" for -{tok.name}: parse error')
        if tok.name in ("help", "h"):
            values["help"] = tok.value
            forward.extend(raw)
            continue
        opt = by_name[tok.name]
        if opt.kind == "bool":
            values[opt.key] = tok.value
        else:
            value = str(tok.value)
            if opt.integer and go_int(value) is None:
                raise UsageError(f'invalid value "{value}" for flag -{tok.name}: parse error')
            if opt.choices and value not in opt.choices:
                raise RuncCkptError(f"{command}: invalid value {value!r} for --{opt.names[0]}: "
                                    f"choose one of {', '.join(opt.choices)}")
            if opt.kind == "list":
                listed = values[opt.key]
                assert isinstance(listed, list)
                listed.append(value)
            else:
                values[opt.key] = value
        given.add(opt.key)
        if opt.runc:
            if tok.name in opt.own_aliases:
                spelled = goflags.split_flag(raw[0])
                assert spelled is not None           # the lexer read raw[0] as this flag
                inline = spelled[1]
                raw = [f"--{opt.names[0]}" + ("" if inline is None else f"={inline}"), *raw[1:]]
            forward.extend(raw)
            runc_args.extend(raw)
    return Parsed(values, runc_args, positionals, given, forward, unknown)


def go_int(text: str) -> int | None:
    """Go's strconv.ParseInt(text, 0, 64), as flag.IntVar reads it: a sign, then 0x/0o/0b or a
    leading-0 octal or decimal digits; None where Go fails."""
    sign = text[:1] if text[:1] in ("+", "-") else ""
    body = text[len(sign):]
    if not body or body != body.strip() or "_" in body:
        return None
    if len(body) > 1 and body[0] == "0" and body[1].isdigit():
        body = "0o" + body[1:]
    try:
        value = int(sign + body, 0)
    except ValueError:
        return None
    return value if -2**63 <= value < 2**63 else None


def uses_own_flags(options: list[Option], argv: list[str]) -> bool:
    """Whether argv names any of our own flags (or an alias only we know)."""
    by_name = {n: o for o in options for n in o.names}
    for tok in goflags.lex(argv, _kinds(options)):
        opt = by_name.get(tok.name) if tok.kind not in (goflags.WORD, goflags.END) else None
        if opt is not None and (not opt.runc or tok.name in opt.own_aliases):
            return True
    return False


def sub_command(args: list[str], sub: str, name: str, usage: str, description: str,
                hint: str) -> list[str] | None:
    """`COMMAND SUB [...]` (image build, key generate): SUB's arguments, or None once the
    command's help is printed (-h, --help, help); anything else is an error showing `hint`."""
    if args and args[0] == sub:
        return args[1:]
    if args and args[0] in ("-h", "--help", "help"):
        print(f"NAME:\n   {name}\n\nUSAGE:\n   {usage}\n\nDESCRIPTION:\n   {description}")
        return None
    raise RuncCkptError(f"{hint.split()[0]}: unknown subcommand {args[0] if args else '(none)'!r}: use `{hint}`")


def parse_or_help(options: list[Option], argv: list[str], command: str, name: str, usage: str,
                  description: str, runc_command: bool = True) -> Parsed | None:
    """The one --help rule of our commands: parse argv, and on -h/--help print the help
    (stdout, exit 0 as runc does) and return None instead of the flags.

    For runc's own commands (runc_command), a usage error in a call that uses
    none of our flags is left to runc, so it is refused in runc's own words
    (its "Incorrect Usage" text, log line and exit code).
    """
    try:
        parsed = parse(options, argv, command, allow_unknown=runc_command)
    except UsageError:
        if runc_command and not uses_own_flags(options, argv):
            raise PassToRunc() from None
        raise
    if parsed.values["help"]:
        sys.stdout.write(render_help(name, usage, description, options))
        return None
    return parsed


def render_help(name: str, usage: str, description: str, options: list[Option]) -> str:
    """Help in runc's urfave/cli layout (NAME, USAGE, DESCRIPTION, OPTIONS), so a reader or a
    tool that knows `runc checkpoint --help` finds the same sections; our flags sit among runc's."""
    rows = []
    for o in options:
        spelled = ", ".join(("--" if len(n) > 1 else "-") + n + ("" if o.kind == "bool" else " value")
                            for n in o.names)
        meaning = o.help
        if o.default not in (None, ""):
            meaning += f' (default: "{o.default}")'
        rows.append((spelled, meaning))
    width = max(len(s) for s, _ in rows) + 2
    body = "".join(f"   {s:<{width}}{m}\n" for s, m in rows)
    return (f"NAME:\n   {name}\n\nUSAGE:\n   {usage}\n\nDESCRIPTION:\n   {description}\n\n"
            f"OPTIONS:\n{body}   \n")
