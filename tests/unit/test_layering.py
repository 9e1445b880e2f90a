"""The package's layers hold: the pass-through path loads only the stdlib, the entry (cli) and base/.

podman calls its runtime on every create, start, state and delete, and a
call that reaches Python (an unusual argv shape, --config) must still cost
little. So the pass-through path is run in a fresh interpreter, with exec
stubbed out, and every module it loaded is checked: nothing outside the
standard library, runc_ckpt.cli and runc_ckpt.base may appear (no yaml, jsonschema,
zstandard, nor our own heavier layers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

PROBE = r"""
import json, os, sys
os.execv = lambda path, argv: (_ for _ in ()).throw(SystemExit(0))
from runc_ckpt import cli
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""

# Arguments that reach Python's pass-through (the sh front end execs runc for the common ones).
SHAPES = [
    ["state", "web"],
    ["--", "state", "web"],
    ["--root", "/run/x", "--log-format=json", "list"],
    ["delete", "--force", "web"],
]


def _loaded(args: list[str], tmp_path, via_config: bool = False) -> list[str]:
    fake = tmp_path / "runc"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    env = dict(os.environ)
    if via_config:
        cfg = tmp_path / "runc-ckpt.yaml"
        cfg.write_text(f"state_dir: {tmp_path / 'state'}\nrunc: {fake}\ncompress: gzip\n")
        env.pop("RUNC_CKPT_RUNC", None)
        env["RUNC_CKPT_CONFIG"] = str(cfg)
    else:
        env["RUNC_CKPT_RUNC"] = str(fake)
    # -S: site's own imports (.pth hooks) are not the pass-through path's.
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {sys.path!r}\n" + PROBE, *args],
                         capture_output=True, text=True, env=env, check=True, cwd=REPO)
    return json.loads(out.stdout.splitlines()[-1])


def _is_stdlib(name: str) -> bool:
    top = name.split(".", 1)[0]
    return top in sys.stdlib_module_names or top in sys.builtin_module_names or top == "__main__"


@pytest.mark.parametrize("via_config", [False, True], ids=["env", "config-file"])
@pytest.mark.parametrize("args", SHAPES, ids=" ".join)
def test_pass_through_path_loads_only_stdlib_and_base(args, via_config, tmp_path):
    loaded = _loaded(args, tmp_path, via_config)
    ours = [m for m in loaded if m == "runc_ckpt" or m.startswith("runc_ckpt.")]
    assert "runc_ckpt.base.realrunc" in ours, "the probe did not reach the pass-through path"
    outside = [m for m in ours if m not in ("runc_ckpt", "runc_ckpt.cli", "runc_ckpt.base") and not m.startswith("runc_ckpt.base.")]
    foreign = [m for m in loaded if not _is_stdlib(m) and not (m == "runc_ckpt" or m.startswith("runc_ckpt."))]
    assert outside == [], f"pass-through loaded our heavier layers: {outside}"
    assert foreign == [], f"pass-through loaded non-stdlib modules: {foreign}"


def test_probe_sees_a_heavy_import_when_there_is_one(tmp_path):
    """The check can fail: checkpoint --help goes beyond base/, and the probe must see it."""
    loaded = _loaded(["checkpoint", "--help"], tmp_path)
    assert "runc_ckpt.commands.checkpoint" in loaded
