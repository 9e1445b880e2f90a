"""The rootfs pre-pass on an upperdir-shaped tree: whiteouts, opaque dirs, skip list, xattrs.

No overlay is mounted here: an upperdir is just a directory with whiteouts
(char device 0:0, needs root for mknod) and opaque markers (user.overlay.opaque,
the userxattr spelling, settable without privileges).
"""

from __future__ import annotations

import os
from pathlib import Path

from runc_ckpt.archive.scan import Scanner, plan_rootfs
from runc_ckpt.rootfs import diff
from runc_ckpt.rootfs.diff import SKIP


def whiteout(path: Path) -> None:
    os.mknod(path, 0o600 | 0o020000, os.makedev(0, 0))


def scan_upper(upper: Path, lowers: list[Path] | None) -> Scanner:
    s = Scanner(SKIP, lowers=[str(p) for p in lowers] if lowers is not None else [], merged=None)
    s.walk(str(upper), overlay=True)
    return s


def names(s: Scanner) -> set[str]:
    return {e.name.rstrip("/") for e in s.entries}


def test_whiteouts_become_deleted_files(tmp_path):
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    whiteout(upper / "etc" / "lower-file")
    whiteout(upper / "gone-dir")
    (upper / "etc" / "new").write_text("n")
    s = scan_upper(upper, [])
    assert sorted(s.deleted) == ["/etc/lower-file", "/gone-dir"]
    assert names(s) == {"etc", "etc/new"}


def test_opaque_dir_lists_hidden_lower_entries(tmp_path):
    lower1, lower2, upper = tmp_path / "l1", tmp_path / "l2", tmp_path / "upper"
    for d in (lower1 / "opt" / "app" / "sub", lower2 / "opt" / "app" / "keep", upper / "opt" / "app" / "sub"):
        d.mkdir(parents=True)
    (lower1 / "opt" / "app" / "old.conf").write_text("o")
    (lower1 / "opt" / "app" / "sub" / "stale").write_text("s")
    (lower2 / "opt" / "app" / "from-l2").write_text("2")
    (lower2 / "opt" / "app" / "keep" / "x").write_text("x")
    (upper / "opt" / "app" / "new.conf").write_text("n")
    (upper / "opt" / "app" / "sub" / "fresh").write_text("f")
    os.setxattr(upper / "opt" / "app", "user.overlay.opaque", b"y")
    s = scan_upper(upper, [lower1, lower2])
    # Every lower entry the opaque dir hides, recursing into dirs present on both sides.
    assert sorted(s.deleted) == ["/opt/app/from-l2", "/opt/app/keep", "/opt/app/old.conf",
                                 "/opt/app/sub/stale"]
    assert {"opt/app", "opt/app/new.conf", "opt/app/sub", "opt/app/sub/fresh"} <= names(s)
    app = next(e for e in s.entries if e.name == "opt/app/")
    assert app.xattrs is None                      # overlay's own xattrs are never archived


def test_opaque_dir_without_known_lowers_is_listed_itself(tmp_path):
    upper = tmp_path / "upper"
    (upper / "var" / "cache").mkdir(parents=True)
    (upper / "var" / "cache" / "f").write_text("f")
    os.setxattr(upper / "var" / "cache", "user.overlay.opaque", b"y")
    s = scan_upper(upper, [])
    assert s.deleted == ["/var/cache"]
    assert "var/cache/f" in names(s)


def test_not_opaque_when_marker_is_not_y(tmp_path):
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    os.setxattr(upper / "d", "user.overlay.opaque", b"n")
    assert scan_upper(upper, [tmp_path]).deleted == []


def test_skip_list(tmp_path):
    upper = tmp_path / "upper"
    for d in ("dev", "run/secrets", "sys", "proc", "etc", "devices", "running"):
        (upper / d).mkdir(parents=True)
    for f in ("dev/null-ish", "run/secrets/s", "etc/hosts", "etc/resolv.conf", "etc/mtab", "etc/hostname",
              "devices/x", "running/y"):
        (upper / f).write_text("x")
    whiteout(upper / "run" / "gone")
    whiteout(upper / "etc" / "hosts.allow")
    s = scan_upper(upper, [])
    assert names(s) == {"etc", "etc/hostname", "devices", "devices/x", "running", "running/y"}
    assert s.deleted == ["/etc/hosts.allow"]


def test_xattr_whiteout_file(tmp_path):
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "w").write_bytes(b"")
    os.setxattr(upper / "w", "user.overlay.whiteout", b"")
    s = scan_upper(upper, [])
    assert s.deleted == ["/w"] and names(s) == set()


def test_user_xattrs_kept_overlay_xattrs_dropped(tmp_path):
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "f").write_text("x")
    os.setxattr(upper / "f", "user.keep", b"1")
    os.setxattr(upper / "f", "user.overlay.origin", b"junk")
    os.setxattr(upper / "f", "trusted.overlay.origin", b"junk")
    (e,) = scan_upper(upper, []).entries
    assert e.xattrs == {"user.keep": b"1"}


def test_directory_entry_precedes_children(tmp_path):
    root = tmp_path / "r"
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "b" / "c" / "f").write_text("f")
    (root / "z").write_text("z")
    s = Scanner()
    s.walk(str(root))
    order = [e.name for e in s.entries]
    for child, parent in (("a/b/", "a/"), ("a/b/c/", "a/b/"), ("a/b/c/f", "a/b/c/")):
        assert order.index(parent) < order.index(child)


def test_plain_directory_rootfs_is_full_with_skip_list(tmp_path):
    root = tmp_path / "rootfs"
    for d in ("bin", "proc", "etc"):
        (root / d).mkdir(parents=True)
    (root / "bin" / "sh").write_text("sh")
    (root / "proc" / "x").write_text("x")
    (root / "etc" / "resolv.conf").write_text("nameserver")
    os.chmod(root, 0o555)
    plan = plan_rootfs(diff.locate(str(root)))
    assert plan.kind == "full" and plan.root_mode == 0o555 and plan.deleted == []
    assert {e.name for e in plan.tree.entries} == {"bin/", "bin/sh", "etc/"}
