"""The one lexer for Go-style flags (Go's flag package, as urfave/cli v1 drives it in runc).

Every place that reads runc-shaped arguments (the global flags on the
pass-through path, our subcommands' flags, the arguments we forward to runc)
tokenises them here, so they cannot disagree about what a token means:

- `-f` and `--f` are the same flag; `-f=v` and `-f v` give a value;
- a boolean takes only `-f` or `-f=BOOL` (Go's strconv.ParseBool spellings);
- `--` ends the flags; `-` alone is a word, not a flag;
- a flag the caller's table does not know is reported as UNKNOWN with its
  inline value, and never takes the next token: only the consumer can decide
  what an unknown flag's next word is.

This module sits on the pass-through path: builtins only.
"""

from __future__ import annotations

# Go's strconv.ParseBool spellings: runc accepts exactly these for boolean flags.
TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})

# Token kinds.
BOOL = "bool"          # a known boolean flag; value is the parsed bool
VALUE = "value"        # a known flag with a value (inline or the next token)
UNKNOWN = "unknown"    # a flag the table lacks; value is its inline text or None
WORD = "word"          # a positional argument
END = "end"            # `--`: every later token is a WORD
MISSING = "missing"    # a value flag at the end of argv ("flag needs an argument")
BAD_BOOL = "bad-bool"  # a boolean given a value ParseBool refuses


def parse_bool(text: str) -> bool | None:
    """Go's strconv.ParseBool: True/False, or None for any other spelling."""
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    return None


def split_flag(arg: str) -> tuple[str, str | None] | None:
    """(name, inline value or None) if arg is spelled as a flag; None for a word, `-` or `--`."""
    if len(arg) < 2 or arg[0] != "-" or arg == "--":
        return None
    body = arg[2:] if arg[1] == "-" else arg[1:]
    name, eq, value = body.partition("=")
    return name, (value if eq else None)


def with_value(argv: list[str], name: str, value: str) -> list[str]:
    """argv with each value given to flag `name` (-name V, --name V, -name=V, --name=V) set to value, up to `--`.

    Node-level encryption points runc's --image-path at tmpfs and keeps the caller's argv otherwise as spelled.
    """
    out = list(argv)
    i = 0
    while i < len(out) and out[i] != "--":
        split = split_flag(out[i])
        if split is not None and split[0] == name:
            if split[1] is not None:
                out[i] = out[i][:out[i].index("=") + 1] + value
            elif i + 1 < len(out):
                out[i + 1] = value
                i += 1
        i += 1
    return out


class Token:
    """One lexed item: argv[start:end] are its raw tokens, as the caller spelled them.

    value by kind: BOOL the parsed bool; VALUE and WORD the text; UNKNOWN and
    BAD_BOOL the inline text or None; END and MISSING None.
    """

    __slots__ = ("end", "kind", "name", "start", "value")

    def __init__(self, kind: str, name: str, value: str | bool | None, start: int, end: int) -> None:
        self.kind = kind
        self.name = name
        self.value = value
        self.start = start
        self.end = end

    def raw(self, argv: list[str]) -> list[str]:
        return argv[self.start:self.end]


def lex(argv: list[str], kinds: dict[str, str], interspersed: bool = True) -> list[Token]:
    """Tokenise argv; kinds maps each known flag name to BOOL or VALUE.

    Words may be interspersed with flags (urfave/cli reorders a command's
    flags before its arguments, so runc reads them the same way); with
    interspersed=False the first word ends the lexing, as it ends runc's
    global flags (it is the subcommand). Nothing is
    refused here: MISSING and BAD_BOOL tokens let the consumer choose
    whether to report the error itself or leave it to runc.
    """
    out: list[Token] = []
    i = 0
    n = len(argv)
    while i < n:
        arg = argv[i]
        if arg == "--":
            out.append(Token(END, "", None, i, i + 1))
            out.extend(Token(WORD, w, w, j, j + 1) for j, w in enumerate(argv[i + 1:], i + 1))
            break
        flag = split_flag(arg)
        if flag is None:
            out.append(Token(WORD, arg, arg, i, i + 1))
            if not interspersed:
                break
            i += 1
            continue
        name, inline = flag
        kind = kinds.get(name)
        if kind == BOOL:
            value = True if inline is None else parse_bool(inline)
            out.append(Token(BAD_BOOL if value is None else BOOL, name,
                             inline if value is None else value, i, i + 1))
            i += 1
        elif kind == VALUE:
            if inline is not None:
                out.append(Token(VALUE, name, inline, i, i + 1))
                i += 1
            elif i + 1 < n:
                out.append(Token(VALUE, name, argv[i + 1], i, i + 2))
                i += 2
            else:
                out.append(Token(MISSING, name, None, i, i + 1))
                i += 1
        else:
            out.append(Token(UNKNOWN, name, inline, i, i + 1))
            i += 1
    return out
