"""restore without --import: the engines' argv reaches runc unchanged, minus flags runc 1.1.5 lacks."""

from __future__ import annotations

import subprocess

from tests.hostile.harness import make_target


def _call(t, *argv, env_extra=None):
    env = dict(t.env, **(env_extra or {}))
    return subprocess.run([t.bin, *argv], capture_output=True, text=True, env=env, check=False,
                          stdin=subprocess.DEVNULL)


def _criu_config(t):
    lines = [ln for ln in t.runc_log.read_text().splitlines() if ln.startswith("CRIU_CONFIG_FILE=")]
    return lines[-1].split("=", 1)[1]


def test_podman_conmon_shape(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    argv = ["--log-format=json", "--log", str(tmp_path / "oci-log"), "restore", "--bundle", "/b", "--pid-file",
            "/p", "--no-pivot", "--no-new-keyring", "--detach", "--image-path", "/b/checkpoint", "--work-path",
            "/b", "--tcp-established", "--file-locks", "--tcp-close", "--console-socket", "/s", "ID"]
    out = _call(t, *argv)
    assert out.returncode == 0, out.stderr
    assert t.runc_calls() == [f"--log-format=json --log {tmp_path / 'oci-log'} restore --bundle /b --pid-file /p "
                              f"--no-pivot --detach --image-path /b/checkpoint --work-path /b --tcp-established "
                              f"--file-locks --console-socket /s ID"]
    with open(_criu_config(t)) as f:
        assert f.read() == "tcp-close\n"
    assert not (tmp_path / "oci-log").exists()  # nothing logged: podman reads it as one JSON object


def test_tcp_close_merges_callers_criu_config(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    mine = tmp_path / "mine.conf"
    mine.write_text("skip-in-flight")
    out = _call(t, "restore", "--tcp-close", "--image-path", "/i", "ID", env_extra={"CRIU_CONFIG_FILE": str(mine)})
    assert out.returncode == 0, out.stderr
    with open(_criu_config(t)) as f:
        assert f.read() == "skip-in-flight\ntcp-close\n"
    assert mine.read_text() == "skip-in-flight"


def test_containerd_shape_drops_parent_path(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    argv = ["--root", "/run/containerd/runc/k8s.io", "--log", str(tmp_path / "log.json"), "--log-format", "json",
            "restore", "--image-path", "/c", "--work-path", "/w", "--parent-path", "../pre", "--detach",
            "--pid-file", "/abs/pid", "--no-pivot", "-no-subreaper", "--bundle", "/b", "ID"]
    out = _call(t, *argv)
    assert out.returncode == 0, out.stderr
    assert t.runc_calls() == ["--root /run/containerd/runc/k8s.io --log " + str(tmp_path / "log.json")
                              + " --log-format json restore --image-path /c --work-path /w --detach "
                                "--pid-file /abs/pid --no-pivot -no-subreaper --bundle /b ID"]
    assert _criu_config(t) == ""


def test_crio_shape_unchanged(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    argv = ["--systemd-cgroup", "--root=/r", "restore", "--bundle", "/b", "--pid-file", "/p", "--no-pivot",
            "--detach", "--image-path", "/cp", "--work-path", "/b", "--lsm-profile=selinux:x",
            "--lsm-mount-context=y", "ID"]
    out = _call(t, *argv)
    assert out.returncode == 0, out.stderr
    assert t.runc_calls() == [" ".join(argv)]


def test_debug_line_for_dropped_flags(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    out = _call(t, "--debug", "restore", "--no-new-keyring", "ID")
    assert out.returncode == 0
    assert "not passing --no-new-keyring" in out.stderr


def test_podman_probe_and_help(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    out = _call(t, "restore", "--help")
    assert out.returncode == 0 and "--import value" in out.stdout and "--tcp-close" in out.stdout
    assert out.stdout.startswith("NAME:\n   runc restore - restore a container from a previous checkpoint\n")
    assert t.runc_calls() == []
    # A usage error in runc's own flags is runc's to report ("flag needs an argument"), so it
    # gets the call unchanged; see the integration parity tests for the real runc's answer.
    _call(t, "restore", "--lsm-mount-context")
    assert t.runc_calls() == ["restore --lsm-mount-context"]


def test_unknown_flags_reach_runc_in_place(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    out = _call(t, "restore", "--newer", "v", "--tcp-close", "-d", "ID", "--bogus")
    assert out.returncode == 0, out.stderr
    assert t.runc_calls() == ["restore --newer v -d ID --bogus"]


def test_import_only_flags_need_import(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    for flags in (["--import-previous", "/x"], ["-k"], ["--print-stats"], ["--name", "x"], ["--ignore-volumes"]):
        out = _call(t, "restore", *flags, "ID")
        assert out.returncode == 1 and "needs --import" in out.stderr, out.stderr
    assert t.runc_calls() == []


def test_plain_restore_finds_state_dir_images_only_where_runc_would_fail(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    state = tmp_path / "state"
    cfg = tmp_path / "runc-ckpt.yaml"
    cfg.write_text(cfg.read_text() + f"state_dir: {state}\n")
    images = state / "ID" / "checkpoint"
    images.mkdir(parents=True)
    (images / "descriptors.json").write_text("[]")
    work = tmp_path / "cwd"
    work.mkdir()

    def call(*argv):
        return subprocess.run([t.bin, *argv], capture_output=True, text=True, env=t.env, check=False,
                              stdin=subprocess.DEVNULL, cwd=work)
    assert call("restore", "-d", "ID").returncode == 0
    assert call("restore", "-d", "OTHER").returncode == 0            # no state-dir checkpoint: runc's default
    assert call("restore", "-d", "--image-path", "x", "ID").returncode == 0   # the caller's path wins
    (work / "checkpoint").mkdir()
    (work / "checkpoint" / "descriptors.json").write_text("[]")
    assert call("restore", "-d", "ID").returncode == 0               # ./checkpoint holds one: runc's default
    assert t.runc_calls() == [f"restore --image-path {images} -d ID", "restore -d OTHER",
                              "restore -d --image-path x ID", "restore -d ID"]
