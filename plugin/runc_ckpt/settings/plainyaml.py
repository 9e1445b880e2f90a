"""A quick read of a plain runc-ckpt.yaml without PyYAML: the mapping, or None when not sure.

Importing PyYAML and running its pure-Python loader costs ~15 ms, a tenth
of a tiny checkpoint's own time, and config files are almost always flat
`key: value` lines (state_dir: /var/lib/x, compress: zstd, volume_roots:
[/a, /b]). `read()` accepts only a subset whose meaning YAML leaves no room
for: top-level `key: value` lines and comment lines; values that are decimal
integers, plain decimals, true/false/null/~, quoted strings without escapes
or quotes inside, absolute paths and lower-case words in plain style (not
YAML 1.1's yes/no/on/off), and one-line flow lists of those strings. Anything
else -- indentation, block lists, anchors, tags, document markers, escapes,
`#` in a value, a repeated key, tabs, CRs or non-ASCII text -- answers None and the caller
runs PyYAML, which then has the last word (and writes the error). So the
file means exactly what YAML says it means: tests/unit/test_plainyaml.py
compares the two on a corpus and on generated documents.
"""

from __future__ import annotations

import re

_KEY = re.compile(r"([a-z_]+):(?: +(.*))?")
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
# Plain strings no YAML 1.1 resolver claims: an absolute path, or a word starting lower-case
# (bool, null, int, float, timestamp, merge and value all start otherwise, except the words below).
_PLAIN = re.compile(r"(?:/|[a-z])[A-Za-z0-9/._+@-]*(?::[A-Za-z0-9/._+@-]+)*")
_YAML11_WORDS = frozenset(("yes", "no", "on", "off", "true", "false", "null"))
_QUOTED = re.compile(r"\"[^\"\\]*\"|'[^']*'")
_UNUSUAL = re.compile(r"[^\x20-\x7e\n]")     # tabs, CRs, control and non-ASCII characters (YAML's other line breaks)
_CONSTANTS = {"": None, "~": None, "null": None, "true": True, "false": False}

Scalar = str | int | float | bool | None


class _Unsure(Exception):
    """Outside the subset: PyYAML decides."""


def read(text: str) -> dict[str, object] | None:
    """The document's mapping ({} for an empty one) when it is in the plain subset, else None."""
    if _UNUSUAL.search(text):
        return None
    doc: dict[str, object] = {}
    try:
        for line in text.split("\n"):
            stripped = line.strip(" ")
            if not stripped or (stripped.startswith("#") and not line.startswith(" ")):
                continue
            m = _KEY.fullmatch(line.rstrip(" "))
            if m is None or m.group(1) in doc or m.group(1) in _YAML11_WORDS:
                return None
            doc[m.group(1)] = _value(m.group(2) or "")
    except _Unsure:
        return None
    return doc


def _value(text: str) -> object:
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip(" ")
        return [_string(item.strip(" "), in_list=True) for item in inner.split(",")] if inner else []
    return _scalar(text)


def _scalar(text: str) -> Scalar:
    if text in _CONSTANTS:
        return _CONSTANTS[text]
    if _INT.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    return _string(text)


def _string(text: str, in_list: bool = False) -> str:
    if _QUOTED.fullmatch(text):
        return text[1:-1]
    # In a flow list PyYAML reads any ':' as a mapping's: such items are YAML's to read.
    if _PLAIN.fullmatch(text) and text not in _YAML11_WORDS and not (in_list and ":" in text):
        return text
    raise _Unsure(text)
