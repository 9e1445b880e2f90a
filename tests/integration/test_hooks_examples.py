"""The shipped hook examples, run for real around a real runc checkpoint and restore."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import GlobalFlags
from runc_ckpt.settings import hooks, policy
from runc_ckpt.settings.config import Config
from tests.conftest import REPO, require_tool
from tests.integration.conftest import runc, wait_for

EXAMPLES = REPO / "hooks" / "examples"


@pytest.fixture
def hooks_dir(tmp_path: Path) -> tuple[Path, Path]:
    """hooks/examples installed into a private hooks_dir: definitions point at the repo's scripts."""
    d = tmp_path / "hooks.d"
    d.mkdir()
    log = tmp_path / "events.log"
    sync = json.loads((EXAMPLES / "sync.json").read_text())
    sync["hook"]["path"] = str(EXAMPLES / "sync.sh")
    (d / "sync.json").write_text(json.dumps(sync))
    notify = yaml.safe_load((EXAMPLES / "notify.yaml").read_text())
    notify["hook"]["path"] = str(EXAMPLES / "notify.py")
    notify["hook"]["env"] = [e if not e.startswith("NOTIFY_LOG=") else f"NOTIFY_LOG={log}"
                             for e in notify["hook"]["env"]]
    (d / "notify.yaml").write_text(yaml.safe_dump(notify))
    shutil.copy(EXAMPLES / "sync.sh", d / "sync.sh")  # scripts beside definitions are ignored
    return d, log


def debug_flags(tmp_path: Path) -> GlobalFlags:
    flags = GlobalFlags()
    flags.debug = True
    flags.log = str(tmp_path / "runc-ckpt.log")
    flags.log_format = "json"
    return flags


def messages(flags: GlobalFlags) -> list[str]:
    return [json.loads(line)["msg"] for line in Path(flags.log).read_text().splitlines()]


def test_examples_are_valid_definitions():
    loaded = hooks.load(str(EXAMPLES))
    assert [h.name for h in loaded] == ["notify", "sync"]
    notify, sync = loaded
    assert notify.always and notify.stages == hooks.STAGES
    assert sync.stages == ("precheckpoint",) and not sync.always


def test_examples_around_a_real_checkpoint_and_restore(make_bundle, containers, hooks_dir, tmp_path):
    require_tool("nsenter")
    d, log = hooks_dir
    b = make_bundle()
    spec = b.config()
    spec["annotations"] = {"com.example.sync-before-checkpoint": "true"}
    b.write_config(spec)
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    state = containers.state(cid)
    assert state is not None
    annotations = b.config()["annotations"]
    pol = policy.effective(Config(hooks_dir=str(d)), annotations, {})
    loaded = hooks.load(str(d))
    flags = debug_flags(tmp_path)

    def stage(name: str) -> None:
        hooks.run_stage(name, hooks.select(loaded, name, annotations, pol.hooks), state, flags,
                        pol.hook_timeout)

    stage("precheckpoint")
    images = tmp_path / "images"
    runc(containers.root, "checkpoint", "--image-path", str(images), cid)
    stage("postcheckpoint")
    before = b.counter()
    stage("prerestore")
    subprocess.run(["runc", "--root", str(containers.root), "restore", "-d", "--image-path", str(images),
                    "--bundle", str(b.path), cid], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    stage("postrestore")
    wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")

    lines = log.read_text().splitlines()
    assert [line.split()[1] for line in lines] == list(hooks.STAGES)
    for line in lines:
        assert f" id={cid} status=running pid={state['pid']} bundle={b.path}" in line
    assert f"precheckpoint hook sync: exit status 0: sync.sh: synced the root filesystem of pid " \
           f"{state['pid']} in its mount namespace" in messages(flags)


def test_sync_hook_enabled_by_name_falls_back_to_the_host(hooks_dir, tmp_path):
    d, log = hooks_dir
    annotations = {"io.runc-ckpt.hooks": "sync"}
    pol = policy.effective(Config(hooks_dir=str(d)), annotations, {})
    selected = hooks.select(hooks.load(str(d)), "precheckpoint", annotations, pol.hooks)
    assert [h.name for h in selected] == ["notify", "sync"]
    flags = debug_flags(tmp_path)
    hooks.run_stage("precheckpoint", selected, {"ociVersion": "1.0.2", "id": "gone", "status": "stopped",
                                                "pid": 0, "bundle": "/nowhere"}, flags)
    assert "precheckpoint hook sync: exit status 0: sync.sh: synced all filesystems on the host" in messages(flags)
    assert log.read_text().split()[1:3] == ["precheckpoint", "id=gone"]


def test_failing_precheckpoint_hook_leaves_the_container_untouched(make_bundle, containers, tmp_path):
    """The abort happens before runc is called: the container keeps running and counting."""
    d = tmp_path / "hooks.d"
    d.mkdir()
    (d / "deny.json").write_text(json.dumps({
        "version": "1.0.0", "hook": {"path": "/bin/sh", "args": ["sh", "-c", "echo no checkpoints today >&2; exit 1"]},
        "stages": ["precheckpoint"]}))
    b = make_bundle()
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    annotations = {"io.runc-ckpt.hooks": "deny"}
    pol = policy.effective(Config(hooks_dir=str(d)), annotations, {})
    with pytest.raises(RuncCkptError, match=r"precheckpoint hook deny \(.*deny.json\): exit status 1: "
                                            "no checkpoints today"):
        hooks.run_stage("precheckpoint", hooks.select(hooks.load(str(d)), "precheckpoint", annotations,
                                                      pol.hooks), containers.state(cid) or {}, GlobalFlags())
    assert containers.status(cid) == "running"
    now = b.counter()
    wait_for(lambda: b.counter() > now + 2, what="counter to keep going")
