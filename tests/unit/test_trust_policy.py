"""The trust policy (trust.policy) and its verdicts (trust.verdict): scopes, requirement types, refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.migrate import hello
from runc_ckpt.trust import keys, policy, signature, verdict
from tests.conftest import REPO

MANIFEST = b'{"format": "runc-ckpt", "members": {}}\n'


@pytest.fixture
def signer(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    pub = tmp_path / "signing.pub"
    pub.write_bytes(keys.public_pem(key.public_key()))
    return key, pub


def _load(tmp_path: Path, doc: dict) -> policy.Policy:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(doc))
    return policy.load(str(path))


def _signed(pub: Path) -> list[dict]:
    return [{"type": "sigstoreSigned", "keyPath": str(pub)}]


def test_no_policy_file_accepts_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(policy, "DEFAULT_PATH", str(tmp_path / "absent.json"))
    pol = policy.load(None)
    v = verdict.decide(pol, "archive", "/a", MANIFEST, None, "archive /a")
    assert v.accepted and "no signature policy" in v.reason and v.signer is None


def test_a_named_policy_must_exist(tmp_path):
    with pytest.raises(RuncCkptError, match="does not exist"):
        policy.load(str(tmp_path / "absent.json"))


def test_the_most_specific_archive_scope_wins(tmp_path, signer):
    key, pub = signer
    pol = _load(tmp_path, {"default": [{"type": "reject"}], "transports": {"archive": {
        "/srv": _signed(pub), "/srv/own": [{"type": "insecureAcceptAnything"}]}}})
    assert pol.requirements("archive", "/srv/own/x.tar")[0] == "archive:/srv/own"
    assert pol.requirements("archive", "/srv/ownership/x.tar")[0] == "archive:/srv"   # whole components
    assert pol.requirements("archive", "/elsewhere/x.tar")[0] == "default"
    assert verdict.decide(pol, "archive", "/srv/own/x", MANIFEST, None, "a").accepted
    refused = verdict.decide(pol, "archive", "/srv/x", MANIFEST, None, "archive /srv/x")
    assert not refused.accepted and "is not signed" in refused.reason
    assert keys.fingerprint_of(key.public_key()) in refused.reason


def test_docker_scopes_go_from_tag_to_repository_to_namespace(tmp_path, signer):
    _, pub = signer
    pol = _load(tmp_path, {"default": [{"type": "reject"}], "transports": {"docker": {
        "reg:5000/ns": _signed(pub), "reg:5000/ns/app:1": [{"type": "insecureAcceptAnything"}]}}})
    assert pol.requirements("docker", "reg:5000/ns/app:1")[0] == "docker:reg:5000/ns/app:1"
    assert pol.requirements("docker", "reg:5000/ns/app:2")[0] == "docker:reg:5000/ns"
    assert pol.requirements("docker", "reg:5000/other")[0] == "default"


def test_stream_scope_is_the_peer_then_any(tmp_path, signer):
    _, pub = signer
    pol = _load(tmp_path, {"default": [{"type": "insecureAcceptAnything"}], "transports": {"stream": {
        "": [{"type": "reject"}], "10.0.0.5": _signed(pub)}}})
    assert pol.requirements("stream", "10.0.0.5")[0] == "stream:10.0.0.5"
    assert pol.requirements("stream", "10.0.0.6")[0] == "stream (any)"
    assert pol.requirements("stream", "")[0] == "stream (any)"


def test_signed_by_a_trusted_key_is_accepted_and_names_the_signer(tmp_path, signer):
    key, pub = signer
    pol = _load(tmp_path, {"default": _signed(pub)})
    v = verdict.decide(pol, "archive", "/a", MANIFEST, signature.sign(MANIFEST, key), "archive /a")
    assert v.accepted and v.signer == keys.fingerprint_of(key.public_key())
    verdict.enforce(v)


def test_signed_by_another_key_is_refused_naming_both(tmp_path, signer):
    key, pub = signer
    stranger = ec.generate_private_key(ec.SECP256R1())
    pol = _load(tmp_path, {"default": _signed(pub)})
    v = verdict.decide(pol, "archive", "/a", MANIFEST, signature.sign(MANIFEST, stranger), "archive /a")
    assert not v.accepted
    assert keys.fingerprint_of(stranger.public_key()) in v.reason and "does not trust" in v.reason
    with pytest.raises(RuncCkptError, match="^restore refused by the signature policy"):
        verdict.enforce(v)


def test_a_modified_manifest_fails_the_trusted_signature(tmp_path, signer):
    key, pub = signer
    pol = _load(tmp_path, {"default": _signed(pub)})
    v = verdict.decide(pol, "archive", "/a", MANIFEST.replace(b"{}", b'{"x": 1}'), signature.sign(MANIFEST, key),
                       "archive /a")
    assert not v.accepted and "does not match the manifest" in v.reason


def test_key_data_is_a_base64_pem(tmp_path, signer):
    import base64
    key, pub = signer
    pol = _load(tmp_path, {"default": [{"type": "sigstoreSigned",
                                        "keyData": base64.b64encode(pub.read_bytes()).decode()}]})
    assert verdict.decide(pol, "archive", "/a", MANIFEST, signature.sign(MANIFEST, key), "a").accepted


def test_reject_wins_over_a_good_signature(tmp_path, signer):
    key, pub = signer
    pol = _load(tmp_path, {"default": [{"type": "reject"}]})
    assert not verdict.decide(pol, "archive", "/a", MANIFEST, signature.sign(MANIFEST, key), "a").accepted


@pytest.mark.parametrize(("doc", "message"), [
    ([], "not a JSON object"),
    ({"transports": {}}, "default: missing"),
    ({"default": [{"type": "reject"}], "extra": 1}, "unknown key 'extra'"),
    ({"default": []}, "non-empty list"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k"}]}, "'signedBy' is not supported"),
    ({"default": [{"type": "reject", "keyPath": "/k"}]}, "unknown key 'keyPath' for type reject"),
    ({"default": [{"type": "sigstoreSigned"}]}, "needs keyPath"),
    ({"default": [{"type": "sigstoreSigned", "keyPath": "relative.pub"}]}, "not an absolute path"),
    ({"default": [{"type": "reject"}], "transports": {"ftp": {}}}, "unknown transport 'ftp'"),
])
def test_a_bad_policy_is_one_error_naming_the_key(tmp_path, doc, message):
    with pytest.raises(RuncCkptError, match=re.escape(message)):
        _load(tmp_path, doc)


def test_the_man_page_example_loads(tmp_path, signer):
    """docs/runc-ckpt-policy.json.5.md's example, its key paths pointed at a real key."""
    _, pub = signer
    text = (REPO / "docs" / "runc-ckpt-policy.json.5.md").read_text()
    example = text.split("## EXAMPLES", 1)[1].split("```\n", 2)[1]
    example = re.sub(r'"/etc/runc-ckpt/[^"]+\.pub"', json.dumps(str(pub)), example)
    pol = _load(tmp_path, json.loads(example))
    assert pol.requirements("archive", "/var/lib/runc-ckpt/exports/a.tar.zst")[1][0].type == policy.ACCEPT
    assert pol.requirements("archive", "/tmp/a.tar.zst")[1][0].type == policy.SIGNED
    assert pol.requirements("stream", "10.0.0.9")[0] == "default"


def test_a_stream_hello_is_signed_and_judged_before_the_freeze(tmp_path, signer):
    key, pub = signer
    pol = _load(tmp_path, {"default": [{"type": "reject"}], "transports": {"stream": {"": _signed(pub)}}})
    doc = {"format": hello.FORMAT, "version": hello.VERSION, "container": "web", "host": {"arch": "amd64"}}
    assert hello.judge(dict(doc), pol, "", "web")[0].startswith("the stream's hello is not signed")
    hello.sign(doc, key)
    assert hello.judge(doc, pol, "", "web") == []
    assert "replayed" in hello.judge(doc, pol, "", "other")[0]
    forged = dict(doc, host={"arch": "arm64"})
    assert "does not match" in hello.judge(forged, pol, "", "web")[0]
    assert hello.judge(dict(doc, signature=None), policy.NO_POLICY, "", "web") == []
