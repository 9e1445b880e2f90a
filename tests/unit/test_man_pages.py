"""The man pages' examples work, and the option lists they document are well-formed.

Every code block under EXAMPLES carries a marker comment just above it:
  [//]: # (example: runs in tests/unit/test_man_pages.py)  -> run here
  [//]: # (example: covered by tests/PATH ...)              -> run by those tests
This file runs the first kind (commands must exit 0; YAML/JSON files must
load as runc-ckpt loads them) and checks that the second kind names tests
that exist.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from runc_ckpt.commands import cmdflags, options
from runc_ckpt.settings import config, hooks
from tests.conftest import REPO, require_tool

DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.[1-8].md"))
_MARKER = re.compile(r"^\[//\]: # \(example: (?P<kind>runs in|covered by) (?P<where>.+)\)$")
THIS = "tests/unit/test_man_pages.py"


def examples(page: Path) -> list[tuple[str, str, list[str], int]]:
    """(kind, where, lines, line number) of each code block in the EXAMPLES section."""
    lines = page.read_text(encoding="utf-8").splitlines()
    if "## EXAMPLES" not in lines:
        return []  # test_there_are_pages_and_examples reports it
    start = lines.index("## EXAMPLES")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    found = []
    marker = None
    i = start + 1
    while i < end:
        m = _MARKER.match(lines[i])
        if m:
            marker = (m["kind"], m["where"])
        elif lines[i].startswith("```"):
            j = lines.index("```", i + 1)
            kind, where = marker if marker else ("", "")
            found.append((kind, where, lines[i + 1:j], i + 1))
            marker = None
            i = j
        i += 1
    return found


ALL_EXAMPLES = [(page.name, *ex) for page in PAGES for ex in examples(page)]


def test_there_are_pages_and_examples():
    names = {p.name for p in PAGES}
    assert {"runc-ckpt.1.md", "runc-ckpt-checkpoint.1.md", "runc-ckpt-restore.1.md",
            "runc-ckpt-inspect.1.md", "runc-ckpt.yaml.5.md", "runc-ckpt-hooks.5.md"} <= names
    for page in PAGES:
        assert examples(page), f"{page.name} has no example"


@pytest.mark.parametrize("page,kind,where,block,line", ALL_EXAMPLES,
                         ids=[f"{e[0]}:{e[4]}" for e in ALL_EXAMPLES])
def test_every_example_says_where_it_runs(page, kind, where, block, line):
    assert kind, f"{page}:{line}: example without a '[//]: # (example: ...)' marker above it"
    if kind == "runs in":
        assert where == THIS
    else:
        paths = re.findall(r"tests/[\w/.-]+", where)
        assert paths, f"{page}:{line}: 'covered by' names no test file"
        for path in paths:
            assert (REPO / path).exists(), f"{page}:{line}: {path} does not exist"


RUNNABLE = [e for e in ALL_EXAMPLES if e[1] == "runs in"]


@pytest.mark.parametrize("page,kind,where,block,line", RUNNABLE, ids=[f"{e[0]}:{e[4]}" for e in RUNNABLE])
def test_runnable_example_works(page, kind, where, block, line, runc_ckpt_bin, tmp_path):
    commands = [b[2:] for b in block if b.startswith("# ")]
    if commands:
        for command in commands:
            argv = shlex.split(command)
            assert argv[0] == "runc-ckpt", f"{page}:{line}: only runc-ckpt examples run here"
            argv[0] = runc_ckpt_bin
            # Never the host's runc state: --root goes to a private directory.
            argv = [str(tmp_path / "root") if a == "/run/runc" else a for a in argv]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                                 env={**os.environ, "RUNC_CKPT_CONFIG": os.devnull})
            assert out.returncode == 0, f"{page}:{line}: `{command}` failed: {out.stderr}"
            assert out.stdout.strip(), f"{page}:{line}: `{command}` printed nothing"
        return
    # A file example: load it as runc-ckpt would.
    text = "\n".join(block) + "\n"
    if page == "runc-ckpt.yaml.5.md":
        path = tmp_path / "runc-ckpt.yaml"
        path.write_text(text)
        loaded = config.load(str(path))
        assert loaded.path == str(path)
    elif page == "runc-ckpt-hooks.5.md":
        path = tmp_path / ("example.json" if text.lstrip().startswith("{") else "example.yaml")
        path.write_text(text)
        hook = hooks.load_file(str(path))
        assert hook.stages
    else:
        pytest.fail(f"{page}:{line}: don't know how to run this example")


COMMAND_LISTS = {"checkpoint": options.CHECKPOINT, "restore": options.RESTORE}
if hasattr(options, "INSPECT"):
    COMMAND_LISTS["inspect"] = options.INSPECT


def _sort_key(name: str) -> bytes:
    return name.encode()  # the man-page checker's order: byte-wise


@pytest.mark.parametrize("command", sorted(COMMAND_LISTS))
def test_option_list_is_in_man_page_order_and_documented(command):
    opts = COMMAND_LISTS[command]
    longs = [o.names[0] for o in opts]
    assert longs == sorted(longs, key=_sort_key), f"{command}: options not in byte-wise order"
    assert len(set(longs)) == len(longs), f"{command}: duplicate option"
    all_names = [n for o in opts for n in o.names]
    assert len(set(all_names)) == len(all_names), f"{command}: a name is used twice"
    for o in opts:
        assert len(o.names[0]) > 1, f"{command}: {o.names} must start with its long name"
        assert o.help.strip() and "\n" not in o.help, f"{command} --{o.names[0]}: needs a one-line help"


@pytest.mark.parametrize("command", sorted(COMMAND_LISTS))
def test_help_lists_every_flag_with_meaning_and_default(command, runc_ckpt_bin):
    out = subprocess.run([runc_ckpt_bin, command, "--help"], capture_output=True, text=True,
                         timeout=60, check=True)
    lines = [line.strip() for line in out.stdout.splitlines() if line.strip().startswith("-")]
    opts = COMMAND_LISTS[command]
    assert len(lines) == len(opts)
    for line, o in zip(lines, opts):
        assert line.startswith(f"--{o.names[0]}"), f"{line!r} should be --{o.names[0]}"
        assert o.help in line
        if o.default:
            assert line.endswith(f'(default: "{o.default}")'), line


def test_help_renderer_shows_defaults():
    text = cmdflags.render_help("n - x", "u", "d", [cmdflags.Option(("level", "l"), "value", "how much", default="3")])
    assert text == ('NAME:\n   n - x\n\nUSAGE:\n   u\n\nDESCRIPTION:\n   d\n\nOPTIONS:\n'
                    '   --level value, -l value  how much (default: "3")\n   \n')


def test_pages_render_to_roff(tmp_path):
    require_tool("go-md2man")
    out = subprocess.run(["sh", str(DOCS / "render-man.sh"), str(tmp_path)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    rendered = sorted(p.name for p in tmp_path.rglob("*.[1-8]"))
    assert rendered == sorted(p.name[:-3] for p in PAGES)
    if shutil.which("man"):
        page = subprocess.run(["man", "-l", str(tmp_path / "man1" / "runc-ckpt-checkpoint.1")],
                              capture_output=True, text=True, check=True,
                              env={**os.environ, "MANWIDTH": "100", "MAN_KEEP_FORMATTING": ""})
        assert "--leave-running, -R" in page.stdout
