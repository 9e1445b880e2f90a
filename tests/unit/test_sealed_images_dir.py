"""trust.sealeddir (node-level encryption of an engine's images dir) and the plain restore that opens it.

The dir holds NAME.sealed for every image file and the listing; the listing is untrusted (plain names
only), every file opens only with a recipient's key, and a plain `restore --image-path DIR` hands runc a
tmpfs copy, wiped after runc, or refuses with one line and touches nothing.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from runc_ckpt.base import goflags
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.trust import sealeddir, sealkeys
from tests.hostile.harness import make_target


def _images(tmp_path):
    src = tmp_path / "tmpfs-images"
    src.mkdir()
    (src / "pages-1.img").write_bytes(os.urandom(200_000))
    (src / "inventory.img").write_bytes(b"inv")
    (src / "descriptors.json").write_text("[]")
    return src


def test_round_trip_with_the_key(tmp_path, seal_keys):
    src = _images(tmp_path)
    dst = tmp_path / "checkpoint"
    sealeddir.seal_into(str(src), str(dst), [sealkeys.load_recipient(f"jwe:{seal_keys['ec'][1]}")])
    # inventory.img stays in the clear: podman checks for it; it holds no process data.
    assert sorted(os.listdir(dst)) == ["descriptors.json.sealed", "inventory.img", "pages-1.img.sealed",
                                       sealeddir.LISTING]
    assert (src / "pages-1.img").read_bytes()[:4096] not in (dst / "pages-1.img.sealed").read_bytes()
    out = tmp_path / "opened"
    out.mkdir()
    sealeddir.open_into(str(dst), str(out), [sealkeys.load_private(seal_keys["ec"][0])])
    for name in os.listdir(src):
        assert (out / name).read_bytes() == (src / name).read_bytes()


def test_the_wrong_key_opens_nothing(tmp_path, seal_keys):
    dst = tmp_path / "checkpoint"
    sealeddir.seal_into(str(_images(tmp_path)), str(dst), [sealkeys.load_recipient(f"jwe:{seal_keys['ec'][1]}")])
    with pytest.raises(RuncCkptError, match="no decryption key given opens it"):
        sealeddir.open_into(str(dst), str(tmp_path), [sealkeys.load_private(seal_keys["other"][0])])


@pytest.mark.parametrize("names", [["../etc/passwd"], ["a/b"], [".."], [""], [7], "x"])
def test_a_listing_with_anything_but_plain_names_is_refused(tmp_path, names):
    (tmp_path / sealeddir.LISTING).write_text(json.dumps({"format": sealeddir.FORMAT, "version": 1,
                                                          "files": names}))
    with pytest.raises(RuncCkptError):
        sealeddir.listed(str(tmp_path))


def test_a_parent_link_is_not_sealed(tmp_path, seal_keys):
    src = _images(tmp_path)
    os.symlink("../pre-checkpoint", src / "parent")
    with pytest.raises(RuncCkptError, match="only a dump without a parent"):
        sealeddir.seal_into(str(src), str(tmp_path / "d"), [sealkeys.load_recipient(f"jwe:{seal_keys['ec'][1]}")])


@pytest.mark.parametrize("argv, want", [
    (["--image-path", "/a", "--work-path", "/w", "ID"], ["--image-path", "/t", "--work-path", "/w", "ID"]),
    (["-image-path=/a", "ID"], ["-image-path=/t", "ID"]),
    (["--work-path", "/w", "--", "--image-path", "x"], ["--work-path", "/w", "--", "--image-path", "x"]),
])
def test_with_value_points_one_flag_elsewhere(argv, want):
    assert goflags.with_value(argv, "image-path", "/t") == want


def _sealed_target(tmp_path, runc_ckpt_bin, seal_keys, decrypt: bool):
    t = make_target(tmp_path, runc_ckpt_bin)
    cfg = t.env["RUNC_CKPT_CONFIG"]
    with open(cfg, "a") as f:
        f.write(f"decryption_key: [{seal_keys['ec'][0]}]\n" if decrypt else "")
    images = tmp_path / "sealed"
    sealeddir.seal_into(str(_images(tmp_path)), str(images), [sealkeys.load_recipient(f"jwe:{seal_keys['ec'][1]}")])
    return t, images


def _ours_on_tmpfs() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if n.startswith("runc-ckpt-images-")}


def test_a_plain_restore_gives_runc_a_tmpfs_copy_and_wipes_it(tmp_path, runc_ckpt_bin, seal_keys):
    t, images = _sealed_target(tmp_path, runc_ckpt_bin, seal_keys, decrypt=True)
    before = _ours_on_tmpfs()
    out = subprocess.run([t.bin, "restore", "-d", "--image-path", str(images), "--bundle", str(t.bundle), "ctr-s"],
                         capture_output=True, text=True, env=t.env, check=False, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    (call,) = t.runc_calls()
    words = call.split()
    given = words[words.index("--image-path") + 1]
    assert given.startswith("/dev/shm/runc-ckpt-images-") and given.endswith("/checkpoint")
    assert not os.path.exists(os.path.dirname(given)) and _ours_on_tmpfs() <= before


def test_a_plain_restore_without_the_key_is_one_line_and_touches_nothing(tmp_path, runc_ckpt_bin, seal_keys):
    t, images = _sealed_target(tmp_path, runc_ckpt_bin, seal_keys, decrypt=False)
    before = _ours_on_tmpfs()
    listing = sorted(os.listdir(images))
    out = subprocess.run([t.bin, "restore", "-d", "--image-path", str(images), "--bundle", str(t.bundle), "ctr-s"],
                         capture_output=True, text=True, env=t.env, check=False, stdin=subprocess.DEVNULL)
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1 and "is encrypted" in out.stderr
    assert "names no decryption_key" in out.stderr
    assert t.runc_calls() == [] and sorted(os.listdir(images)) == listing and _ours_on_tmpfs() <= before
