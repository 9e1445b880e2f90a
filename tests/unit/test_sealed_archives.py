"""Encrypted archives (trust.seal around the whole file): restore --import and inspect open them with
--decryption-key or the node's decryption_key; without a key they refuse, naming the key fingerprints,
and nothing is touched."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from runc_ckpt import cli
from runc_ckpt.rootfs import mountinfo
from runc_ckpt.state import tmpfsimages
from runc_ckpt.trust import seal, sealkeys
from tests.hostile import builder
from tests.hostile.harness import make_target, snapshot
from tests.unit.test_restore_badinput import SKIP, _refused


def _sealed(plain, keys, out):
    """`plain` (an archive file) encrypted for the public keys `keys` into `out`."""
    with open(out, "wb") as f:
        w = seal.SealWriter(f, [sealkeys.load_recipient(f"jwe:{k}") for k in keys])
        w.write(plain.read_bytes())
        w.close()
    return out


@pytest.fixture
def t(tmp_path, runc_ckpt_bin):
    return make_target(tmp_path, runc_ckpt_bin)


@pytest.fixture
def sealed(t, seal_keys):
    a = builder.base(str(t.volume), rootfs_diff=builder.tar_bytes([builder.f("secret", b"s3cr3t\n")]))
    plain = builder.write(a, t.tmp / "plain.tar.zst")
    path = _sealed(plain, [seal_keys["rsa"][1], seal_keys["ec"][1]], t.tmp / "archive.tar")
    plain.unlink()
    return path


def _fingerprint(pub):
    return sealkeys.load_recipient(f"jwe:{pub}").fingerprint


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_restore_opens_with_either_key(t, sealed, seal_keys, kind):
    out = t.restore("--import", str(sealed), "--decryption-key", seal_keys[kind][0])
    assert out.returncode == 0, out.stderr
    assert (t.rootfs / "secret").read_bytes() == b"s3cr3t\n"


def test_restore_with_the_node_key(t, sealed, seal_keys):
    with open(t.env["RUNC_CKPT_CONFIG"], "a") as f:
        f.write(f"\ndecryption_key: [{seal_keys['other'][0]}, {seal_keys['rsa'][0]}]\n")
    out = t.restore("--import", str(sealed))
    assert out.returncode == 0, out.stderr
    assert (t.rootfs / "secret").exists()


@pytest.mark.parametrize("key", [None, "other"])
def test_restore_without_the_key_touches_nothing(t, sealed, seal_keys, key):
    before = snapshot(t.tmp, skip=SKIP)
    extra = ("--decryption-key", seal_keys[key][0]) if key else ()
    out = t.restore("--import", str(sealed), *extra)
    _refused(t, out, "is encrypted for")
    assert _fingerprint(seal_keys["rsa"][1]) in out.stderr
    assert snapshot(t.tmp, skip=SKIP) == before


def test_restore_of_a_tampered_archive_applies_nothing(t, sealed, seal_keys):
    raw = bytearray(sealed.read_bytes())
    raw[-100] ^= 1
    sealed.write_bytes(bytes(raw))
    before = snapshot(t.tmp, skip=SKIP)
    out = t.restore("--import", str(sealed), "--decryption-key", seal_keys["rsa"][0])
    _refused(t, out, "modified")
    assert snapshot(t.tmp, skip=SKIP) == before


def test_restore_of_a_truncated_archive_applies_nothing(t, sealed, seal_keys):
    sealed.write_bytes(sealed.read_bytes()[:-40])
    out = t.restore("--import", str(sealed), "--decryption-key", seal_keys["rsa"][0])
    _refused(t, out, "truncated")


def _inspect(runc_ckpt_bin, *args):
    return subprocess.run([runc_ckpt_bin, "inspect", *args], capture_output=True, text=True, check=False)


def test_inspect_shows_the_recipients(sealed, seal_keys, runc_ckpt_bin):
    out = _inspect(runc_ckpt_bin, "--format", "json", "--decryption-key", seal_keys["ec"][0], str(sealed))
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["encrypted_for"] == [_fingerprint(seal_keys["rsa"][1]), _fingerprint(seal_keys["ec"][1])]
    assert info["verified"] is True
    text = _inspect(runc_ckpt_bin, "--decryption-key", seal_keys["rsa"][0], str(sealed))
    assert "Encryption:" in text.stdout and _fingerprint(seal_keys["ec"][1]) in text.stdout


def test_inspect_without_the_key_names_the_fingerprints(sealed, seal_keys, runc_ckpt_bin):
    out = _inspect(runc_ckpt_bin, str(sealed))
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.count("level=error") == 1
    assert "is encrypted for" in out.stderr and _fingerprint(seal_keys["ec"][1]) in out.stderr


def test_a_plain_archive_shows_no_encryption(t, runc_ckpt_bin):
    path = builder.write(builder.base(str(t.volume)), t.tmp / "plain.tar.zst")
    info = json.loads(_inspect(runc_ckpt_bin, "--format", "json", str(path)).stdout)
    assert info["encrypted_for"] == []
    assert os.path.exists(path)


# ---- the decrypted CRIU images stay off the disk: staged on tmpfs, wiped when the call ends

MARKER = b"mk-decrypted-pages-" + os.urandom(8).hex().encode()
# runc restore, faked: where its --image-path really is, and whether the decrypted pages are there.
SEEING_RUNC = """#!/bin/sh
printf '%s\\n' "$*" >> "{log}"
case " $* " in *" state "*) echo "container does not exist" >&2; exit 1 ;; esac
case " $* " in *" restore "*) ;; *) exit 0 ;; esac
while [ $# -gt 0 ]; do [ "$1" = "--image-path" ] && img=$2; shift; done
readlink -f "$img" > "{seen}"
grep -rl "{half}""{rest}" "$img/" >> "{seen}"
exit $(cat "{rc}" 2>/dev/null || echo 0)
"""


def _marked(t, seal_keys, sealed_too: bool = True):
    a = builder.base(str(t.volume))
    a.add("checkpoint/pages-2.img", MARKER * 100)
    plain = builder.write(a, t.tmp / "plain.tar.zst")
    if not sealed_too:
        return plain
    path = _sealed(plain, [seal_keys["ec"][1]], t.tmp / "archive.tar")
    plain.unlink()
    return path


def _seeing(t) -> Path:
    seen = t.tmp / "seen"
    fake = t.tmp / "seeing-runc"
    half = len(MARKER) // 2         # (the script itself does not hold the marker)
    fake.write_text(SEEING_RUNC.format(log=t.runc_log, seen=seen, half=MARKER[:half].decode(),
                                       rest=MARKER[half:].decode(), rc=t.tmp / "restore-rc"))
    fake.chmod(0o755)
    t.env["RUNC_CKPT_RUNC"] = str(fake)
    return seen


def _ours_on_tmpfs() -> set[str]:
    return {n for n in os.listdir(tmpfsimages.TMPFS) if n.startswith(tmpfsimages.PREFIX)}


def _holding(marker: bytes, top: Path) -> list[str]:
    return [str(p) for p in top.rglob("*") if p.is_file() and not p.is_symlink() and marker in p.read_bytes()]


@pytest.mark.parametrize("rc", [0, 1])
def test_an_encrypted_archives_images_are_staged_on_tmpfs_and_wiped_however_runc_ends(t, seal_keys, rc):
    archive = _marked(t, seal_keys)
    seen = _seeing(t)
    t.set_restore_rc(rc)
    before = _ours_on_tmpfs()
    out = t.restore("--import", str(archive), "--decryption-key", seal_keys["ec"][0])
    assert out.returncode == rc, out.stderr
    where, *holding = seen.read_text().splitlines()
    assert where.startswith(f"{tmpfsimages.TMPFS}/{tmpfsimages.PREFIX}"), where
    assert [os.path.basename(h) for h in holding] == ["pages-2.img"]     # decrypted, where runc reads it
    assert not os.path.lexists(where) and _ours_on_tmpfs() <= before
    assert _holding(MARKER, t.tmp) == []
    assert not [n for n in os.listdir(t.bundle) if n.startswith(".runc-ckpt")]


def test_a_plain_archives_images_stay_in_the_import_dir(t, seal_keys):
    """The control: without encryption nothing goes to tmpfs (memory is not spent on what may be on disk)."""
    archive = _marked(t, seal_keys, sealed_too=False)
    seen = _seeing(t)
    out = t.restore("--import", str(archive))
    assert out.returncode == 0, out.stderr
    where = seen.read_text().splitlines()[0]
    assert where.startswith(str(t.bundle) + "/.runc-ckpt-import-"), where


def test_without_a_tmpfs_an_encrypted_restore_is_refused_with_nothing_applied(t, sealed, seal_keys, monkeypatch,
                                                                              capfd):
    monkeypatch.setattr(mountinfo, "find_mount",
                        lambda path, mountinfo_path=None: mountinfo.Mount(path, "ext4", "/dev/sda1"))
    for name in ("RUNC_CKPT_RUNC", "RUNC_CKPT_CONFIG"):
        monkeypatch.setenv(name, t.env[name])
    before = snapshot(t.tmp, skip=SKIP)
    assert cli.main(["--root", str(t.runc_root), "restore", "--import", str(sealed), "--decryption-key",
                     seal_keys["ec"][0], "--bundle", str(t.bundle), "-d", "hostile-test"]) == 1
    err = capfd.readouterr().err
    _refused(t, subprocess.CompletedProcess([], 1, "", err), "is not a tmpfs mount")
    assert snapshot(t.tmp, skip=SKIP) == before
