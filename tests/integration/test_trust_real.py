"""Signed checkpoints on the real stack: runc + CRIU, `key generate`, `checkpoint --export --sign-by-...`,
and `restore --import` under a trust policy (trust.policy, trust.verdict).

Every refusal is its own test and must leave the target as it was: no
container, the bundle's rootfs unchanged, no staging left behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from tests.integration.conftest import wait_for
from tests.integration.migrate_helpers import pipe, running_pair, socket_pair
from tests.integration.test_restore_import_real import SCRIPT, as_new_host, restore_env


def _keys(runc_ckpt_bin: str, where: Path, passphrase: str = "s3cret") -> Path:
    where.mkdir()
    (where / "pass").write_text(passphrase + "\n")
    out = subprocess.run([runc_ckpt_bin, "key", "generate", "--output-dir", str(where),
                          "--passphrase-file", str(where / "pass")], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "sigstoreSigned" in out.stdout
    return where


def _policy(path: Path, default: list, transports: dict | None = None) -> Path:
    path.write_text(json.dumps({"default": default, "transports": transports or {}}))
    return path


def _trusting(path: Path, keydir: Path) -> Path:
    return _policy(path, [{"type": "sigstoreSigned", "keyPath": str(keydir / "signing.pub")}])


def _export(runc_ckpt_bin, containers, b, archive: Path, env: dict, keydir: Path | None) -> tuple[str, int]:
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    sign = ["--sign-by-sigstore-private-key", str(keydir / "signing.key"),
            "--sign-passphrase-file", str(keydir / "pass")] if keydir else []
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "checkpoint", "--export", str(archive),
                          *sign, cid], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return cid, b.counter()


def _restore(runc_ckpt_bin, containers, archive: Path, b, env: dict, policy: Path) -> subprocess.CompletedProcess:
    return subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "--import", str(archive),
                           "--signature-policy", str(policy), "--bundle", str(b.path), "-d"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=env, timeout=120, check=False)


def _tree(root: Path) -> list[tuple[str, int, str]]:
    """What a refusal must not change: every path under root, its mode and (files) content digest."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else ""
            out.append((str(p.relative_to(root)), st.st_mode, digest))
    return sorted(out)


def _rewrite(archive: Path, change) -> None:
    """Rewrite the archive's members through change(name, data) -> data (None: keep)."""
    raw = zstandard.ZstdDecompressor().stream_reader(archive.read_bytes()).read()
    src = tarfile.open(fileobj=io.BytesIO(raw))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None
            if data is not None:
                new = change(m.name, data)
                if new is not None:
                    data = new
                    m.size = len(data)
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    archive.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))


def test_signed_export_restores_under_a_policy_that_trusts_its_key(make_bundle, containers, busybox_lower,
                                                                   tmp_path, runc_ckpt_bin):
    keydir = _keys(runc_ckpt_bin, tmp_path / "keys")
    b = make_bundle(args=["sh", "-c", SCRIPT], volumes={"vol1": "/data"})
    env = restore_env(tmp_path)
    archive = tmp_path / "signed.tar.zst"
    cid, before = _export(runc_ckpt_bin, containers, b, archive, env, keydir)
    as_new_host(b, busybox_lower)
    policy = _trusting(tmp_path / "policy.json", keydir)

    info = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", "--signature-policy", str(policy),
                           str(archive)], capture_output=True, text=True, check=False)
    assert info.returncode == 0, info.stderr
    trust = json.loads(info.stdout)["trust"]
    assert trust["accepted"] is True and trust["signer"].startswith("sha256:")
    assert trust["signer"] in subprocess.run([runc_ckpt_bin, "inspect", "--signature-policy", str(policy),
                                              str(archive)], capture_output=True, text=True, check=True).stdout

    out = _restore(runc_ckpt_bin, containers, archive, b, env, policy)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) == "running"
    wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")


def _refused(runc_ckpt_bin, containers, busybox_lower, tmp_path, make_bundle, sign: bool, policy_for, tamper=None):
    keydir = _keys(runc_ckpt_bin, tmp_path / "keys")
    b = make_bundle(args=["sh", "-c", SCRIPT], volumes={"vol1": "/data"})
    env = restore_env(tmp_path)
    archive = tmp_path / "a.tar.zst"
    cid, _ = _export(runc_ckpt_bin, containers, b, archive, env, keydir if sign else None)
    as_new_host(b, busybox_lower)
    if tamper is not None:
        _rewrite(archive, tamper)
    policy = policy_for(tmp_path, keydir)
    before = (_tree(b.rootfs), _tree(b.path / "config.json").__len__(), sorted(os.listdir(b.path)))
    out = _restore(runc_ckpt_bin, containers, archive, b, env, policy)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "level=error" in lines[0], out.stderr
    assert containers.status(cid) is None
    assert (_tree(b.rootfs), _tree(b.path / "config.json").__len__(), sorted(os.listdir(b.path))) == before
    return lines[0]


def test_a_key_the_policy_does_not_trust_is_refused(make_bundle, containers, busybox_lower, tmp_path, runc_ckpt_bin):
    def policy_for(tmp: Path, keydir: Path) -> Path:
        return _trusting(tmp / "policy.json", _keys(runc_ckpt_bin, tmp / "other-keys"))
    line = _refused(runc_ckpt_bin, containers, busybox_lower, tmp_path, make_bundle, True, policy_for)
    assert "does not trust" in line


def test_unsigned_is_refused_where_the_policy_requires_a_signature(make_bundle, containers, busybox_lower, tmp_path,
                                                                   runc_ckpt_bin):
    line = _refused(runc_ckpt_bin, containers, busybox_lower, tmp_path, make_bundle, False,
                    lambda tmp, keydir: _trusting(tmp / "policy.json", keydir))
    assert "is not signed" in line


def test_reject_refuses_even_a_signed_checkpoint(make_bundle, containers, busybox_lower, tmp_path, runc_ckpt_bin):
    def policy_for(tmp: Path, keydir: Path) -> Path:
        return _policy(tmp / "policy.json", [{"type": "insecureAcceptAnything"}],
                       {"archive": {str(tmp): [{"type": "reject"}]}})
    line = _refused(runc_ckpt_bin, containers, busybox_lower, tmp_path, make_bundle, True, policy_for)
    assert "rejects everything" in line


@pytest.mark.parametrize("update_manifest", [False, True], ids=["member-only", "member-and-manifest"])
def test_a_tampered_page_is_refused(make_bundle, containers, busybox_lower, tmp_path, runc_ckpt_bin,
                                    update_manifest):
    """One flipped byte in pages-1.img: the manifest's digest catches it; a forger who also rewrites
    the manifest's digest is caught by the signature."""
    flipped: dict[str, str] = {}

    def tamper(name: str, data: bytes) -> bytes | None:
        if name == "checkpoint/pages-1.img":
            data = bytes([data[0] ^ 1]) + data[1:]
            flipped["sha"] = hashlib.sha256(data).hexdigest()
            return data
        if name == "runc-ckpt.manifest.json" and update_manifest:
            doc = json.loads(data)
            doc["members"]["checkpoint/pages-1.img"]["sha256"] = flipped["sha"]
            return json.dumps(doc, indent=1).encode() + b"\n"
        return None
    line = _refused(runc_ckpt_bin, containers, busybox_lower, tmp_path, make_bundle, True,
                    lambda tmp, keydir: _trusting(tmp / "policy.json", keydir), tamper)
    if update_manifest:
        assert "does not match the manifest" in line
    else:
        assert "pages-1.img" in line


def _stream(make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin, sign: bool, target_id: str | None,
            stream_policy: list):
    keydir = _keys(runc_ckpt_bin, tmp_path / "keys")
    a, b, _, dst, cid = running_pair(make_bundle, containers, tmp_path, busybox_lower, SCRIPT)
    for i, req in enumerate(stream_policy):
        if req.get("keyPath") == "KEY":
            stream_policy[i] = dict(req, keyPath=str(keydir / "signing.pub"))
    policy = _policy(tmp_path / "policy.json", [{"type": "reject"}], {"stream": {"": stream_policy}})
    sign_args = ["--sign-by-sigstore-private-key", str(keydir / "signing.key"),
                 "--sign-passphrase-file", str(keydir / "pass")] if sign else []
    s, r = pipe(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", "-", *sign_args, cid),
                b.runc_ckpt(runc_ckpt_bin, "restore", "--import", "-", "--signature-policy", str(policy),
                            "--bundle", str(dst.path), "-d", target_id or cid), a.env, b.env)
    return a, b, cid, dst, s, r


def _gone(root: Path, cid: str) -> None:
    subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], capture_output=True, check=False)


def _state(root: Path, cid: str) -> str | None:
    out = subprocess.run(["runc", "--root", str(root), "state", cid], capture_output=True, text=True, check=False)
    return json.loads(out.stdout)["status"] if out.returncode == 0 else None


def test_a_signed_stream_is_restored_where_the_policy_trusts_the_sender(make_bundle, containers, tmp_path,
                                                                        busybox_lower, runc_ckpt_bin):
    a, b, cid, dst, s, r = _stream(make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin, True, None,
                                   [{"type": "sigstoreSigned", "keyPath": "KEY"}])
    try:
        assert s.returncode == 0, s.stderr + r.stderr
        assert r.returncode == 0, r.stderr
        assert _state(b.root, cid) == "running"
    finally:
        _gone(b.root, cid)


def test_a_stream_from_an_unsigned_sender_is_refused(make_bundle, containers, tmp_path, busybox_lower,
                                                     runc_ckpt_bin):
    a, b, cid, dst, s, r = _stream(make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin, False, None,
                                   [{"type": "sigstoreSigned", "keyPath": "KEY"}])
    try:
        assert r.returncode != 0
        assert "is not signed" in r.stderr
        assert _state(b.root, cid) is None
        assert not [n for n in os.listdir(dst.path) if n.startswith(".runc-ckpt")]
    finally:
        _gone(a.root, cid)
        _gone(b.root, cid)


def test_a_signed_stream_replayed_for_another_container_is_refused(make_bundle, containers, tmp_path,
                                                                   busybox_lower, runc_ckpt_bin):
    a, b, cid, dst, s, r = _stream(make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin, True,
                                   "someone-else", [{"type": "sigstoreSigned", "keyPath": "KEY"}])
    try:
        assert r.returncode != 0
        assert "replayed" in r.stderr
        assert _state(b.root, "someone-else") is None
        assert not [n for n in os.listdir(dst.path) if n.startswith(".runc-ckpt")]
    finally:
        _gone(a.root, cid)
        _gone(b.root, "someone-else")


def test_a_wrong_passphrase_refuses_the_checkpoint_before_runc_runs(make_bundle, containers, tmp_path,
                                                                    runc_ckpt_bin):
    keydir = _keys(runc_ckpt_bin, tmp_path / "keys")
    (keydir / "wrong").write_text("not the passphrase\n")
    b = make_bundle(args=["sh", "-c", SCRIPT], volumes={"vol1": "/data"})
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "checkpoint", "--export",
                          str(tmp_path / "a.tar.zst"), "--sign-by-sigstore-private-key", str(keydir / "signing.key"),
                          "--sign-passphrase-file", str(keydir / "wrong"), cid], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, env=restore_env(tmp_path), timeout=120, check=False)
    assert out.returncode != 0 and "wrong passphrase" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert containers.status(cid) == "running"
    assert not (tmp_path / "a.tar.zst").exists()


def test_a_signed_checkpoint_image_is_judged_by_its_oci_scope(make_bundle, containers, busybox_lower, tmp_path,
                                                              runc_ckpt_bin):
    """--create-image oci: signs the archive its layer holds; restore --import oci: checks it under the
    policy's oci scope (a trusting scope restores, and the default reject refuses the same image elsewhere)."""
    keydir = _keys(runc_ckpt_bin, tmp_path / "keys")
    b = make_bundle(args=["sh", "-c", SCRIPT], volumes={"vol1": "/data"})
    env = restore_env(tmp_path)
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    layout = tmp_path / "images" / "ckpt"
    layout.parent.mkdir()
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "checkpoint", "--create-image",
                          f"oci:{layout}:1", "--sign-by-sigstore-private-key", str(keydir / "signing.key"),
                          "--sign-passphrase-file", str(keydir / "pass"), cid], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, env=env, timeout=180, check=False)
    assert out.returncode == 0, out.stderr
    before = b.counter()
    as_new_host(b, busybox_lower)
    signed = [{"type": "sigstoreSigned", "keyPath": str(keydir / "signing.pub")}]
    elsewhere = _policy(tmp_path / "elsewhere.json", [{"type": "reject"}], {"oci": {"/nowhere": signed}})
    refused = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "--import", f"oci:{layout}:1",
                              "--signature-policy", str(elsewhere), "--bundle", str(b.path), "-d"],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120,
                             check=False)
    assert refused.returncode != 0 and "rejects everything" in refused.stderr
    assert containers.status(cid) is None
    policy = _policy(tmp_path / "policy.json", [{"type": "reject"}], {"oci": {str(tmp_path / "images"): signed}})
    ok = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "--import", f"oci:{layout}:1",
                         "--signature-policy", str(policy), "--bundle", str(b.path), "-d"],
                        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    assert containers.status(cid) == "running"
    wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")


def test_with_handshake_an_unsigned_sender_is_refused_before_the_freeze(make_bundle, containers, tmp_path,
                                                                        busybox_lower, runc_ckpt_bin):
    """The hello is judged by the policy as soon as it arrives: the no-go reaches the sender before it
    freezes anything, so the source container never stops."""
    keydir = _keys(runc_ckpt_bin, tmp_path / "keys")
    a, b, src, dst, cid = running_pair(make_bundle, containers, tmp_path, busybox_lower, SCRIPT)
    policy = _policy(tmp_path / "policy.json", [{"type": "reject"}],
                     {"stream": {"": [{"type": "sigstoreSigned", "keyPath": str(keydir / "signing.pub")}]}})
    try:
        s, r = socket_pair(a.runc_ckpt(runc_ckpt_bin, "checkpoint", "--export", "-", "--handshake", cid),
                           b.runc_ckpt(runc_ckpt_bin, "restore", "--import", "-", "--handshake",
                                       "--signature-policy", str(policy), "--bundle", str(dst.path), "-d", cid),
                           a.env, b.env)
        assert s.returncode != 0 and r.returncode != 0
        assert "untrusted sender" in r.stderr and "is not signed" in r.stderr
        assert "the container was not touched" in s.stderr, s.stderr
        assert _state(a.root, cid) == "running"
        before = src.counter()
        wait_for(lambda: src.counter() > before + 1, what="the source to keep counting")
        assert _state(b.root, cid) is None
        assert not [n for n in os.listdir(dst.path) if n.startswith(".runc-ckpt")]
    finally:
        for root in (a.root, b.root):
            subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], capture_output=True, check=False)
