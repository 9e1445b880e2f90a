#!/usr/bin/env python3
"""Check runc-ckpt's man pages against themselves and against the code.

The pages are hand-written markdown (podman's man-page format), so they can
drift from the flags the commands really accept. This checker catches that
drift the way podman's hack/xref-helpmsgs-manpages does:

- every page has the required sections;
- each OPTIONS (and KEYS) section lists one `#### **--long**, **-s**=*value*`
  heading per flag, sorted byte-wise by long name, without duplicates, and
  every such heading parses;
- the flags on a command's page are exactly those its `--help` prints (the
  same names, short names, value-or-boolean, defaults and order); the global
  flags on runc-ckpt(1) are exactly those runc_ckpt.base.globalflags parses;
- links to other pages name pages that exist;
- the defaults on runc-ckpt.yaml(5) are runc_ckpt.settings.config.Config's;
- the keys on runc-ckpt.yaml(5) (and runc-ckpt-hooks(5), once the hook schema
  exists) are exactly the keys of their JSON schema.

Runnable as `python docs/check_man_pages.py [--runc-ckpt PATH] [--docs DIR]`
(exit 1 on any problem) and importable by tests by path.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent

# Sections every page has; OPTIONS is required where the command has flags.
REQUIRED_SECTIONS = ("NAME", "SYNOPSIS", "DESCRIPTION", "EXAMPLES", "SEE ALSO")
# Sections whose `####` headings are flags or keys, checked for order.
FLAG_SECTIONS = ("OPTIONS", "GLOBAL OPTIONS")
KEY_SECTIONS = ("KEYS", "ANNOTATIONS")

# Which subcommand's --help each command page documents.
COMMAND_PAGES = {
    "runc-ckpt-checkpoint.1.md": "checkpoint",
    "runc-ckpt-restore.1.md": "restore",
    "runc-ckpt-inspect.1.md": "inspect",
    "runc-ckpt-image.1.md": "image build",
}
GLOBAL_PAGE = "runc-ckpt.1.md"
CONFIG_PAGE = "runc-ckpt.yaml.5.md"
# Pages documenting a schema: page -> (schema file, required?). The hook schema
# is optional until it exists; once it does, the page must match it.
SCHEMA_PAGES = {
    "runc-ckpt.yaml.5.md": ("config.schema.json", True),
    "runc-ckpt-hooks.5.md": ("hook.schema.json", False),
}

_HEADING = re.compile(
    r"^#### \*\*(?P<name>[^*\s]+)\*\*"
    r"(?:, \*\*(?P<short>-[A-Za-z0-9])\*\*)?"
    r"(?:=(?P<value>\S.*))?$")
_LONG = re.compile(r"^--[a-z0-9][a-z0-9-]*$")
_KEY = re.compile(r"^[a-z][a-z0-9_-]*(?:\.[a-z][a-z0-9_-]*)*$")
_TITLE = re.compile(r"^% (?P<name>\S+) (?P<section>[1-8])$")
_LINK = re.compile(r"\]\(([^)/]+\.md)\)")
_STATED_DEFAULT = re.compile(r"The default is \*\*(?P<value>[^*]+)\*\*")
_DEFAULT = re.compile(r'\(default: "(?P<value>[^"]*)"\)$')


@dataclass
class Heading:
    """One `####` flag or key heading and the text under it."""

    name: str
    short: str | None
    value: str | None
    line: int
    body: list[str] = field(default_factory=list)


@dataclass
class Page:
    path: Path
    title: str | None = None
    sections: dict[str, int] = field(default_factory=dict)
    headings: dict[str, list[Heading]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def problem(self, line: int, msg: str) -> None:
        self.problems.append(f"{self.path.name}:{line}: {msg}")

    def flags(self) -> list[Heading]:
        return [h for s in FLAG_SECTIONS for h in self.headings.get(s, [])]

    def keys(self, section: str) -> list[Heading]:
        return self.headings.get(section, [])


@dataclass
class HelpFlag:
    """One flag as a --help text (or the globalflags module) declares it."""

    long: str
    short: str | None
    takes_value: bool
    default: str | None = None


def sort_key(name: str) -> bytes:
    """Byte-wise order, as podman's check compares: '-' < digits < letters, a prefix first."""
    return name.encode()


def parse_page(path: Path) -> Page:
    """Read a page: its title, sections, and the headings of flag/key sections."""
    page = Page(path)
    section: str | None = None
    current: Heading | None = None
    in_code = False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```") or in_code:
            in_code = in_code != line.startswith("```")
            if current is not None:
                current.body.append(line)
            continue
        if n == 1:
            m = _TITLE.match(line)
            if m is None:
                page.problem(n, f"first line must be the title '% NAME SECTION', not {line!r}")
            else:
                page.title = f"{m['name']}.{m['section']}"
            continue
        if line.startswith("## "):
            section = line[3:].strip()
            if section in page.sections:
                page.problem(n, f"section {section} appears twice")
            page.sections[section] = n
            current = None
            continue
        if line.startswith("#"):
            current = None
            if section in FLAG_SECTIONS + KEY_SECTIONS and line.startswith("#### "):
                current = _parse_heading(page, section, line, n)
            elif section in FLAG_SECTIONS + KEY_SECTIONS or not line.startswith("### "):
                page.problem(n, f"cannot parse heading {line!r}")
            continue
        if current is not None:
            current.body.append(line)
    _check_structure(page)
    return page


def _parse_heading(page: Page, section: str, line: str, n: int) -> Heading | None:
    m = _HEADING.match(line)
    flag_section = section in FLAG_SECTIONS
    name_ok = m is not None and (_LONG if flag_section else _KEY).match(m["name"]) is not None
    if m is None or not name_ok or (not flag_section and m["short"]):
        want = "#### **--long**, **-s**=*value*" if flag_section else "#### **key**=*value*"
        page.problem(n, f"cannot parse heading {line!r} (want {want!r})")
        return None
    heading = Heading(m["name"], m["short"], m["value"], n)
    page.headings.setdefault(section, []).append(heading)
    return heading


def _check_links(page: Page) -> None:
    """Every link to another page (`[x(1)](x.1.md)`) names a page that exists."""
    for n, line in enumerate(page.path.read_text(encoding="utf-8").splitlines(), 1):
        for target in _LINK.findall(line):
            if not (page.path.parent / target).exists():
                page.problem(n, f"link to {target}, which does not exist")


def _check_structure(page: Page) -> None:
    _check_links(page)
    if page.title is not None and page.title + ".md" != page.path.name:
        page.problem(1, f"title {page.title!r} does not match the file name")
    for section in REQUIRED_SECTIONS:
        if section not in page.sections:
            page.problem(1, f"missing section ## {section}")
    for section, headings in page.headings.items():
        seen: dict[str, int] = {}
        previous: Heading | None = None
        for h in headings:
            if h.name in seen:
                page.problem(h.line, f"duplicate {h.name} (first at line {seen[h.name]})")
            else:
                seen[h.name] = h.line
            if previous is not None and sort_key(h.name) < sort_key(previous.name):
                page.problem(h.line, f"{h.name} should precede {previous.name}")
            if not any(text.strip() for text in h.body):
                page.problem(h.line, f"{h.name} has no description")
            previous = h


def parse_help(text: str) -> list[HelpFlag]:
    """The flags of a runc-style (urfave/cli) --help text, in printed order."""
    flags: list[HelpFlag] = []
    in_options = False
    for line in text.splitlines():
        if line.rstrip().endswith("OPTIONS:"):
            in_options = True
            continue
        if in_options and line and not line[0].isspace():
            in_options = False
        if not in_options or not line.strip().startswith("-"):
            continue
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        spelled, meaning = parts[0], parts[1] if len(parts) > 1 else ""
        long = short = None
        takes_value = False
        for part in spelled.split(", "):
            name, _, value = part.partition(" ")
            takes_value = takes_value or bool(value)
            if name.startswith("--"):
                long = long or name
            else:
                short = short or name
        default = _DEFAULT.search(meaning.strip())
        flags.append(HelpFlag(long or short or spelled, short if long else None, takes_value,
                              default["value"] if default else None))
    return flags


def compare(page: Page, expected: list[HelpFlag], source: str, check_order: bool = True) -> None:
    """Report page flags that `source` lacks, flags it has that the page lacks, and mismatches."""
    documented = {h.name: h for h in page.flags()}
    wanted = {f.long: f for f in expected}
    where = page.sections.get("OPTIONS", page.sections.get("GLOBAL OPTIONS", 1))
    for f in expected:
        h = documented.get(f.long)
        if h is None:
            page.problem(where, f"{f.long} is in {source} but not on the page")
            continue
        if h.short != f.short:
            page.problem(h.line, f"{f.long}: short name {h.short or 'none'} on the page, "
                                 f"{f.short or 'none'} in {source}")
        if (h.value is not None) != f.takes_value:
            page.problem(h.line, f"{f.long}: {source} says it {'takes' if f.takes_value else 'takes no'} "
                                 f"value; the heading {'lacks' if f.takes_value else 'has'} '=...'")
        if f.default is not None and f"The default is **{f.default}**" not in "\n".join(h.body):
            page.problem(h.line, f"{f.long}: {source} gives default {f.default!r}; "
                                 f"the page should say 'The default is **{f.default}**.'")
    for h in page.flags():
        if h.name not in wanted:
            page.problem(h.line, f"{h.name} is on the page but not in {source}")
    if check_order:
        page_order = [h.name for h in page.flags() if h.name in wanted]
        help_order = [f.long for f in expected if f.long in documented]
        if page_order != help_order:
            page.problem(where, f"the page's option order differs from {source}'s")


def compare_keys(page: Page, section: str, keys: list[str], source: str) -> None:
    """Report keys of `source` missing from `section` of the page, and page keys `source` lacks."""
    documented = {h.name for h in page.keys(section)}
    where = page.sections.get(section, 1)
    if section not in page.sections:
        page.problem(1, f"missing section ## {section}")
    for key in keys:
        if key not in documented:
            page.problem(where, f"{key} is in {source} but not on the page")
    for h in page.keys(section):
        if h.name not in keys:
            page.problem(h.line, f"{h.name} is on the page but not in {source}")


def schema_keys(schema: dict, prefix: str = "") -> list[str]:
    """Every property of a JSON schema, nested objects as dotted names."""
    keys: list[str] = []
    for name, sub in schema.get("properties", {}).items():
        keys.append(prefix + name)
        if isinstance(sub, dict):
            keys.extend(schema_keys(sub, prefix + name + "."))
            items = sub.get("items")
            if isinstance(items, dict) and "properties" in items:
                keys.extend(schema_keys(items, prefix + name + "."))
    return keys


def _import_runc_ckpt(module: str):
    """Import from the installed package, else from this checkout's plugin/ folder."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if str(REPO / "plugin") in sys.path:
            raise
        sys.path.insert(0, str(REPO / "plugin"))
        return importlib.import_module(module)


def global_flags() -> list[HelpFlag]:
    """runc-ckpt's global flags as runc_ckpt.base.globalflags parses them, grouped by setting."""
    globalflags = _import_runc_ckpt("runc_ckpt.base.globalflags")
    by_attr: dict[str, list[str]] = {}
    takes_value: dict[str, bool] = {}
    for table, is_value in ((globalflags.BOOL_FLAGS, False), (globalflags.VALUE_FLAGS, True)):
        for name, attr in table.items():
            by_attr.setdefault(attr, []).append(name)
            takes_value[attr] = is_value
    flags = []
    for attr, names in by_attr.items():
        longs = [n for n in names if len(n) > 1]
        shorts = [n for n in names if len(n) == 1]
        flags.append(HelpFlag("--" + longs[0], "-" + shorts[0] if shorts else None, takes_value[attr]))
    return sorted(flags, key=lambda f: sort_key(f.long))


def config_defaults() -> dict[str, str | None]:
    """runc_ckpt.settings.config.Config's defaults, spelled as the page writes them (None: no default)."""
    config = _import_runc_ckpt("runc_ckpt.settings.config")
    defaults: dict[str, str | None] = {}
    for name in config.Config._fields:
        value = config.Config._field_defaults.get(name)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, tuple):
            value = "[" + ", ".join(map(str, value)) + "]"
        defaults[name] = None if value is None else str(value)
    return defaults


def compare_defaults(page: Page, defaults: dict[str, str | None]) -> None:
    """Each key's 'The default is **X**.' must be the code's default; a key with one must say it."""
    for h in page.keys("KEYS"):
        if h.name not in defaults:
            continue
        stated = _STATED_DEFAULT.search("\n".join(h.body))
        want = defaults[h.name]
        if want is None:
            if stated and stated["value"] != "null":
                page.problem(h.line, f"{h.name}: the page gives default {stated['value']!r}; the code has none")
        elif stated is None or stated["value"] != want:
            page.problem(h.line, f"{h.name}: the code's default is {want!r}; "
                                 f"the page should say 'The default is **{want}**.'")


def annotation_keys() -> list[str] | None:
    """The io.runc-ckpt.* annotation keys runc_ckpt.settings.policy accepts, or None before it exists."""
    try:
        policy = _import_runc_ckpt("runc_ckpt.settings.policy")
    except ImportError:
        return None
    return [policy.ANNOTATION_PREFIX + key for key in policy.ANNOTATIONS]


def find_runc_ckpt() -> str | None:
    """The front end beside this Python (a venv), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "runc-ckpt")
    return beside if os.access(beside, os.X_OK) else shutil.which("runc-ckpt")


def command_help(runc_ckpt: str, command: str) -> tuple[str | None, str]:
    """`runc-ckpt COMMAND --help`: (stdout, error text or '')."""
    try:
        out = subprocess.run([runc_ckpt, *command.split(), "--help"], capture_output=True, text=True,
                             timeout=60, check=False, env={**os.environ, "RUNC_CKPT_CONFIG": os.devnull})
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    if out.returncode != 0:
        return None, f"exit {out.returncode}: {' '.join((out.stderr or out.stdout).split())[:200]}"
    return out.stdout, ""


def _command_exists(command: str) -> bool:
    """Whether runc-ckpt implements `command` yet (inspect arrives after the docs)."""
    options = _import_runc_ckpt("runc_ckpt.commands.options")
    return hasattr(options, command.upper().replace(" ", "_"))


def check(docs: Path = DOCS, runc_ckpt: str | None = None) -> tuple[list[str], list[str]]:
    """Check every page under docs: (problems, notes)."""
    problems: list[str] = []
    notes: list[str] = []
    pages = sorted(docs.glob("*.[1-8].md"))
    if not pages:
        return [f"{docs}: no man pages (*.[1-8].md)"], notes
    runc_ckpt = runc_ckpt or find_runc_ckpt()
    for path in pages:
        page = parse_page(path)
        command = COMMAND_PAGES.get(path.name)
        if command is not None:
            if runc_ckpt is None:
                page.problem(1, "cannot find runc-ckpt to run --help (use --runc-ckpt PATH)")
            else:
                text, error = command_help(runc_ckpt, command)
                if text is None and not _command_exists(command):
                    notes.append(f"{path.name}: `runc-ckpt {command}` is not implemented yet; "
                                 "flags not compared")
                elif text is None:
                    page.problem(1, f"`runc-ckpt {command} --help` failed: {error}")
                else:
                    expected = parse_help(text)
                    if expected and "OPTIONS" not in page.sections:
                        page.problem(1, "missing section ## OPTIONS")
                    compare(page, expected, f"`runc-ckpt {command} --help`")
        elif path.name == GLOBAL_PAGE:
            if "GLOBAL OPTIONS" not in page.sections:
                page.problem(1, "missing section ## GLOBAL OPTIONS")
            compare(page, global_flags(), "runc_ckpt.base.globalflags")
            annotations = annotation_keys()
            if annotations is None:
                notes.append(f"{path.name}: runc_ckpt.settings.policy does not exist yet; annotations not compared")
            else:
                compare_keys(page, "ANNOTATIONS", annotations, "runc_ckpt.settings.policy.ANNOTATIONS")
        elif path.name in SCHEMA_PAGES:
            schema_name, required = SCHEMA_PAGES[path.name]
            schema_path = REPO / "plugin" / "runc_ckpt" / "settings" / "schemas" / schema_name
            if schema_path.exists():
                schema = json.loads(schema_path.read_text(encoding="utf-8"))
                compare_keys(page, "KEYS", schema_keys(schema), schema_name)
                if path.name == CONFIG_PAGE:
                    compare_defaults(page, config_defaults())
            elif required:
                page.problem(1, f"schema {schema_name} not found")
            else:
                notes.append(f"{path.name}: {schema_name} does not exist yet; keys not compared")
        problems.extend(page.problems)
    return problems, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runc-ckpt", help="the runc-ckpt front end whose --help is compared")
    parser.add_argument("--docs", type=Path, default=DOCS, help="folder of *.md man pages")
    args = parser.parse_args(argv)
    problems, notes = check(args.docs, args.runc_ckpt)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for p in problems:
        print(p, file=sys.stderr)
    n = len(list(args.docs.glob("*.[1-8].md")))
    print(f"{n} man pages, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
