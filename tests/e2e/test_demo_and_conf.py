"""contrib/demo.sh works end to end, and contrib/containers.conf is a valid snippet for podman 4.3."""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest

from tests.conftest import REPO, require_tool

pytestmark = pytest.mark.e2e


def test_demo_script(runc_ckpt_bin):
    for tool in ("podman", "conmon", "criu", "busybox"):
        require_tool(tool)
    out = subprocess.run(["bash", str(REPO / "contrib" / "demo.sh"), runc_ckpt_bin], capture_output=True,
                         text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().endswith("demo OK")
    before = int(re.search(r"counter at the checkpoint: (\d+)", out.stdout).group(1))
    after = int(re.search(r"counter one second later: +(\d+)", out.stdout).group(1))
    assert after > before > 0


def test_demo_script_fails_cleanly_on_a_bad_runtime():
    out = subprocess.run(["bash", str(REPO / "contrib" / "demo.sh"), "/bin/true"], capture_output=True, text=True,
                         check=False, timeout=60)
    assert out.returncode != 0
    assert "is not runc-ckpt" in out.stderr


def _podman_default_json_runtimes() -> list[str]:
    """podman's built-in runtime_supports_json, as its shipped containers.conf documents it."""
    text = open("/usr/share/containers/containers.conf", encoding="utf-8").read()
    line = re.search(r"^#\s*runtime_supports_json\s*=\s*(\[.*\])", text, re.M).group(1)
    return tomllib.loads(f"x = {line}")["x"]


def test_containers_conf_snippet():
    conf = tomllib.loads((REPO / "contrib" / "containers.conf").read_text())
    engine = conf["engine"]
    defaults = _podman_default_json_runtimes()
    assert engine["runtime_supports_json"] == [*defaults, "runc-ckpt"]
    paths = engine["runtimes"]["runc-ckpt"]
    assert "/usr/local/bin/runc-ckpt" in paths and all(p.startswith("/") for p in paths)
    assert "runtime" not in engine, "the snippet must not change the default runtime unasked"
    private = tomllib.loads((REPO / "contrib" / "private-containers.conf.in").read_text())
    assert private["engine"]["runtime_supports_json"] == engine["runtime_supports_json"]
