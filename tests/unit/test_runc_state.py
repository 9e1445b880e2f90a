"""One parse of `runc state` (state/recovery.runc_state) serves every question asked of it: whether the
container exists, its bundle (recovery), its status (settle), and whether this restore made it (importer)."""

from __future__ import annotations

import json
import os
import time

import pytest

from runc_ckpt.restore import importer
from runc_ckpt.state import recovery, settle

RUNC = "/fake/runc"


def _state(fp, stdout: str, returncode: int = 0) -> None:
    fp.register([RUNC, "--root", "/r", "state", "c1"], stdout=stdout, returncode=returncode)


@pytest.mark.parametrize("stdout,returncode,parsed,bundle,status", [
    ("", 1, None, None, None),                                       # no such container
    ("not json", 0, {}, "", None),                                   # it exists, nothing more is known
    ("[1, 2]", 0, {}, "", None),
    (json.dumps({"bundle": "/b", "status": "running", "pid": 7}), 0,
     {"bundle": "/b", "status": "running", "pid": 7}, "/b", "running"),
])
def test_one_parse_answers_existence_bundle_and_status(fp, stdout, returncode, parsed, bundle, status):
    for _ in range(3):
        _state(fp, stdout, returncode)
    assert recovery.runc_state(RUNC, "/r", "c1") == parsed
    assert recovery.container_bundle(RUNC, "/r", "c1") == bundle
    assert settle._status(RUNC, "/r", "c1") == status


@pytest.mark.parametrize("doc,pid,made", [
    (None, 7, None),                                              # no container
    ({"bundle": "BUNDLE", "pid": 7}, 7, True),                    # ours: our runc's pid file, our bundle
    ({"bundle": "BUNDLE", "pid": 8}, 7, False),                   # another pid
    ({"bundle": "/elsewhere", "pid": 7}, 7, False),               # another bundle
    ("garbage", 7, False),                                        # runc knows it; we cannot say it is ours
])
def test_made_by_us_asks_the_same_parse(fp, tmp_path, doc, pid, made):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    pid_file = tmp_path / "runc-ckpt.pid"
    pid_file.write_text(str(pid))
    stdout = "" if doc is None else doc if isinstance(doc, str) else json.dumps(
        {k: (str(bundle) if v == "BUNDLE" else v) for k, v in doc.items()})
    _state(fp, stdout, 1 if doc is None else 0)
    assert importer._made_by_us(RUNC, "/r", "c1", str(bundle), str(pid_file), time.time()) is made
    assert os.path.exists(pid_file)
