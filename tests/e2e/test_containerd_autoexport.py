"""Auto-export under containerd: a bare `ctr tasks checkpoint` also leaves an archive in export_dir.

containerd knows nothing of archives: it calls `runc checkpoint --image-path
P --work-path W ... ID` through its shim. With export_dir set in runc-ckpt.yaml
(or by the io.runc-ckpt.export-dir annotation) runc-ckpt must still give
containerd exactly runc's images, and also write <id>-<stamp>.tar.zst into
export_dir, keeping the newest `retention` ones. That archive must then
restore with `runc-ckpt restore --import` on a plain runc bundle, outside
containerd.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.containerd_env import containerd  # noqa: F401
from tests.integration.conftest import busybox_lower, containers, make_bundle, runc_root, wait_for  # noqa: F401

ARCHIVE = r"-[0-9]{8}T[0-9]{6}\.[0-9]{6}Z\.tar\.zst"


def archives(export_dir: Path, cid: str) -> list[Path]:
    pattern = re.compile(re.escape(cid) + ARCHIVE + r"\Z")
    return sorted(p for p in export_dir.iterdir() if pattern.match(p.name)) if export_dir.is_dir() else []


def test_bare_containerd_checkpoints_are_exported_pruned_and_restorable(containerd, runc_ckpt_bin, tmp_path,
                                                                         make_bundle, containers):
    env = containerd
    export_dir = env.base / "exports"
    env.config.write_text(f"export_dir: {export_dir}\nretention: 2\n")
    cid = "c-auto"
    env.run_counter(cid, runc_ckpt_bin)
    wait_for(lambda: env.counter(cid) > 3, what="counter to start")

    for i in range(3):
        images, work = tmp_path / f"images-{i}", tmp_path / f"work-{i}"
        env.ctr("tasks", "checkpoint", "--image-path", str(images), "--work-path", str(work), cid)
        # The caller still gets exactly what runc produces.
        assert (images / "inventory.img").is_file()
        assert env.task_status(cid) == "RUNNING"

        assert len(archives(export_dir, cid)) == min(i + 1, 2), sorted(p.name for p in export_dir.glob("*")) \
            if export_dir.is_dir() else "export_dir was never created"
    at_last_checkpoint = env.counter(cid)
    kept = archives(export_dir, cid)
    assert [p.stat().st_mode & 0o777 for p in kept] == [0o600, 0o600]
    # Nothing else was left in export_dir (no temp files of the atomic write).
    assert sorted(export_dir.iterdir()) == kept

    # The newest archive restores on a plain runc bundle, outside containerd.
    # Its spec keeps containerd's cgroupsPath: stop the original first so the
    # two never share a cgroup.
    env.remove_container(cid)
    b = make_bundle(name="plain")
    b.config_path.unlink()  # the spec comes from the archive
    new_id = "from-containerd"
    containers.ids.append(new_id)
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "--import", str(kept[-1]),
                          "--bundle", str(b.path), "--detach", new_id], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=120)
    assert out.returncode == 0, out.stderr
    assert containers.status(new_id) == "running"
    counter = b.rootfs / "tmp" / "counter"
    wait_for(lambda: counter.read_text().strip() not in ("", str(at_last_checkpoint)) and
             int(counter.read_text()) > 0, what="restored counter to move")
    # The first checkpoint was taken before at_last_checkpoint; a restart would count from 1.
    assert int(counter.read_text()) > 3


def test_annotation_export_dir_applies_to_one_container(containerd, runc_ckpt_bin, tmp_path):
    env = containerd
    root = env.base / "exports-allowed"
    env.config.write_text(f"export_roots: [{root}]\n")
    env.run_counter("c-ann", runc_ckpt_bin, annotations={"io.runc-ckpt.export-dir": f"{root}/team-a",
                                                         "io.runc-ckpt.compress": "gzip"})
    env.run_counter("c-plain", runc_ckpt_bin)
    wait_for(lambda: env.counter("c-ann") > 3 and env.counter("c-plain") > 3, what="counters to start")
    for cid in ("c-ann", "c-plain"):
        env.ctr("tasks", "checkpoint", "--image-path", str(tmp_path / cid), cid)
        assert (tmp_path / cid / "inventory.img").is_file()

    names = [p.name for p in (root / "team-a").iterdir()] if (root / "team-a").is_dir() else []
    assert len(names) == 1 and re.fullmatch(r"c-ann-[0-9]{8}T[0-9]{6}\.[0-9]{6}Z\.tar\.gz", names[0]), names
    assert not any(p.name.startswith("c-plain") for p in root.rglob("*"))


def test_bad_annotation_fails_the_checkpoint_naming_it(containerd, runc_ckpt_bin, tmp_path):
    env = containerd
    env.run_counter("c-bad", runc_ckpt_bin, annotations={"io.runc-ckpt.file-locks": "maybe"})
    wait_for(lambda: env.counter("c-bad") > 3, what="counter to start")
    out = env.ctr("tasks", "checkpoint", "--image-path", str(tmp_path / "img"), "c-bad", check=False)

    assert out.returncode != 0
    assert "annotation io.runc-ckpt.file-locks" in out.stderr, out.stderr
    assert env.task_status("c-bad") == "RUNNING"
    now = env.counter("c-bad")
    wait_for(lambda: env.counter("c-bad") > now + 2, what="container to keep running")
