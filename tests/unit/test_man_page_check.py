"""docs/check_man_pages.py finds each kind of problem it promises to find.

Small pages are built in tmp_path; each test proves one detection, and the
last ones run the checker over the real docs/ and expect success.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

CHECKER = REPO / "docs" / "check_man_pages.py"


def _load_checker():
    spec = importlib.util.spec_from_file_location("check_man_pages", CHECKER)
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_man_pages"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


cmp = _load_checker()

HELP = """USAGE:
   runc-ckpt [global options] frob [command options] <container-id>

DESCRIPTION:
   Frob a container.

OPTIONS:
   --all, -a                    frob every container
   --compress value, -c value   compression (default: "zstd")
   --import value               an archive
   --import-previous value      an earlier archive
"""

GOOD_OPTIONS = """#### **--all**, **-a**

Frob every container.

#### **--compress**, **-c**=**zstd** | *none*

Compression.

The default is **zstd**.

#### **--import**=*archive*

An archive.

#### **--import-previous**=*archive*

An earlier archive.
"""


def page_text(name: str, options: str, section: str = "OPTIONS") -> str:
    title, num = name.rsplit(".", 1)
    return (f"% {title} {num}\n\n## NAME\n{title} - test page\n\n## SYNOPSIS\n**{title}**\n\n"
            f"## DESCRIPTION\nText.\n\n## {section}\n{options}\n## EXAMPLES\n```\n# true\n```\n\n"
            f"## SEE ALSO\n**runc(8)**\n")


def write_page(tmp_path: Path, options: str, name: str = "runc-ckpt-frob.1", section: str = "OPTIONS") -> Path:
    path = tmp_path / f"{name}.md"
    path.write_text(page_text(name, options, section))
    return path


def problems_of(path: Path, help_text: str | None = HELP) -> list[str]:
    page = cmp.parse_page(path)
    if help_text is not None:
        cmp.compare(page, cmp.parse_help(help_text), "--help")
    return page.problems


def test_good_page_has_no_problems(tmp_path):
    assert problems_of(write_page(tmp_path, GOOD_OPTIONS)) == []


def test_misordered_page_is_reported(tmp_path):
    swapped = GOOD_OPTIONS.replace("#### **--all**, **-a**\n\nFrob every container.\n\n", "")
    swapped += "#### **--all**, **-a**\n\nFrob every container.\n"
    problems = problems_of(write_page(tmp_path, swapped), help_text=None)
    assert any("--all should precede --import-previous" in p for p in problems), problems


def test_prefix_sorts_first(tmp_path):
    """--import before --import-previous is right; the reverse is reported."""
    options = ("#### **--import-previous**=*a*\n\nEarlier.\n\n"
               "#### **--import**=*a*\n\nArchive.\n")
    problems = problems_of(write_page(tmp_path, options), help_text=None)
    assert any("--import should precede --import-previous" in p for p in problems), problems


@pytest.mark.parametrize("first,second", [("--a-b", "--a0"), ("--a0", "--aa"), ("--ab", "--ab-c")])
def test_byte_order_dash_digit_letter(first, second):
    assert cmp.sort_key(first) < cmp.sort_key(second)


def test_duplicate_is_reported(tmp_path):
    options = GOOD_OPTIONS + "#### **--import-previous**=*archive*\n\nAgain.\n"
    problems = problems_of(write_page(tmp_path, options), help_text=None)
    assert any("duplicate --import-previous" in p for p in problems), problems


@pytest.mark.parametrize("heading", [
    "#### --all",                       # no bold
    "#### **all**",                     # no dashes
    "#### **--all**, **--a**",          # short with two dashes
    "#### **--all** **-a**",            # no comma
    "### **--all**",                    # wrong level inside OPTIONS
])
def test_bad_heading_is_reported(tmp_path, heading):
    problems = problems_of(write_page(tmp_path, GOOD_OPTIONS + f"{heading}\n\nText.\n"), help_text=None)
    assert any("cannot parse heading" in p for p in problems), problems


def test_missing_flag_is_reported(tmp_path):
    options = GOOD_OPTIONS.replace("#### **--import**=*archive*\n\nAn archive.\n\n", "")
    problems = problems_of(write_page(tmp_path, options))
    assert any("--import is in --help but not on the page" in p for p in problems), problems


def test_extra_flag_is_reported(tmp_path):
    options = GOOD_OPTIONS + "#### **--zap**\n\nZap.\n"
    problems = problems_of(write_page(tmp_path, options))
    assert any("--zap is on the page but not in --help" in p for p in problems), problems


def test_value_short_and_default_mismatches_are_reported(tmp_path):
    options = (GOOD_OPTIONS.replace("#### **--import**=*archive*", "#### **--import**")
               .replace("**--all**, **-a**", "**--all**, **-A**")
               .replace("The default is **zstd**.", "The default is **gzip**."))
    problems = "\n".join(problems_of(write_page(tmp_path, options)))
    assert "--import: --help says it takes value" in problems
    assert "--all: short name -A on the page, -a in --help" in problems
    assert "--compress: --help gives default 'zstd'" in problems


def test_order_differing_from_help_is_reported(tmp_path):
    help_text = HELP.replace("   --all, -a                    frob every container\n", "") + \
        "   --all, -a    frob every container\n"
    problems = problems_of(write_page(tmp_path, GOOD_OPTIONS), help_text)
    assert any("order differs" in p for p in problems), problems


def test_missing_section_and_bad_title_are_reported(tmp_path):
    path = write_page(tmp_path, GOOD_OPTIONS)
    path.write_text(path.read_text().replace("% runc-ckpt-frob 1", "% runc-ckpt-frab 1")
                    .replace("## EXAMPLES\n", "## EXAMPLE\n"))
    problems = "\n".join(problems_of(path))
    assert "missing section ## EXAMPLES" in problems
    assert "does not match the file name" in problems


def test_option_without_description_is_reported(tmp_path):
    options = GOOD_OPTIONS.replace("An archive.\n", "")
    problems = problems_of(write_page(tmp_path, options))
    assert any("--import has no description" in p for p in problems), problems


def test_broken_link_is_reported(tmp_path):
    path = write_page(tmp_path, GOOD_OPTIONS)
    path.write_text(path.read_text().replace("**runc(8)**", "**[runc-ckpt-gone(1)](runc-ckpt-gone.1.md)**"))
    problems = problems_of(path)
    assert any("link to runc-ckpt-gone.1.md, which does not exist" in p for p in problems), problems


def test_schema_keys_are_compared(tmp_path):
    keys = "#### **alpha**=*x*\n\nA.\n\n#### **beta**\n\nB.\n\n#### **beta.gamma**=*y*\n\nG.\n\n#### **zeta**\n\nZ.\n"
    page = cmp.parse_page(write_page(tmp_path, keys, name="frob.yaml.5", section="KEYS"))
    schema = {"properties": {"alpha": {}, "beta": {"type": "object", "properties": {"gamma": {}, "delta": {}}}}}
    assert cmp.schema_keys(schema) == ["alpha", "beta", "beta.gamma", "beta.delta"]
    cmp.compare_keys(page, "KEYS", cmp.schema_keys(schema), "schema")
    problems = "\n".join(page.problems)
    assert "beta.delta is in schema but not on the page" in problems
    assert "zeta is on the page but not in schema" in problems
    assert "alpha" not in problems


def test_config_defaults_are_compared(tmp_path):
    keys = ("#### **level**=*n*\n\nLevel.\n\nThe default is **3**.\n\n"
            "#### **path**=*p*\n\nPath.\n\n"
            "#### **roots**=*list*\n\nRoots.\n\nThe default is **[/a, /b]**.\n\n"
            "#### **runc**=*p*\n\nRunc.\n\nThe default is **/usr/bin/runc**.\n")
    page = cmp.parse_page(write_page(tmp_path, keys, name="frob.yaml.5", section="KEYS"))
    cmp.compare_defaults(page, {"level": "4", "path": "/x", "roots": "[/a, /b]", "runc": None})
    problems = "\n".join(page.problems)
    assert "level: the code's default is '4'" in problems
    assert "path: the code's default is '/x'" in problems
    assert "runc: the page gives default '/usr/bin/runc'; the code has none" in problems
    assert "roots" not in problems


def test_config_defaults_spelling():
    defaults = cmp.config_defaults()
    assert defaults["runc"] is None
    assert defaults["hook_timeout"] == "30"
    assert defaults["volume_roots"].startswith("[/")


def test_parse_help_reads_runc_style_help():
    flags = cmp.parse_help(HELP)
    assert [(f.long, f.short, f.takes_value, f.default) for f in flags] == [
        ("--all", "-a", False, None), ("--compress", "-c", True, "zstd"),
        ("--import", None, True, None), ("--import-previous", None, True, None)]


def test_global_flags_come_from_globalflags():
    flags = {f.long: f for f in cmp.global_flags()}
    assert flags["--config"].takes_value and not flags["--debug"].takes_value
    assert flags["--help"].short == "-h" and flags["--version"].short == "-v"
    assert "--h" not in flags


def test_command_line_exits_nonzero_on_a_bad_page(tmp_path, runc_ckpt_bin):
    bad = page_text("runc-ckpt-checkpoint.1", "#### **--zap**\n\nZap.\n")
    (tmp_path / "runc-ckpt-checkpoint.1.md").write_text(bad)
    out = subprocess.run([sys.executable, str(CHECKER), "--docs", str(tmp_path), "--runc-ckpt", runc_ckpt_bin],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 1
    assert "--zap is on the page but not in `runc-ckpt checkpoint --help`" in out.stderr
    assert "--all is in `runc-ckpt checkpoint --help` but not on the page" in out.stderr


def test_real_docs_pass(runc_ckpt_bin):
    out = subprocess.run([sys.executable, str(CHECKER), "--runc-ckpt", runc_ckpt_bin],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert " 0 problems" in out.stderr
