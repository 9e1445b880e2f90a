"""Hooks around real `runc-ckpt checkpoint` and `restore` calls (bare engine shapes).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.integration.conftest import Bundle, Containers, wait_for
from tests.integration.policy_helpers import Stack, make_stack, start, still_running


@pytest.fixture
def stack(runc_ckpt_bin: str, containers: Containers, tmp_path: Path) -> Stack:
    s = make_stack(runc_ckpt_bin, containers.root, tmp_path / "stack")
    (tmp_path / "hooks.d").mkdir()
    s.config.write_text(f"hooks_dir: {tmp_path / 'hooks.d'}\nhook_timeout: 10\n")
    return s


def add_hook(tmp_path: Path, name: str, body: str, stages: list[str], when: dict | None = None,
             timeout: float | None = None) -> Path:
    script = tmp_path / "hooks.d" / f"{name}.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    hook: dict = {"path": str(script)}
    if timeout:
        hook["timeout"] = timeout
    definition = {"version": "1.0.0", "hook": hook, "stages": stages,
                  "when": {"always": True} if when is None else when}
    (tmp_path / "hooks.d" / f"{name}.json").write_text(json.dumps(definition))
    return script


def add_notify(tmp_path: Path) -> Path:
    log = tmp_path / "events.log"
    notify = yaml.safe_load((REPO / "hooks" / "examples" / "notify.yaml").read_text())
    notify["hook"]["path"] = str(REPO / "hooks" / "examples" / "notify.py")
    notify["hook"]["env"] = ["PATH=/usr/local/bin:/usr/bin:/bin", f"NOTIFY_LOG={log}"]
    (tmp_path / "hooks.d" / "notify.yaml").write_text(yaml.safe_dump(notify))
    return log


def checkpoint(stack: Stack, tmp_path: Path, cid: str) -> tuple[object, Path]:
    d = tmp_path / "ckpt"
    d.mkdir(exist_ok=True)
    out = stack.run("checkpoint", "--image-path", f"{d}/checkpoint", "--work-path", str(d), cid)
    return out, d / "checkpoint"


def restore(stack: Stack, b: Bundle, images: Path, cid: str, tmp_path: Path):
    return stack.run("restore", "--bundle", str(b.path), "--pid-file", str(tmp_path / "pid"), "--detach",
                     "--image-path", str(images), "--work-path", str(b.path), cid)


def test_hooks_run_at_every_stage(make_bundle, containers, stack, tmp_path):
    log = add_notify(tmp_path)
    b, cid = start(make_bundle, containers)
    out, images = checkpoint(stack, tmp_path, cid)
    assert out.returncode == 0, out.stderr
    out = restore(stack, b, images, cid, tmp_path)
    assert out.returncode == 0, out.stderr
    lines = log.read_text().splitlines() if log.exists() else []
    assert [line.split()[1] for line in lines] == ["precheckpoint", "postcheckpoint", "prerestore",
                                                   "postrestore"]
    assert all(f" id={cid} " in line for line in lines)
    assert " status=running " in lines[0] and " status=running " in lines[3]


def test_failing_precheckpoint_hook_aborts_before_runc(make_bundle, containers, stack, tmp_path):
    add_hook(tmp_path, "deny", "echo not now >&2; exit 2\n", ["precheckpoint"])
    b, cid = start(make_bundle, containers)
    out, images = checkpoint(stack, tmp_path, cid)
    assert out.returncode == 1
    assert "precheckpoint hook deny" in out.stderr and "not now" in out.stderr
    assert stack.runc_calls("checkpoint") == []
    still_running(containers, b, cid)


def test_timed_out_precheckpoint_hook_is_killed_with_its_group(make_bundle, containers, stack, tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    add_hook(tmp_path, "slow", f"sleep 60 & echo $! > {pidfile}; sleep 60\n", ["precheckpoint"], timeout=1)
    b, cid = start(make_bundle, containers)
    began = time.monotonic()
    out, images = checkpoint(stack, tmp_path, cid)
    assert out.returncode == 1
    assert "precheckpoint hook slow" in out.stderr and "timed out after 1s" in out.stderr
    assert time.monotonic() - began < 10
    grandchild = int(pidfile.read_text())
    wait_for(lambda: not Path(f"/proc/{grandchild}").exists() or
             Path(f"/proc/{grandchild}/stat").read_text().split(")")[-1].split()[0] == "Z",
             what="the hook's grandchild to be killed")
    assert stack.runc_calls("checkpoint") == []
    still_running(containers, b, cid)


def test_failing_postcheckpoint_hook_only_warns(make_bundle, containers, stack, tmp_path):
    marker = tmp_path / "ran"
    add_hook(tmp_path, "after", f"touch {marker}; exit 5\n", ["postcheckpoint"])
    b, cid = start(make_bundle, containers)
    out, images = checkpoint(stack, tmp_path, cid)
    assert out.returncode == 0, out.stderr
    assert (images / "inventory.img").is_file()
    assert marker.exists()
    assert "level=warning" in out.stderr and "postcheckpoint hook after" in out.stderr


def test_failing_prerestore_hook_aborts_the_restore(make_bundle, containers, stack, tmp_path):
    b, cid = start(make_bundle, containers)
    out, images = checkpoint(stack, tmp_path, cid)
    assert out.returncode == 0, out.stderr
    add_hook(tmp_path, "gate", "echo closed >&2; exit 1\n", ["prerestore"])
    out = restore(stack, b, images, cid, tmp_path)
    assert out.returncode == 1
    assert "prerestore hook gate" in out.stderr and "closed" in out.stderr
    assert stack.runc_calls("restore") == []
    assert containers.status(cid) is None
    (tmp_path / "hooks.d" / "gate.json").unlink()
    out = restore(stack, b, images, cid, tmp_path)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) == "running"


def test_failing_postrestore_hook_only_warns(make_bundle, containers, stack, tmp_path):
    b, cid = start(make_bundle, containers)
    out, images = checkpoint(stack, tmp_path, cid)
    assert out.returncode == 0, out.stderr
    marker = tmp_path / "ran"
    add_hook(tmp_path, "after", f"touch {marker}; exit 9\n", ["postrestore"])
    out = restore(stack, b, images, cid, tmp_path)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) == "running"
    assert marker.exists()
    assert "postrestore hook after" in out.stderr


def test_hooks_annotation_enables_a_named_hook(make_bundle, containers, stack, tmp_path):
    marker = tmp_path / "named"
    add_hook(tmp_path, "named", f"cat > {marker}\n", ["precheckpoint"], when={})
    b, cid = start(make_bundle, containers)
    out, _ = checkpoint(stack, tmp_path, cid)
    assert out.returncode == 0, out.stderr
    assert not marker.exists()  # no `when`: only for containers that name it
    b2, cid2 = start(make_bundle, containers, {"io.runc-ckpt.hooks": "named"})
    out = stack.run("checkpoint", "--leave-running", "--image-path", str(tmp_path / "i2"), cid2)
    assert out.returncode == 0, out.stderr
    assert marker.exists()
    assert json.loads(marker.read_text())["id"] == cid2


def test_unknown_hook_in_annotation_fails_naming_it(make_bundle, containers, stack, tmp_path):
    b, cid = start(make_bundle, containers, {"io.runc-ckpt.hooks": "nosuchhook"})
    out, _ = checkpoint(stack, tmp_path, cid)
    assert out.returncode == 1
    assert "io.runc-ckpt.hooks" in out.stderr and "nosuchhook" in out.stderr
    still_running(containers, b, cid)


def test_invalid_hook_file_fails_naming_file_and_key(make_bundle, containers, stack, tmp_path):
    bad = tmp_path / "hooks.d" / "bad.json"
    bad.write_text(json.dumps({"version": "1.0.0", "hook": {"path": "relative.sh"}, "stages": ["precheckpoint"]}))
    b, cid = start(make_bundle, containers)
    out, _ = checkpoint(stack, tmp_path, cid)
    assert out.returncode == 1
    assert f"hook file {bad}: hook/path: " in out.stderr, out.stderr
    still_running(containers, b, cid)


def test_restore_import_runs_hooks_and_a_failing_prerestore_leaves_the_bundle_alone(make_bundle, containers,
                                                                                     stack, tmp_path):
    b, cid = start(make_bundle, containers)
    archive = tmp_path / "c.tar.zst"
    out = stack.run("checkpoint", "--export", str(archive), cid)
    assert out.returncode == 0, out.stderr
    log = add_notify(tmp_path)
    add_hook(tmp_path, "gate", "echo closed >&2; exit 1\n", ["prerestore"])
    target = make_bundle(name="target")
    containers.ids.append("copy")  # torn down even if a restore wrongly succeeds
    out = stack.run("restore", "--import", str(archive), "--bundle", str(target.path), "--detach", "copy")
    assert out.returncode == 1
    assert "prerestore hook gate" in out.stderr
    assert not (target.rootfs / "counter").exists()  # the rootfs diff was not applied
    assert containers.status("copy") is None
    (tmp_path / "hooks.d" / "gate.json").unlink()
    out = stack.run("restore", "--import", str(archive), "--bundle", str(target.path), "--detach", "copy")
    assert out.returncode == 0, out.stderr
    assert containers.status("copy") == "running"
    stages = [line.split()[1] for line in log.read_text().splitlines()]
    # Hooks run in name order: "gate" failed before "notify" could run the first time.
    assert stages == ["prerestore", "postrestore"]
