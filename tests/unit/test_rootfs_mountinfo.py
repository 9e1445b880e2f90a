"""mountinfo parsing: escapes, the top-most mount, overlay layer dirs."""

from __future__ import annotations

from runc_ckpt.archive import scan
from runc_ckpt.rootfs import diff, mountinfo

OVERLAY = ("53 27 0:46 / /run/c/my\\040root rw,relatime shared:1 - overlay overlay "
           "rw,lowerdir=/l/lo\\040w:/l/l\\134:2:/l/x\\054y,upperdir=/s/up\\040per,workdir=/s/wk,uuid=on\n")


def test_overlay_line_with_escapes():
    m = mountinfo.parse_line(OVERLAY)
    assert m is not None
    assert m.mount_point == "/run/c/my root" and m.fstype == "overlay"
    dirs = mountinfo.overlay_dirs(m)
    assert dirs is not None
    assert dirs.upper == "/s/up per"
    assert dirs.lowers == ["/l/lo w", "/l/l:2", "/l/x,y"]


def test_relative_lowerdirs_are_unknown():
    line = "1 2 0:1 / /m rw - overlay overlay rw,lowerdir=l/ABC:l/DEF,upperdir=/s/diff,workdir=/s/work\n"
    dirs = mountinfo.overlay_dirs(mountinfo.parse_line(line))  # type: ignore[arg-type]
    assert dirs is not None and dirs.upper == "/s/diff" and dirs.lowers == []


def test_not_an_overlay_or_readonly_overlay():
    ext4 = mountinfo.parse_line("1 2 8:1 / /m rw - ext4 /dev/sda1 rw\n")
    ro = mountinfo.parse_line("1 2 0:1 / /m ro - overlay overlay ro,lowerdir=/a:/b\n")
    assert mountinfo.overlay_dirs(ext4) is None  # type: ignore[arg-type]
    assert mountinfo.overlay_dirs(ro) is None  # type: ignore[arg-type]


def test_malformed_line_is_ignored():
    assert mountinfo.parse_line("garbage\n") is None
    assert mountinfo.parse_line("1 2 3 4 5 6 7 8 9\n") is None


def test_top_most_mount_wins(tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    info = tmp_path / "mountinfo"
    info.write_text(f"1 0 8:1 / / rw - ext4 /dev/vda rw\n"
                    f"2 1 0:1 / {target} rw - tmpfs tmpfs rw\n"
                    f"3 2 0:2 / {target} rw - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n")
    m = mountinfo.find_mount(str(target), str(info))
    assert m is not None and m.fstype == "overlay"
    assert mountinfo.find_mount(str(tmp_path / "other"), str(info)) is None


def test_overlay_with_missing_upperdir_falls_back_to_full(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_text("f")
    info = tmp_path / "mountinfo"
    info.write_text(f"3 2 0:2 / {root} rw - overlay overlay rw,lowerdir=/l,upperdir={tmp_path}/nope,"
                    f"workdir=/w\n")
    plan = scan.plan_rootfs(diff.locate(str(root), str(info)))
    assert plan.kind == "full" and [e.name for e in plan.tree.entries] == ["f"]
