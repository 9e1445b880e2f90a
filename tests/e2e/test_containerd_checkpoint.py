"""containerd (Debian's 1.6, private daemon) driving runc-ckpt as its runc: checkpoint, restore, continue."""

from __future__ import annotations

import base64
import json
import time

from tests.containerd_env import NAMESPACE, containerd  # noqa: F401
from tests.integration.conftest import wait_for


def wait_counting(env, cid: str, above: int = 3) -> int:
    wait_for(lambda: env.counter(cid) > above, what=f"{cid} to count past {above}")
    return env.counter(cid)


def test_container_runs_with_runc_ckpt_as_its_runc(containerd, runc_ckpt_bin):
    env = containerd
    env.run_counter("c-binary", runc_ckpt_bin)
    wait_counting(env, "c-binary")
    info = json.loads(env.ctr("containers", "info", "c-binary").stdout)
    options = base64.b64decode(info["Runtime"]["Options"]["value"])
    assert runc_ckpt_bin.encode() in options  # runc.v1.Options.BinaryName
    calls = env.runc_calls.read_text().splitlines()
    # containerd's runc shim shape: --root <runc-root>/<namespace> --log <bundle>/log.json --log-format json
    assert any(c.startswith(f"--root {env.runc_root}/{NAMESPACE} --log ") and " create " in c for c in calls), calls


def test_ctr_checkpoint_and_restore_continue_the_process(containerd, runc_ckpt_bin):
    env = containerd
    cid = "c-roundtrip"
    env.run_counter(cid, runc_ckpt_bin)
    at_checkpoint = wait_counting(env, cid)
    env.ctr("containers", "checkpoint", "--task", cid, f"checkpoint/{cid}:1")
    assert env.task_status(cid) == "RUNNING"  # ctr leaves the task running
    calls = env.runc_calls.read_text()
    assert " checkpoint " in calls and "--image-path" in calls and "--work-path" in calls

    env.ctr("tasks", "kill", "-s", "KILL", cid)
    wait_for(lambda: env.task_status(cid) == "STOPPED", what="task to stop")
    env.ctr("tasks", "delete", cid)
    env.ctr("containers", "delete", cid)
    assert env.task_status(cid) is None

    env.ctr("containers", "restore", "--live", cid, f"checkpoint/{cid}:1")
    assert env.task_status(cid) == "RUNNING"
    assert " restore " in env.runc_calls.read_text()
    # The rootfs is fresh from the image (no --rw): /tmp/counter reappears only
    # when the restored process writes it, and a restarted one would write 1.
    wait_for(lambda: (env.rootfs(cid) / "tmp" / "counter").exists() and env.counter(cid) > 0,
             what="restored process to write its counter")
    first = env.counter(cid)
    assert first >= at_checkpoint, (first, at_checkpoint)
    time.sleep(0.5)
    assert env.counter(cid) > first  # and it goes on counting


def test_ctr_task_checkpoint_writes_images_where_asked(containerd, runc_ckpt_bin, tmp_path):
    env = containerd
    cid = "c-imagepath"
    env.run_counter(cid, runc_ckpt_bin)
    wait_counting(env, cid)
    images, work = tmp_path / "images", tmp_path / "work"
    env.ctr("tasks", "checkpoint", "--image-path", str(images), "--work-path", str(work), cid)
    assert (images / "inventory.img").is_file()
    assert (work / "dump.log").is_file()
    assert env.task_status(cid) == "RUNNING"
    line = [c for c in env.runc_calls.read_text().splitlines() if f"--image-path {images}" in c][-1]
    assert f"checkpoint --image-path {images} --work-path {work}" in line and line.endswith(cid)
    now = env.counter(cid)
    wait_for(lambda: env.counter(cid) > now + 2, what="counter to keep going after the checkpoint")
