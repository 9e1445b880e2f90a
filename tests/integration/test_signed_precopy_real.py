"""A signed `--pre-copy` stream (memory pre-copy, issue 23) under a sigstoreSigned policy, with real runc and
CRIU: the signature covers phase 0's memory dump (pre-checkpoint/) and the incremental P1' (checkpoint/).

The signed stream restores with the workload's memory intact. A forger who changes a P0 or a P1' member in
flight and rewrites the manifest's digests to match (what an unsigned stream cannot resist) is refused
with one error line and nothing applied; so is an unsigned sender.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tarfile

import zstandard

from runc_ckpt.archive import layout
from tests.integration.conftest import wait_for
from tests.integration.migrate_helpers import pipe
from tests.integration.test_incremental_real import MIB, _verify, toucher  # noqa: F401 (a fixture)
from tests.integration.test_migrate_memory_precopy import _status, _stopped, _tmpfs_left, _toucher_pair
from tests.integration.test_trust_real import _keys, _policy, _rewrite

P0_PAGES = f"{layout.PRE_CHECKPOINT_DIR}/pages-1.img"
P1_PAGES = f"{layout.CHECKPOINT_DIR}/pages-1.img"


def _sign_and_policy(runc_ckpt_bin, tmp_path) -> tuple[list[str], str]:
    """(the sender's signing flags, a policy: streams must be signed by that key, everything else rejected)"""
    keydir = _keys(runc_ckpt_bin, tmp_path / "keys")
    policy = _policy(tmp_path / "policy.json", [{"type": "reject"}],
                     {"stream": {"": [{"type": "sigstoreSigned", "keyPath": str(keydir / "signing.pub")}]}})
    return (["--sign-by-sigstore-private-key", str(keydir / "signing.key"), "--sign-passphrase-file",
             str(keydir / "pass")], str(policy))


def _members(stream) -> dict[str, tarfile.TarInfo]:
    with zstandard.ZstdDecompressor().stream_reader(stream.read_bytes()) as raw, \
            tarfile.open(fileobj=raw, mode="r|") as tar:
        return {m.name: m for m in tar}


def _forged(stream, member: str, out) -> None:
    """The stream with one byte of member flipped and the manifest's digest of it rewritten to match."""
    shutil.copy(stream, out)
    digest = {}

    def change(name: str, data: bytes) -> bytes | None:
        if name == member:
            data = bytes([data[0] ^ 1]) + data[1:]
            digest.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
            return data
        if name == layout.MANIFEST:
            doc = json.loads(data)
            doc["members"][member].update(digest)
            return json.dumps(doc).encode()
        return None

    _rewrite(out, change)
    assert digest, f"{member} is not in the stream"


def _receive(b, runc_ckpt_bin, stream, dst, cid: str, policy: str) -> subprocess.CompletedProcess[str]:
    with open(stream, "rb") as f:
        return subprocess.run(b.runc_ckpt(runc_ckpt_bin, "restore", "--import", "-", "--signature-policy", policy,
                                          "--bundle", str(dst.path), "-d", cid),
                              stdin=f, capture_output=True, text=True, env=b.env, check=False, timeout=180)


def _bundle_view(dst) -> tuple[list[str], list[str]]:
    return sorted(p.name for p in dst.rootfs.iterdir()), sorted(os.listdir(dst.path))


def test_a_signed_pre_copy_stream_restores_and_a_forged_p0_or_p1_is_refused(
        make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin, toucher):  # noqa: F811
    sign, policy = _sign_and_policy(runc_ckpt_bin, tmp_path)
    a, b, src, dst, cid = _toucher_pair(make_bundle, containers, tmp_path, busybox_lower, toucher)
    stream = tmp_path / "signed-stream.tar.zst"
    try:
        # The sender, its stream caught in flight; the workload changes a tenth of its pages between phase 0
        # and the freeze, so P1' carries pages of its own.
        with open(stream, "wb") as out:
            ps = subprocess.Popen(a.runc_ckpt(runc_ckpt_bin, "--debug", "checkpoint", "--export", "-", "--pre-copy",
                                              *sign, cid),
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE, text=True,
                                  env=dict(a.env, RUNC_CKPT_FAULT="phase1-sent:pause"))
        wait_for(lambda: _stopped(ps.pid), timeout=120, what="the sender to stop after phase 0")
        (src.rootfs / "change").write_text("")
        wait_for(lambda: (src.rootfs / "changed").exists(), timeout=30, what="the workload to change its memory")
        ps.send_signal(signal.SIGCONT)
        _, serr = ps.communicate(timeout=180)
        assert ps.returncode == 0, serr
        assert "memory pre-copy by content hash" in serr, serr
        members = _members(stream)
        assert layout.MANIFEST_SIG in members
        assert members[P0_PAGES].size > MIB << 19 and 0 < members[P1_PAGES].size < members[P0_PAGES].size
        assert members[f"{layout.CHECKPOINT_DIR}/parent"].issym()

        before = _bundle_view(dst)
        for member in (P0_PAGES, P1_PAGES):
            forged = tmp_path / f"forged-{member.replace('/', '-')}"
            _forged(stream, member, forged)
            r = _receive(b, runc_ckpt_bin, forged, dst, cid, policy)
            assert r.returncode != 0
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and "level=error" in lines[0] and "signature" in lines[0], r.stderr
            assert _status(b.root, cid) is None
            assert _bundle_view(dst) == before
            assert not (dst.rootfs / "toucher").exists()

        r = _receive(b, runc_ckpt_bin, stream, dst, cid, policy)
        assert r.returncode == 0, r.stderr
        assert _status(b.root, cid) == "running"
        assert _verify(dst.rootfs) == f"ok {MIB << 8}"
        assert not _tmpfs_left(cid)
    finally:
        for h in (a, b):
            subprocess.run(["runc", "--root", str(h.root), "delete", "--force", cid], capture_output=True,
                           check=False)


def test_an_unsigned_pre_copy_stream_is_refused_where_the_policy_wants_a_signature(
        make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin, toucher):  # noqa: F811
    _, policy = _sign_and_policy(runc_ckpt_bin, tmp_path)
    a, b, _, dst, cid = _toucher_pair(make_bundle, containers, tmp_path, busybox_lower, toucher)
    before = _bundle_view(dst)
    try:
        s, r = pipe(a.runc_ckpt(runc_ckpt_bin, "--debug", "checkpoint", "--export", "-", "--pre-copy", cid),
                    b.runc_ckpt(runc_ckpt_bin, "restore", "--import", "-", "--signature-policy", policy,
                                "--bundle", str(dst.path), "-d", cid), a.env, b.env, timeout=180)
        assert "memory pre-copy by content hash" in s.stderr, s.stderr
        assert r.returncode != 0
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "is not signed" in lines[0], r.stderr
        assert _status(b.root, cid) is None
        assert _bundle_view(dst) == before
    finally:
        for h in (a, b):
            subprocess.run(["runc", "--root", str(h.root), "delete", "--force", cid], capture_output=True,
                           check=False)
