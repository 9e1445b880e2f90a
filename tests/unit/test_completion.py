"""contrib/completion/runc-ckpt.bash, run in a real bash with a fake `runc` on PATH.

Each test sources the file, sets COMP_WORDS/COMP_CWORD as bash would, calls
_runc_ckpt and reads COMPREPLY. The last tests keep the file's flag lists in
step with options.py, globalflags.py and runc's own --help.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from runc_ckpt.base import globalflags
from runc_ckpt.commands import options
from tests.conftest import REPO, require_tool

BASH_FILE = REPO / "contrib" / "completion" / "runc-ckpt.bash"

FAKE_RUNC = """#!/bin/sh
# Fake runc for completion tests: logs its argv, lists IDs for one root only.
echo "$*" >> "$FAKE_RUNC_LOG"
if [ "$1 $3 $4" = "--root list -q" ]; then
    case $2 in
        "$FAKE_RUNC_ROOT") printf 'web1\\nweb2\\ndb\\n' ;;
        /run/runc) printf 'default1\\n' ;;
    esac
fi
"""


@pytest.fixture
def env(tmp_path):
    """A scratch cwd with some files, and a PATH whose runc is the fake."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "runc"
    fake.write_text(FAKE_RUNC)
    fake.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    for name in ("web.tar.zst", "web-pre.tar.gz", "notes.txt"):
        (work / name).write_text("x")
    (work / "exports").mkdir()
    return {
        "cwd": work,
        "log": tmp_path / "runc.log",
        "root": str(tmp_path / "state root"),
        "env": {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_RUNC_LOG": str(tmp_path / "runc.log"),
                "FAKE_RUNC_ROOT": str(tmp_path / "state root"), "HOME": str(tmp_path)},
    }


def complete(env, words: list[str], cword: int | None = None) -> list[str]:
    """COMPREPLY for the command line `words`, the cursor on words[cword] (default: last)."""
    bash = require_tool("bash")
    cword = len(words) - 1 if cword is None else cword
    script = "\n".join([
        f"source {shlex.quote(str(BASH_FILE))}",
        "COMP_WORDS=(" + " ".join(shlex.quote(w) for w in words) + ")",
        f"COMP_CWORD={cword}",
        "COMP_LINE=" + shlex.quote(" ".join(words)),
        "_runc_ckpt",
        'printf "%s\\n" "${COMPREPLY[@]}"',
    ])
    out = subprocess.run([bash, "--norc", "--noprofile", "-c", script], cwd=env["cwd"], env=env["env"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr
    return sorted(line for line in out.stdout.splitlines() if line)


def runc_calls(env) -> list[str]:
    return env["log"].read_text().splitlines() if env["log"].exists() else []


def test_commands_include_runcs_and_inspect(env):
    got = complete(env, ["runc-ckpt", ""])
    assert {"checkpoint", "restore", "inspect", "run", "list", "delete"} <= set(got)
    assert complete(env, ["runc-ckpt", "ch"]) == ["checkpoint"]
    assert complete(env, ["runc-ckpt", "--debug", "--root", "/x", "in"]) == ["inspect"]


def test_global_flags(env):
    assert complete(env, ["runc-ckpt", "--ro"]) == ["--root", "--rootless"]
    assert "--config" in complete(env, ["runc-ckpt", "-"])


def test_command_flags(env):
    assert complete(env, ["runc-ckpt", "checkpoint", "--ex"]) == ["--export", "--ext-unix-sk"]
    assert complete(env, ["runc-ckpt", "--root", "/x", "--log", "/y", "restore", "--imp"]) == \
        ["--import", "--import-previous"]
    assert complete(env, ["runc-ckpt", "exec", "--no"]) == ["--no-new-privs"]


def test_flag_values(env):
    assert complete(env, ["runc-ckpt", "checkpoint", "--compress", ""]) == ["gzip", "none", "zstd"]
    assert complete(env, ["runc-ckpt", "--log-format", "j"]) == ["json"]
    assert complete(env, ["runc-ckpt", "checkpoint", "--manage-cgroups-mode", "s"]) == ["soft", "strict"]
    assert complete(env, ["runc-ckpt", "--rootless", ""]) == ["auto", "false", "true"]
    # exec -c is --cap, not --compress: no compression names there.
    assert complete(env, ["runc-ckpt", "exec", "-c", ""]) == []


def test_flag_value_after_equals(env):
    # bash split at '=' (the default COMP_WORDBREAKS) ...
    assert complete(env, ["runc-ckpt", "checkpoint", "--compress", "=", "g"]) == ["gzip"]
    # ... and not split: the flag comes back with the value.
    assert complete(env, ["runc-ckpt", "checkpoint", "-c=n"]) == ["-c=none"]


def test_container_ids_under_the_given_root(env):
    root = env["root"]
    assert complete(env, ["runc-ckpt", "--root", root, "checkpoint", "w"]) == ["web1", "web2"]
    assert runc_calls(env) == [f"--root {root} list -q"]
    assert complete(env, ["runc-ckpt", f"--root={root}", "kill", ""]) == ["db", "web1", "web2"]
    assert complete(env, ["runc-ckpt", "--root", "=", root, "state", "d"]) == ["db"]
    # flags of the command between it and the cursor do not matter
    assert complete(env, ["runc-ckpt", "-root", root, "checkpoint", "--leave-running", "--export", "x",
                          "we"]) == ["web1", "web2"]


def test_container_ids_default_root(env):
    assert complete(env, ["runc-ckpt", "delete", ""]) == ["default1"]
    assert runc_calls(env) == ["--root /run/runc list -q"]


def test_no_ids_where_a_new_id_is_named(env):
    assert complete(env, ["runc-ckpt", "run", ""]) == []
    assert complete(env, ["runc-ckpt", "create", "--bundle", "/b", ""]) == []
    assert runc_calls(env) == []


def test_archive_names(env):
    want = ["exports", "web-pre.tar.gz", "web.tar.zst"]
    assert complete(env, ["runc-ckpt", "restore", "--import", ""]) == want
    assert complete(env, ["runc-ckpt", "restore", "-i", "we"]) == ["web-pre.tar.gz", "web.tar.zst"]
    assert complete(env, ["runc-ckpt", "restore", "--import-previous", "web-"]) == ["web-pre.tar.gz"]
    assert complete(env, ["runc-ckpt", "inspect", ""]) == want
    assert complete(env, ["runc-ckpt", "inspect", "--format", "json", "web."]) == ["web.tar.zst"]
    # no archive-looking name matches: any file
    assert complete(env, ["runc-ckpt", "inspect", "no"]) == ["notes.txt"]
    # --export names a new file: every file is offered
    assert "notes.txt" in complete(env, ["runc-ckpt", "checkpoint", "--export", ""])


def test_image_build(env):
    assert complete(env, ["runc-ckpt", "image", ""]) == ["build"]
    assert complete(env, ["runc-ckpt", "image", "build", "we"]) == ["web-pre.tar.gz", "web.tar.zst"]
    assert complete(env, ["runc-ckpt", "image", "build", "--compress", "z"]) == ["zstd"]
    assert complete(env, ["runc-ckpt", "image", "build", "--c"]) == ["--compress"]


def test_directories_for_path_flags(env):
    assert complete(env, ["runc-ckpt", "checkpoint", "--image-path", ""]) == ["exports"]
    assert complete(env, ["runc-ckpt", "--root", "ex"]) == ["exports"]


# ---- the lists in the file stay true ----

def file_lists() -> dict[str, list[str]]:
    lists = {}
    for m in re.finditer(r'^(_runc_ckpt_\w+)="(.*)"$', BASH_FILE.read_text(), re.M):
        lists[m[1]] = m[2].split()
    return lists


def spelled(opts, values_only: bool = False) -> list[str]:
    return [("--" if len(n) > 1 else "-") + n for o in opts for n in o.names
            if not values_only or o.kind != "bool"]


def _expect(lists, var, want):
    assert lists.get(var) == want, f'{BASH_FILE.name} should say: {var}="{" ".join(want)}"'


@pytest.mark.parametrize("command", ["checkpoint", "restore", "inspect", "image"])
def test_runc_ckpt_command_lists_match_options_py(command):
    lists = file_lists()
    opts = getattr(options, "IMAGE_BUILD" if command == "image" else command.upper(), None)
    if opts is None:  # inspect's options arrive later; until then the page's --format
        assert command == "inspect"
        return
    _expect(lists, f"_runc_ckpt_opts_{command}", spelled(opts))
    _expect(lists, f"_runc_ckpt_vals_{command}", spelled(opts, values_only=True))


def test_global_lists_match_globalflags():
    lists = file_lists()
    names = {**globalflags.BOOL_FLAGS, **globalflags.VALUE_FLAGS}
    want = sorted(("--" if len(n) > 1 else "-") + n for n in names)
    assert sorted(lists["_runc_ckpt_opts_global"]) == want
    assert sorted(lists["_runc_ckpt_vals_global"]) == sorted("--" + n for n in globalflags.VALUE_FLAGS)


def _runc_help_flags(runc: str, command: str) -> tuple[list[str], list[str]]:
    """Every flag line after OPTIONS: (runc update prints more after a note)."""
    text = subprocess.run([runc, command, "--help"], capture_output=True, text=True, check=True).stdout
    names, values = [], []
    body = text.split("\nOPTIONS:\n", 1)[1] if "\nOPTIONS:\n" in text else ""
    for line in body.splitlines():
        if re.match(r"^\s+-", line):
            for part in re.split(r"\s{2,}", line.strip(), maxsplit=1)[0].split(", "):
                name, _, value = part.partition(" ")
                names.append(name)
                if value:
                    values.append(name)
    return names, values


def test_runc_command_lists_match_runc_help():
    runc = require_tool("runc")
    lists = file_lists()
    text = subprocess.run([runc, "--help"], capture_output=True, text=True, check=True).stdout
    commands = re.findall(r"^   ([a-z]+)(?:, h)?\s{2,}", text.split("\nCOMMANDS:\n", 1)[1].split("\n\n")[0], re.M)
    assert sorted(lists["_runc_ckpt_commands"]) == sorted(set(commands) | {"inspect", "image", "key"})
    for command in commands:
        if command in ("checkpoint", "restore", "help"):
            continue
        names, values = _runc_help_flags(runc, command)
        _expect(lists, f"_runc_ckpt_opts_{command}", names)
        _expect(lists, f"_runc_ckpt_vals_{command}", values)


def test_bash_syntax():
    bash = require_tool("bash")
    subprocess.run([bash, "-n", str(BASH_FILE)], check=True)
    assert os.access(BASH_FILE, os.R_OK)
    assert Path(BASH_FILE).read_text().rstrip().endswith("complete -F _runc_ckpt runc-ckpt")
