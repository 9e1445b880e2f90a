"""Periodic checkpoints: the flags into frozen requests, and following an incremental archive's chain."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from runc_ckpt.archive import chain, export, reader
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.commands import checkpoint as checkpoint_cmd
from runc_ckpt.commands import cmdflags, options
from runc_ckpt.commands import restore as restore_cmd
from runc_ckpt.trust import policy as trustpolicy
from runc_ckpt.trust import sealkeys
from tests.export_helpers import read_members, request
from tests.unit.test_checkpoint_flows import env  # noqa: F401  # the fake runc + criu fixture

NO_POLICY = trustpolicy.load(None)


def _checkpoint(*argv: str):
    p = cmdflags.parse(options.CHECKPOINT, list(argv), "checkpoint")
    checkpoint_cmd.check_flags(p)
    return checkpoint_cmd.checkpoint_request(p)


def test_incremental_from_and_its_key_reach_the_frozen_request():
    req = _checkpoint("--export", "/b/2.tar", "--incremental-from", "/b/1.tar", "--decryption-key", "k.pem", "c1")
    assert (req.incremental_from, req.decryption_keys, req.export) == ("/b/1.tar", ("k.pem",), "/b/2.tar")
    assert "--incremental-from" not in req.runc_argv and "/b/1.tar" not in req.runc_argv
    with pytest.raises(AttributeError):   # a frozen record: no field can be set
        req.incremental_from = "x"  # type: ignore[misc]
    assert _checkpoint("--export", "/b/2.tar", "c1").incremental_from is None


@pytest.mark.parametrize("argv, why", [
    (["--incremental-from", "/b/1.tar", "c1"], "only works with --export FILE"),
    (["--export", "-", "--incremental-from", "/b/1.tar", "c1"], "only works with --export FILE"),
    (["--create-image", "oci:/x", "--incremental-from", "/b/1.tar", "c1"], "only works with --export FILE"),
    (["--export", "/b/2.tar", "--incremental-from", "", "c1"], "needs the file name"),
    (["--export", "/b/2.tar", "--incremental-from", "/b/1.tar", "--with-previous", "c1"], "--with-previous"),
    (["--export", "/b/2.tar", "--incremental-from", "/b/1.tar", "--parent-path", "../p", "c1"], "--parent-path"),
    (["--export", "/b/2.tar", "--decryption-key", "k.pem", "c1"], "only works with --incremental-from"),
])
def test_incremental_from_is_refused_where_it_cannot_work(argv, why):
    with pytest.raises(RuncCkptError, match=why.replace("-", r"\-")):
        _checkpoint(*argv)


def test_incremental_dir_reaches_the_import_request_and_not_a_stream():
    p = cmdflags.parse(options.RESTORE, ["--import", "/b/2.tar", "--incremental-dir", "/chain", "c1"], "restore")
    req = restore_cmd.import_request(p)
    assert req.incremental_dir == "/chain"
    assert "/chain" not in req.runc_flags
    p = cmdflags.parse(options.RESTORE, ["--import", "-", "--incremental-dir", "/chain", "c1"], "restore")
    with pytest.raises(RuncCkptError, match="cannot be used with --import -"):
        restore_cmd.check_stream_flags(p)


# ---- chains of real (small, fake-image) archives


def _archive(tmp: Path, name: str, parent: Path | None = None, pages: bytes = b"", **kw: object) -> Path:
    """An archive with a checkpoint/ dir; with parent: an incremental one naming it, as checkpoint writes it."""
    work = tmp / f"work-{name}"
    images = work / "images"
    images.mkdir(parents=True)
    (images / "inventory.img").write_bytes(b"inventory " + name.encode())
    (images / "pages-1.img").write_bytes(pages or name.encode() * 100)
    link = None
    if parent is not None:
        staged = reader.stage(str(parent), reader.Targets(None, None, None))
        staged.verify()
        link = chain.link_to(str(parent), staged, str(tmp / name)).to_json()
    req = request(work, work, image_dir=str(images), archive=str(tmp / name), include_rootfs=False, parent=link,
                  **kw)
    export.write_archive(req)
    return tmp / name


@pytest.fixture
def three(tmp_path: Path) -> tuple[Path, Path, Path]:
    a = _archive(tmp_path, "a.tar.zst")
    b = _archive(tmp_path, "b.tar.zst", a)
    c = _archive(tmp_path, "c.tar.zst", b)
    return a, b, c


def _link(path: Path) -> chain.Link:
    staged = reader.stage(str(path), reader.Targets(None, None, None))
    staged.verify()
    link = chain.parse(staged)
    assert link is not None
    return link


def _stage(child: Path, into: Path, search_dir: str | None = None,
           trust: trustpolicy.Policy = NO_POLICY, keys: tuple[str, ...] = ()) -> list[chain.Ancestor]:
    link = _link(child)
    images = into / "checkpoint"
    images.mkdir(parents=True, exist_ok=True)
    return chain.stage(chain.locate(link, str(child), search_dir), link, search_dir, str(into), str(images),
                       trust, keys, None)


def test_the_member_names_the_parent_by_relative_name_digest_and_depth(three):
    a, b, c = three
    record = json.loads(read_members(c)["runc-ckpt.parent.json"].data)
    assert record == {"archive": "b.tar.zst", "manifest_sha256": chain.manifest_digest(_staged(b)), "depth": 2}
    assert "runc-ckpt.parent.json" in json.loads(read_members(c)["runc-ckpt.manifest.json"].data)["members"]
    assert _link(b).depth == 1


def _staged(path: Path) -> reader.Staged:
    staged = reader.stage(str(path), reader.Targets(None, None, None))
    staged.verify()
    return staged


def test_a_chain_is_staged_as_criu_parent_links(three, tmp_path):
    a, b, c = three
    into = tmp_path / "import"
    ancestors = _stage(c, into)
    assert [(x.path, x.depth) for x in ancestors] == [(str(b), 1), (str(a), 0)]
    assert os.readlink(into / "checkpoint" / "parent") == "../parent-1/checkpoint"
    assert os.readlink(into / "parent-1" / "checkpoint" / "parent") == "../../parent-2/checkpoint"
    assert (into / "checkpoint" / "parent" / "parent" / "inventory.img").read_bytes() == b"inventory a.tar.zst"
    assert not (into / "parent-2" / "checkpoint" / "parent").exists()


def test_a_parent_that_is_not_the_recorded_one_is_refused(three, tmp_path):
    a, b, c = three
    shutil.copy(a, b)                   # a valid archive, but not the one c was made on
    with pytest.raises(chain.ChainError, match="not the one its child was made on") as e:
        _stage(c, tmp_path / "import")
    assert e.value.status == "mismatch"


def test_a_missing_parent_is_refused_and_the_search_dir_finds_it(three, tmp_path):
    a, b, c = three
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = shutil.copy(c, elsewhere / c.name)
    with pytest.raises(chain.ChainError, match="is missing") as e:
        _stage(Path(moved), tmp_path / "import")
    assert e.value.status == "missing"
    assert len(_stage(Path(moved), tmp_path / "import2", search_dir=str(a.parent))) == 2


def test_names_that_loop_back_are_refused(tmp_path):
    """x names y, y names x: whatever the names say, depths and pins never fit a loop."""
    a = _archive(tmp_path, "x.tar.zst")
    y = _archive(tmp_path, "y.tar.zst", a)
    x = _archive(tmp_path, "x2.tar.zst", y)
    os.replace(x, a)                    # x.tar.zst now names y.tar.zst, which names x.tar.zst
    with pytest.raises(chain.ChainError) as e:
        _stage(a, tmp_path / "import")
    assert e.value.status == "mismatch"


@pytest.mark.parametrize("record, status", [
    ({"archive": "/abs.tar", "manifest_sha256": "0" * 64, "depth": 1}, "bad"),
    ({"archive": "..", "manifest_sha256": "0" * 64, "depth": 1}, "bad"),
    ({"archive": "p.tar", "manifest_sha256": "xyz", "depth": 1}, "bad"),
    ({"archive": "p.tar", "manifest_sha256": "0" * 64, "depth": 0}, "too-deep"),
    ({"archive": "p.tar", "manifest_sha256": "0" * 64, "depth": chain.MAX_DEPTH + 1}, "too-deep"),
    ({"archive": "p.tar", "manifest_sha256": "0" * 64, "depth": True}, "too-deep"),
    ([], "bad"),
])
def test_a_bad_record_is_refused(record, status):
    staged = reader.Staged("c.tar")
    staged.manifest, staged.parent_raw = {"members": {}}, json.dumps(record).encode()
    with pytest.raises(chain.ChainError) as e:
        chain.parse(staged)
    assert e.value.status == status


def test_a_record_without_a_manifest_is_refused():
    staged = reader.Staged("c.tar")
    staged.parent_raw = b'{"archive": "p.tar"}'
    with pytest.raises(chain.ChainError, match="must carry a manifest"):
        chain.parse(staged)


def test_a_chain_too_long_for_a_new_link_is_refused(three, monkeypatch):
    a, b, c = three
    monkeypatch.setattr(chain, "MAX_DEPTH", 2)
    with pytest.raises(chain.ChainError, match="most a chain may hold is 2"):
        chain.link_to(str(c), _staged(c), str(c.parent / "d.tar.zst"))


def test_a_podman_archive_cannot_be_a_parent(tmp_path):
    staged = reader.Staged("podman.tar")
    with pytest.raises(chain.ChainError, match="has no runc-ckpt.manifest.json"):
        chain.link_to("podman.tar", staged, str(tmp_path / "d.tar"))


def test_the_trust_policy_judges_every_parent(three, tmp_path):
    a, b, c = three
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "reject"}]}))
    with pytest.raises(RuncCkptError, match="rejects everything"):
        _stage(c, tmp_path / "import", trust=trustpolicy.load(str(policy)))


# ---- the checkpoint flow: a bad parent refuses the call before the container is touched


@pytest.mark.parametrize("parent", ["missing.tar.zst", "not-an-archive.tar.zst"])
def test_a_bad_parent_refuses_the_checkpoint_before_runc_runs(env, capfd, parent):
    (env.tmp / "not-an-archive.tar.zst").write_bytes(b"garbage" * 100)
    env.container("ctr")
    env.register_state("ctr")
    assert env.main("checkpoint", "-e", str(env.tmp / "next.tar.zst"), "--incremental-from",
                    str(env.tmp / parent), "ctr") == 1
    err = capfd.readouterr().err
    assert "--incremental-from" in err and len(err.strip().splitlines()) == 1, err
    assert not env.checkpoint_calls()
    assert not (env.tmp / "next.tar.zst").exists()
    assert not list((env.state_dir / "ctr").glob(".scratch-*"))


def test_an_encrypted_parent_needs_its_key(tmp_path, seal_keys):
    private, public = seal_keys["ec"]
    a = _archive(tmp_path, "a.tar.zst", seal_for=sealkeys.recipients([f"jwe:{public}"], None))
    b = tmp_path / "b.tar.zst"
    staged = reader.stage(str(a), reader.Targets(None, None, None), decryption_keys=(private,))
    staged.verify()
    work = tmp_path / "work-b" / "images"
    work.mkdir(parents=True)
    (work / "inventory.img").write_bytes(b"inventory b")
    export.write_archive(request(work.parent, work.parent, image_dir=str(work), archive=str(b), include_rootfs=False,
                                 parent=chain.link_to(str(a), staged, str(b)).to_json()))
    with pytest.raises(RuncCkptError, match="encrypted"):
        _stage(b, tmp_path / "import")
    assert len(_stage(b, tmp_path / "import2", keys=(private,))) == 1
