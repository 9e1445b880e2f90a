"""Pass-through restore --tcp-close on the real stack: CRIU reads our config AND the bundle's org.criu.config."""

from __future__ import annotations

import subprocess

from tests.integration.conftest import runc, wait_for


def test_tcp_close_with_existing_criu_annotation(make_bundle, containers, tmp_path, runc_ckpt_bin):
    b = make_bundle()
    theirs = tmp_path / "theirs.conf"
    theirs.write_text("skip-in-flight\n")
    cfg = b.config()
    cfg["annotations"] = {"org.criu.config": str(theirs)}
    b.write_config(cfg)
    before_cfg = b.config_path.read_text()
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    images = tmp_path / "images"
    runc(containers.root, "checkpoint", "--image-path", str(images), cid)
    before = b.counter()
    work = tmp_path / "work"
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "-d", "--tcp-close",
                          "--no-new-keyring", "--image-path", str(images), "--work-path", str(work),
                          "--bundle", str(b.path), cid], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) == "running"
    wait_for(lambda: b.counter() > before + 2, what="counter to continue")
    log = (work / "restore.log").read_text()
    assert "Parsing config file /run/runc-ckpt/criu-" in log
    assert f"Parsing config file {theirs}" in log
    assert b.config_path.read_text() == before_cfg
    assert theirs.read_text() == "skip-in-flight\n"
