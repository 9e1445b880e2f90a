"""Trusted checkpoint images through a real registry (docker-registry on 127.0.0.1): signed and
encrypted `checkpoint --create-image docker://...`, then `restore --import docker://...` under a policy.

The policy's docker scope is "HOST:PORT/ckpt" (trust.policy); every refusal is one error line and
leaves the target bundle and runc root as they were. Debian's skopeo 1.9.3 is built without
sigstore: it can neither sign nor verify a sigstoreSigned requirement, which
test_debian_skopeo_cannot_verify_sigstore pins (so the day it can, the test says so).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path

from runc_ckpt.trust import keys
from tests.conftest import require_tool
from tests.image_helpers import oci_layout, registry
from tests.integration.conftest import wait_for
from tests.integration.test_restore_import_real import SCRIPT, as_new_host, restore_env
from tests.integration.test_trust_real import _keys, _policy, _tree


def _checkpoint_image(runc_ckpt_bin, containers, b, ref: str, env: dict, *flags: str) -> tuple[str, int]:
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "checkpoint", "--create-image", ref,
                          *flags, cid], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                         timeout=180, check=False)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) is None
    return cid, b.counter()


def _restore(runc_ckpt_bin, containers, ref: str, b, env: dict, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "--import", ref, *flags,
                           "--bundle", str(b.path), "-d"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env, timeout=180, check=False)


def _snapshot(b, containers) -> tuple:
    return _tree(b.rootfs), sorted(os.listdir(b.path)), sorted(os.listdir(containers.root))


def _refused(runc_ckpt_bin, containers, ref: str, b, env: dict, cid: str, *flags: str) -> str:
    """restore --import ref with flags must fail with one error line and change nothing; returns the line."""
    before = _snapshot(b, containers)
    out = _restore(runc_ckpt_bin, containers, ref, b, env, *flags)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "level=error" in lines[0], out.stderr
    assert containers.status(cid) is None
    assert _snapshot(b, containers) == before
    assert not [n for n in os.listdir(b.path) if n.startswith(".runc-ckpt")]
    return lines[0]


def _signed(keydir: Path) -> list[dict]:
    return [{"type": "sigstoreSigned", "keyPath": str(keydir / "signing.pub")}]


def test_a_signed_image_in_the_registry_restores_only_under_its_key(make_bundle, containers, busybox_lower,
                                                                    tmp_path, runc_ckpt_bin):
    require_tool("skopeo")
    keydir = _keys(runc_ckpt_bin, tmp_path / "keys")
    other = _keys(runc_ckpt_bin, tmp_path / "other")
    b = make_bundle(args=["sh", "-c", SCRIPT], volumes={"vol1": "/data"})
    with registry(tmp_path) as (host, reg_env):
        env = {**restore_env(tmp_path), "CONTAINERS_REGISTRIES_CONF": reg_env["CONTAINERS_REGISTRIES_CONF"]}
        signed_ref, plain_ref = f"docker://{host}/ckpt:signed", f"docker://{host}/ckpt:plain"
        cid, before = _checkpoint_image(runc_ckpt_bin, containers, b, signed_ref, env,
                                        "--sign-by-sigstore-private-key", str(keydir / "signing.key"),
                                        "--sign-passphrase-file", str(keydir / "pass"))
        # The same bundle again, unsigned, to its own tag.
        plain_cid, _ = _checkpoint_image(runc_ckpt_bin, containers, b, plain_ref, env)
        as_new_host(b, busybox_lower)

        scope = f"{host}/ckpt"
        wrong = _policy(tmp_path / "wrong.json", [{"type": "reject"}], {"docker": {scope: _signed(other)}})
        line = _refused(runc_ckpt_bin, containers, signed_ref, b, env, cid, "--signature-policy", str(wrong))
        assert "not trusted" in line or "no key" in line or "signature" in line, line

        trusting = _policy(tmp_path / "trusting.json", [{"type": "reject"}], {"docker": {scope: _signed(keydir)}})
        line = _refused(runc_ckpt_bin, containers, plain_ref, b, env, plain_cid, "--signature-policy", str(trusting))
        assert "unsigned" in line or "no signature" in line or "not signed" in line, line
        rejecting = _policy(tmp_path / "reject.json", [{"type": "reject"}])
        line = _refused(runc_ckpt_bin, containers, signed_ref, b, env, cid, "--signature-policy", str(rejecting))
        assert "rejects everything" in line, line

        info = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", "--signature-policy", str(trusting),
                               signed_ref], capture_output=True, text=True, env=env, check=False)
        assert info.returncode == 0, info.stderr
        trust = json.loads(info.stdout)["trust"]
        assert trust["accepted"] is True and trust["signer"].startswith("sha256:")

        ok = _restore(runc_ckpt_bin, containers, signed_ref, b, env, "--signature-policy", str(trusting))
        assert ok.returncode == 0, ok.stderr
        assert containers.status(cid) == "running"
        wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")


def test_an_encrypted_image_in_the_registry_opens_with_its_key(make_bundle, containers, busybox_lower, tmp_path,
                                                               runc_ckpt_bin):
    skopeo = require_tool("skopeo")
    keydir = _keys(runc_ckpt_bin, tmp_path / "keys")
    other = _keys(runc_ckpt_bin, tmp_path / "other")
    b = make_bundle(args=["sh", "-c", SCRIPT], volumes={"vol1": "/data"})
    with registry(tmp_path) as (host, reg_env):
        conf = reg_env["CONTAINERS_REGISTRIES_CONF"]
        env = {**restore_env(tmp_path), "CONTAINERS_REGISTRIES_CONF": conf}
        ref = f"docker://{host}/ckpt:enc"
        cid, before = _checkpoint_image(runc_ckpt_bin, containers, b, ref, env,
                                        "--encryption-key", f"jwe:{keydir / 'encryption.pub'}")
        as_new_host(b, busybox_lower)

        # What the registry holds is ocicrypt's: an encrypted layer that skopeo itself decrypts.
        raw = subprocess.run([skopeo, "--registries-conf", conf, "inspect", "--raw", ref], capture_output=True,
                             text=True, check=True)
        layers = json.loads(raw.stdout)["layers"]
        assert len(layers) == 1 and layers[0]["mediaType"].endswith("+encrypted"), layers
        plain = tmp_path / "plain"
        out = subprocess.run([skopeo, "--registries-conf", conf, "copy", "--quiet", "--decryption-key",
                              str(keydir / "encryption.key"), ref, f"oci:{plain}:1"], capture_output=True, text=True,
                             check=False)
        assert out.returncode == 0, out.stderr
        manifest_desc = json.loads((plain / "index.json").read_text())["manifests"][0]
        manifest = json.loads((plain / "blobs" / "sha256" / manifest_desc["digest"].split(":")[1]).read_text())
        assert not manifest["layers"][0]["mediaType"].endswith("+encrypted")
        assert manifest["annotations"]["io.kubernetes.cri-o.annotations.checkpoint.name"] == cid

        line = _refused(runc_ckpt_bin, containers, ref, b, env, cid)
        assert "encrypted" in line and "--decryption-key" in line, line
        _refused(runc_ckpt_bin, containers, ref, b, env, cid, "--decryption-key", str(other / "encryption.key"))

        ok = _restore(runc_ckpt_bin, containers, ref, b, env, "--decryption-key", str(keydir / "encryption.key"))
        assert ok.returncode == 0, ok.stderr
        assert containers.status(cid) == "running"
        wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")


def _attach_sigstore_signature(skopeo: str, conf: str, repo: str, tag: str, key, tmp: Path) -> None:
    """Sign repo:tag as containers/image does (signature/internal/sigstore_payload.go) and attach the
    signature as docker/docker_image_dest.go's putSignaturesToSigstoreAttachments does: an OCI manifest
    tagged sha256-HEX.sig whose one layer is the payload, with the signature as its annotation."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    digestfile = tmp / "digest"
    subprocess.run([skopeo, "--registries-conf", conf, "copy", "--quiet", "--digestfile", str(digestfile),
                    f"docker://{repo}:{tag}", f"docker://{repo}:{tag}"], check=True)
    digest = digestfile.read_text().strip()
    payload = json.dumps({"critical": {"identity": {"docker-reference": f"{repo}:{tag}"},
                                       "image": {"docker-manifest-digest": digest},
                                       "type": "cosign container image signature"},
                          "optional": {"creator": "runc-ckpt test", "timestamp": int(time.time())}}).encode()
    sig = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    layout = oci_layout(tmp / "sig-layout", payload, {}, tag="sig", compression="none",
                        manifest_edit=lambda m: _sigstore_manifest(m, sig))
    out = subprocess.run([skopeo, "--registries-conf", conf, "copy", "--quiet", "--preserve-digests",
                          f"oci:{layout}:sig", f"docker://{repo}:{digest.replace(':', '-')}.sig"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def _sigstore_manifest(manifest: dict, sig: str) -> None:
    """The attachment's layer: the payload as cosign's simple-signing type, its signature annotated."""
    manifest.pop("annotations")
    layer = manifest["layers"][0]
    layer["mediaType"] = "application/vnd.dev.cosign.simplesigning.v1+json"
    layer["annotations"] = {"dev.cosignproject.cosign/signature": sig}


def test_debian_skopeo_cannot_verify_sigstore(tmp_path, runc_ckpt_bin):
    """The issue asks for `skopeo copy` under a sigstoreSigned policy.json to accept our signed image.
    Debian's skopeo 1.9.3 is built with sigstore cut out ("Debian-local change"): it finds a sigstore
    attachment made exactly as containers/image makes one, then refuses it whatever the key, trusted or
    not; it cannot sign with a sigstore key either. Controls: without the attachment it says no signature
    exists (so it did read ours), and insecureAcceptAnything copies."""
    skopeo = require_tool("skopeo")
    keydir = _keys(runc_ckpt_bin, tmp_path / "keys")
    other = _keys(runc_ckpt_bin, tmp_path / "other")
    key = keys.load_private_key(str(keydir / "signing.key"), b"s3cret")
    src = oci_layout(tmp_path / "src", b"layer" * 100, {"a": "b"}, compression="none")
    with registry(tmp_path) as (host, reg_env):
        conf = reg_env["CONTAINERS_REGISTRIES_CONF"]
        repo = f"{host}/ckpt"
        subprocess.run([skopeo, "--registries-conf", conf, "copy", "--quiet", f"oci:{src}:1", f"docker://{repo}:1"],
                       check=True)
        registries_d = tmp_path / "registries.d"
        registries_d.mkdir()
        (registries_d / "default.yaml").write_text("default-docker:\n  use-sigstore-attachments: true\n")

        def copy(policy: Path, dest: str, *extra: str) -> subprocess.CompletedProcess:
            return subprocess.run([skopeo, "--registries-conf", conf, "copy", "--quiet", "--policy", str(policy),
                                   "--registries.d", str(registries_d), *extra, f"docker://{repo}:1", dest],
                                  capture_output=True, text=True, check=False)

        anything = _policy(tmp_path / "any.json", [{"type": "insecureAcceptAnything"}])
        ours, theirs = (_policy(tmp_path / f"{d.name}.json", [{"type": "reject"}],
                                {"docker": {repo: [{**_signed(d)[0], "signedIdentity": {"type": "matchRepository"}}]}})
                        for d in (keydir, other))
        assert copy(anything, f"oci:{tmp_path / 'ok'}:1").returncode == 0
        unsigned = copy(ours, f"oci:{tmp_path / 'unsigned'}:1")
        assert unsigned.returncode != 0 and "no signature exists" in unsigned.stderr, unsigned.stderr

        _attach_sigstore_signature(skopeo, conf, repo, "1", key, tmp_path)
        for policy in (ours, theirs):
            verify = copy(policy, f"oci:{tmp_path / policy.stem}:1")
            assert verify.returncode != 0
            assert "Source image rejected: Debian-local change: sigstore disabled" in verify.stderr, verify.stderr

        sign = copy(anything, f"docker://{repo}:2", "--sign-by-sigstore-private-key", str(keydir / "signing.key"),
                    "--sign-passphrase-file", str(keydir / "pass"))
        assert sign.returncode != 0 and "sigstore" in sign.stderr, sign.stderr
