"""runtime.safe_remove.remove_tree: a path that is not there is done at once, without the mount table."""

from __future__ import annotations

import os

import pytest

from runc_ckpt.runtime import safe_remove


@pytest.fixture
def no_mount_table(monkeypatch):
    def refuse(path):
        raise AssertionError(f"the mount table was read for {path}")
    monkeypatch.setattr(safe_remove.mounttable, "below", refuse)


def test_a_missing_path_is_gone_without_reading_the_mount_table(tmp_path, no_mount_table):
    assert safe_remove.remove_tree(str(tmp_path / "never-made")) is True
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert safe_remove.remove_tree("never-made", dir_fd=fd) is True
    finally:
        os.close(fd)


def test_a_present_tree_still_has_its_mounts_looked_for(tmp_path, no_mount_table):
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    with pytest.raises(AssertionError, match="the mount table was read"):
        safe_remove.remove_tree(str(tmp_path / "tree"))
    assert (tmp_path / "tree" / "sub").is_dir()
