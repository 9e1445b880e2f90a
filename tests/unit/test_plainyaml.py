"""settings.plainyaml reads only what PyYAML reads the same way: on every document it accepts, its mapping
is yaml.safe_load's; everything else it leaves to PyYAML (None)."""

from __future__ import annotations

import random

import pytest
import yaml

from runc_ckpt.settings import config, plainyaml

ACCEPTED = [
    "",
    "# only a comment\n\n",
    "state_dir: /var/lib/x\nvolume_roots: []\n",
    "state_dir: /var/tmp/ckpt-bench-1/state\nvolume_roots: [\"/a\", '/b c']\n",
    "volume_roots: [/a/b, /c-d/e_f.g]\ncompress: gzip\ncompress_level: 19\ncompress_threads: 0\n",
    "hook_timeout: 2.5\nlock_timeout: 0\nretention: -0\n",
    "export_dir:\nencryption_key: jwe:/keys/pub.pem\nsignature_policy: ~\nsign_passphrase_file: null\n",
    "log_level: debug   \nruncish: true\nother: false\n",
    "runc: '/usr/bin/runc # not a comment'\nstate_dir: \"/a'b\"\n",
    "volume_roots: [ ]\n",
    "a: x@y+z\n",
]

DECLINED = [
    "state_dir: /x # a comment\n",          # comments after values: PyYAML's
    "  state_dir: /x\n",                    # indentation
    "volume_roots:\n  - /a\n",              # block lists
    "state_dir: /x\nstate_dir: /y\n",       # a repeated key
    "compress: yes\n",                      # YAML 1.1 booleans
    "compress: 'it''s'\n",                  # quote escapes
    "runc: \"/a\\tb\"\n",                   # backslash escapes
    "---\nstate_dir: /x\n",                 # document markers
    "state_dir: !!str /x\n",                # tags
    "state_dir: &a /x\n",                   # anchors
    "compress_level: 0x10\n",               # other int forms
    "compress_level: 1_000\n",
    "hook_timeout: 1e3\n",                  # a string in YAML 1.1, a number to a JSON reader
    "export_dir: 2001-12-14\n",             # timestamps
    "state_dir: /x\r\n",                    # CRs
    "state_dir:\t/x\n",                     # tabs
    "state_dir: /caf\u00e9\n",              # non-ASCII (YAML has more line breaks than \n)
    "volume_roots: [/a:b]\n",               # ':' in a flow list
    "on: /x\n",                             # a key YAML reads as a boolean
    "state_dir: Null\n",
    "[a, b]\n",
    "state_dir:/x\n",
    "volume_roots: [/a, ]\n",
    "volume_roots: [\"/a,b\"]\n",
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_accepted_documents_read_as_yaml_reads_them(text):
    got = plainyaml.read(text)
    assert got is not None, "expected inside the subset"
    assert got == (yaml.safe_load(text) or {})
    assert [type(v) for v in got.values()] == [type(v) for v in (yaml.safe_load(text) or {}).values()]


@pytest.mark.parametrize("text", DECLINED)
def test_everything_else_is_left_to_yaml(text):
    assert plainyaml.read(text) is None


TOKENS = ["/a", "/a/b.c", "/x-y_z", "word", "jwe:/k.pem", "a:b", "yes", "No", "on", "true", "false", "null",
          "Null", "~", "", "0", "-0", "07", "12", "-3", "1.5", "1.", ".5", "1e3", "0x1f", "1_0", "1:30",
          "2001-12-14", "'q'", "'q''r'", '"d"', '"e\\n"', "'#'", "# c", "x # c", "[]", "[ ]", "[/a]", "[/a, /b]",
          "['/a', \"/b\"]", "[a:b]", "[/a,]", "[[/a]]", "{a: b}", "&x /a", "*x", "!!str /a", "|", ">", "-",
          "- /a", "=", "<<", "@x", "%x", "/a\t", " /a", "/a ", "caf\u00e9"]
KEYS = ["state_dir", "compress", "on", "a", "Key", "k-k", "yes"]


def _document(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(0, 4)):
        shape = rng.random()
        if shape < 0.1:
            lines.append(rng.choice(["# c", "", "  ", "---", "  - /a", "  nested: 1"]))
        else:
            sep = rng.choice([": ", ": ", ":  ", ":", ":\t"])
            lines.append(f"{rng.choice(KEYS)}{sep}{rng.choice(TOKENS)}")
    return "\n".join(lines) + rng.choice(["\n", "", "\r\n"])


def test_generated_documents_agree_with_yaml():
    rng = random.Random(22)
    accepted = 0
    for _ in range(5000):
        text = _document(rng)
        got = plainyaml.read(text)
        if got is None:
            continue
        accepted += 1
        try:
            expected = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            pytest.fail(f"plainyaml read {text!r}, which YAML refuses")
        assert got == expected and [type(v) for v in got.values()] == [type(v) for v in expected.values()], text
    assert accepted > 500, "the generator hardly reached the subset: the comparison proves little"


def test_config_load_takes_the_same_values_either_way(tmp_path, monkeypatch):
    """A plain file and its YAML-only spelling (a block list) load to the same Config."""
    plain = tmp_path / "plain.yaml"
    plain.write_text(f"state_dir: {tmp_path}/s\nvolume_roots: [/v1, /v2]\ncompress_level: 7\nexport_dir:\n")
    block = tmp_path / "block.yaml"
    block.write_text(f"state_dir: {tmp_path}/s\nvolume_roots:\n  - /v1\n  - /v2\ncompress_level: 7\nexport_dir:\n")
    a, b = config.load(str(plain)), config.load(str(block))
    assert (a.state_dir, a.volume_roots, a.compress_level, a.export_dir, a.keys) == \
           (b.state_dir, b.volume_roots, b.compress_level, b.export_dir, b.keys)


def test_a_plain_file_is_still_validated(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("compress_level: 99\n")
    with pytest.raises(config.RuncCkptError, match="compress_level"):
        config.load(str(bad))
