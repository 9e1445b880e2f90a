"""podman with runtime runc-ckpt: the container lifecycle, checkpoint/restore in place and by archive.

podman runs the runtime with only PATH and XDG_RUNTIME_DIR in its
environment and, here, with `--root=DIR` from --runtime-flag, so these tests
also prove the front end works without an active venv and with the
`--flag=value` spelling.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.integration.conftest import wait_for

pytestmark = pytest.mark.e2e


def _runc_ids(env) -> list[str]:
    out = subprocess.run(["runc", "--root", str(env.runc_root), "list", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    return [c["id"] for c in json.loads(out or "null") or []]


def test_run_exec_stop_rm(podman_env):
    name = podman_env.run_counter(volume="e2e-vol")
    info = podman_env.inspect(name)
    assert info["OCIRuntime"] == "runc-ckpt"
    assert info["State"]["Status"] == "running"
    # The container lives in the private runc root podman handed the runtime.
    assert info["Id"] in _runc_ids(podman_env)
    wait_for(lambda: podman_env.counter(name) > 2, what="counter to start")
    out = podman_env.podman("exec", name, "sh", "-c", "echo hello; exit 7", check=False)
    assert (out.returncode, out.stdout) == (7, "hello\n")
    podman_env.podman("stop", "-t", "1", name)
    assert podman_env.inspect(name)["State"]["Status"] == "exited"
    podman_env.podman("rm", name)
    assert podman_env.podman("ps", "-aq").stdout.strip() == ""
    assert info["Id"] not in _runc_ids(podman_env)


def test_runtime_error_reaches_podman_through_json_log(podman_env):
    # runc's create error travels: runc --log-format=json --log FILE -> podman.
    out = podman_env.podman("run", "--name", "bad", "--runtime", "runc-ckpt", podman_env.image,
                            "/no/such/program", check=False)
    assert out.returncode == 127
    assert "/no/such/program" in out.stderr
    assert "no such file or directory" in out.stderr
    assert "Traceback" not in out.stderr


def test_checkpoint_restore_in_place(podman_env):
    name = podman_env.run_counter(volume="inplace-vol")
    wait_for(lambda: podman_env.counter(name) > 3, what="counter to start")
    podman_env.podman("container", "checkpoint", name)
    assert podman_env.inspect(name)["State"]["Status"] == "exited"
    podman_env.podman("container", "restore", name)
    info = podman_env.inspect(name)
    assert info["State"]["Status"] == "running"
    assert info["OCIRuntime"] == "runc-ckpt"
    before = podman_env.counter(name)
    assert before > 3, "the restored process should carry its counter, not start over"
    wait_for(lambda: podman_env.counter(name) > before + 3, what="counter to go on after restore")


def test_export_rm_import_as_new_container_with_volume(podman_env, tmp_path):
    name = podman_env.run_counter(name="orig", volume="counter-vol")
    wait_for(lambda: podman_env.counter(name) > 3, what="counter to start")
    archive = tmp_path / "orig.tar.zst"
    podman_env.podman("container", "checkpoint", "--export", str(archive), "--compress", "zstd", name)
    assert archive.stat().st_size > 0
    at_checkpoint = int((podman_env.volume_dir("counter-vol") / "counter").read_text())
    podman_env.podman("rm", name)
    # podman refuses to restore into an existing named volume: the archive brings it back.
    podman_env.podman("volume", "rm", "counter-vol")
    podman_env.podman("container", "restore", "--import", str(archive), "--name", "copy")
    info = podman_env.inspect("copy")
    assert info["State"]["Status"] == "running"
    assert info["OCIRuntime"] == "runc-ckpt"
    assert [m["Name"] for m in info["Mounts"] if m["Type"] == "volume"] == ["counter-vol"]
    restored = podman_env.counter("copy")
    assert restored >= at_checkpoint
    wait_for(lambda: podman_env.counter("copy") > at_checkpoint + 3, what="counter to go on in the copy")
