"""kill -9 of `checkpoint --export FILE --incremental-from PARENT` -- runc-ckpt alone, or its whole tree with
runc and CRIU -- at each of its phases, with the real runc and CRIU.

Phases: the parent chain staged in the scratch dir (chain-staged, before the container is touched), inside
runc's dump and CRIU's (dump, criu:post-dump), P1' built after the dump (incremental-built), the child
archive half written (export-write) and complete before its rename (rename). Afterwards: no file at the
child's path, the parent archive byte for byte as it was, the container runs (or comes back through the
one command the retry names, when the kill came after a dump that stopped it), the retried export writes
an incremental child that restores through the chain, and nothing is left: no scratch dir, no temp file,
no lock, no stray runc or CRIU.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest

from tests.integration.test_tree_kill_real import cleanup, host_a, recover, start  # host_a: a fixture
from tests.integration.treekill_helpers import (
    TreeHost,
    assert_nothing_left,
    assert_runs_once_and_counts_on,
    counter,
    settle_time,
)

__all__ = ["host_a"]

FAULTS = ["chain-staged:kill", "chain-staged:killtree", "dump:kill", "dump:killtree", "criu:post-dump",
          "incremental-built:kill", "incremental-built:killtree", "export-write:killtree", "rename:kill"]


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cycle_incremental(a: TreeHost, b, cid: str, fault: str, parent, child) -> None:
    """The incremental export killed at fault, the engine's retry (and the one named command if the
    container is gone), then the child restores through its chain."""
    hosts = [(a, b)]
    seen = counter(b)
    before = _sha256(parent)
    export = ("checkpoint", "--export", str(child), "--incremental-from", str(parent), cid)
    out = a.call(*export, fault=fault)
    assert out.returncode == -9, f"the fault did not fire: {out.stderr}"
    assert not os.path.lexists(child), "a killed export left a file at the archive's path"
    assert _sha256(parent) == before, "the parent archive changed"
    settle_time()
    retry = a.call(*export)
    if retry.returncode != 0:
        # The kill came after a dump that stopped the container: the retry names the restore of its images.
        assert recover(hosts, cid, retry.stderr) == 1, retry.stderr
        assert_runs_once_and_counts_on(hosts, cid, seen)
        seen = counter(b)
        retry = a.call(*export)
    assert retry.returncode == 0, retry.stderr
    assert _sha256(parent) == before, "the parent archive changed"
    assert a.status(cid) is None
    info = subprocess.run([a.bin, "inspect", "--format", "json", str(child)], capture_output=True, text=True,
                          env=a.env, check=False)
    assert info.returncode == 0, info.stderr
    assert [(link["archive"], link["digest"]) for link in json.loads(info.stdout)["chain"]] == [(parent.name, "ok")]
    r = a.call("restore", "--import", str(child), "--bundle", str(b.path), "-d", cid)
    assert r.returncode == 0, r.stderr
    assert_runs_once_and_counts_on(hosts, cid, seen)


@pytest.mark.parametrize("fault", FAULTS)
def test_tree_kill_during_an_incremental_export(host_a, make_bundle, tmp_path, fault):
    b = make_bundle(name="job")
    cid = start(host_a, b)
    parent, child = tmp_path / "job-0.tar.zst", tmp_path / "job-1.tar.zst"
    try:
        full = host_a.call("checkpoint", "-R", "--export", str(parent), cid)
        assert full.returncode == 0, full.stderr
        cycle_incremental(host_a, b, cid, fault, parent, child)
        assert_nothing_left([(host_a, b)], cid, tmp_path)
        assert not list(host_a.state.rglob(".scratch-*"))
    finally:
        cleanup([(host_a, b)], cid)
