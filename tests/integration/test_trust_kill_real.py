"""kill -9 (runc-ckpt alone, or its whole process tree) while a checkpoint is signed or encrypted, and
signed/encrypted checkpoints at the same time, with the real runc and CRIU.

Fault points (runtime/faults.py): `seal` (an encrypted archive has its first record written), `sign`
(the manifest is written, its signature not yet), `images-sig` (an images dir has its manifest, its
signature not yet). After a kill: nothing half-written at the target path, the engine's protocol
(treekill_helpers: retry, then the one command an error names) brings the container back or it runs,
a signed, encrypted archive then restores under a policy trusting the key, and nothing is left over.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from runc_ckpt.runtime import atomicfile
from runc_ckpt.trust import imagesdir
from tests.integration.test_reliability_real import at_once
from tests.integration.test_tree_kill_real import cleanup, cycle_checkpoint, host_a, start  # host_a: a fixture
from tests.integration.test_trust_real import _keys, _trusting
from tests.integration.treekill_helpers import (
    assert_nothing_left,
    assert_runs_once_and_counts_on,
    counter,
    settle_time,
)

__all__ = ["host_a"]


def _flags(keydir) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(signing flags, encryption flags, restore flags: a policy trusting the key and the decryption key)."""
    policy = _trusting(keydir / "policy.json", keydir)
    return (("--sign-by-sigstore-private-key", str(keydir / "signing.key"), "--sign-passphrase-file",
             str(keydir / "pass")),
            ("--encryption-key", f"jwe:{keydir / 'encryption.pub'}"),
            ("--signature-policy", str(policy), "--decryption-key", str(keydir / "encryption.key")))


@pytest.mark.parametrize("fault", ["seal:kill", "seal:killtree", "sign:kill", "sign:killtree"])
def test_kill_while_an_export_is_sealed_or_signed(host_a, make_bundle, tmp_path, runc_ckpt_bin, fault):
    sign, encrypt, restore = _flags(_keys(runc_ckpt_bin, tmp_path / "keys"))
    b = make_bundle(name="web")
    cid = start(host_a, b)
    try:
        killed, _ = cycle_checkpoint(host_a, b, cid, fault, tmp_path / "A.tar.zst", sign + encrypt, restore)
        assert killed, "the fault did not fire"
        assert_nothing_left([(host_a, b)], cid, tmp_path)
    finally:
        cleanup([(host_a, b)], cid)


@pytest.mark.parametrize("fault", ["seal:killtree", "sign:kill"])
def test_kill_while_a_leave_running_export_is_sealed_or_signed(host_a, make_bundle, tmp_path, runc_ckpt_bin,
                                                                fault):
    """checkpoint --leave-running: after the kill the container runs on (never left frozen), unowned."""
    sign, encrypt, restore = _flags(_keys(runc_ckpt_bin, tmp_path / "keys"))
    b = make_bundle(name="web")
    cid = start(host_a, b)
    archive = tmp_path / "A.tar.zst"
    try:
        out = host_a.call("checkpoint", "--leave-running", "--export", str(archive), *sign, *encrypt, cid,
                          fault=fault)
        assert out.returncode == -9, out.stderr
        assert not os.path.lexists(archive)
        settle_time()
        assert_runs_once_and_counts_on([(host_a, b)], cid, counter(b))
        # The next call on the container settles what the killed one left (its intent), then works.
        retry = host_a.call("checkpoint", "--leave-running", "--export", str(archive), *sign, *encrypt, cid)
        assert retry.returncode == 0, retry.stderr
        assert_runs_once_and_counts_on([(host_a, b)], cid, counter(b))
        assert_nothing_left([(host_a, b)], cid, tmp_path)
        info = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", *restore, str(archive)],
                              capture_output=True, text=True, env=host_a.env, check=False)
        assert info.returncode == 0, info.stderr
        assert json.loads(info.stdout)["trust"]["accepted"] is True
    finally:
        cleanup([(host_a, b)], cid)


@pytest.mark.parametrize("fault", ["images-sig:kill", "images-sig:killtree"])
def test_kill_while_an_images_dir_is_signed(host_a, make_bundle, tmp_path, runc_ckpt_bin, fault):
    keydir = _keys(runc_ckpt_bin, tmp_path / "keys")
    with open(host_a.cwd / "runc-ckpt.yaml", "a") as cfg:     # a node key: plain checkpoints sign their images
        cfg.write(f"sign_by_sigstore_private_key: {keydir / 'signing.key'}\n"
                  f"sign_passphrase_file: {keydir / 'pass'}\n")
    b = make_bundle(name="web")
    cid = start(host_a, b)
    images = tmp_path / "images"
    try:
        seen = counter(b)
        out = host_a.call("checkpoint", "--image-path", str(images), cid, fault=fault)
        assert out.returncode == -9, out.stderr
        names = os.listdir(images)
        assert imagesdir.SIGNATURE not in names and not [n for n in names if atomicfile.is_temp(n)], names
        settle_time()
        # The engine's retry: runc's own answer (the checkpoint took the container down before the kill).
        retry = host_a.call("checkpoint", "--image-path", str(images), cid)
        assert retry.returncode != 0 and "container does not exist" in retry.stderr, retry.stderr
        # Never passed off as signed: a policy requiring the key refuses the unsigned dir, nothing changed.
        policy = _trusting(tmp_path / "policy.json", keydir)
        restore = ("restore", "--image-path", str(images), "--bundle", str(b.path), "-d", cid)
        refused = host_a.call(*restore, "--signature-policy", str(policy))
        assert refused.returncode != 0 and "is not signed" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and host_a.status(cid) is None
        # Restorable as an unsigned checkpoint, where the admin accepts one.
        ok = host_a.call(*restore)
        assert ok.returncode == 0, ok.stderr
        assert_runs_once_and_counts_on([(host_a, b)], cid, seen)
        assert_nothing_left([(host_a, b)], cid, tmp_path)
    finally:
        cleanup([(host_a, b)], cid)


def test_two_containers_signed_and_sealed_at_once(host_a, make_bundle, tmp_path, runc_ckpt_bin):
    sign, encrypt, restore = _flags(_keys(runc_ckpt_bin, tmp_path / "keys"))
    pairs = [(make_bundle(name=n), tmp_path / f"{n}.tar.zst") for n in ("one", "two")]
    cids = [start(host_a, b) for b, _ in pairs]
    try:
        seen = [counter(b) for b, _ in pairs]
        results = at_once(*(lambda cid=cid, a=a: host_a.call("checkpoint", "--export", str(a), *sign, *encrypt, cid)
                            for cid, (_, a) in zip(cids, pairs)))
        assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
        for cid, (b, a), n in zip(cids, pairs, seen):
            r = host_a.call("restore", "--import", str(a), *restore, "--bundle", str(b.path), "-d", cid)
            assert r.returncode == 0, r.stderr
            assert_runs_once_and_counts_on([(host_a, b)], cid, n)
        for cid in cids:
            assert_nothing_left([(host_a, b) for b, _ in pairs], cid, tmp_path)
    finally:
        for cid, (b, _) in zip(cids, pairs):
            cleanup([(host_a, b)], cid)


def test_one_container_signed_and_sealed_twice_at_once(host_a, make_bundle, tmp_path, runc_ckpt_bin):
    """Two signed, encrypted exports of one container race: one wins, the other gets one clean error line
    and leaves nothing at its path; the winner's archive restores under the policy."""
    sign, encrypt, restore = _flags(_keys(runc_ckpt_bin, tmp_path / "keys"))
    b = make_bundle(name="web")
    cid = start(host_a, b)
    archives = [tmp_path / "first.tar.zst", tmp_path / "second.tar.zst"]
    try:
        seen = counter(b)
        results = at_once(*(lambda a=a: host_a.call("checkpoint", "--export", str(a), *sign, *encrypt, cid)
                            for a in archives))
        assert sorted(r.returncode for r in results) == [0, 1], [r.stderr for r in results]
        won = 0 if results[0].returncode == 0 else 1
        lost = results[1 - won]
        assert len(lost.stderr.strip().splitlines()) == 1 and "level=error" in lost.stderr, lost.stderr
        assert not os.path.lexists(archives[1 - won])
        assert host_a.status(cid) is None
        r = host_a.call("restore", "--import", str(archives[won]), *restore, "--bundle", str(b.path), "-d", cid)
        assert r.returncode == 0, r.stderr
        assert_runs_once_and_counts_on([(host_a, b)], cid, seen)
        assert_nothing_left([(host_a, b)], cid, tmp_path)
    finally:
        cleanup([(host_a, b)], cid)
