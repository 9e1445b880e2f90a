"""predump: image/work/parent paths and the pre-checkpoint chain layout, without runc."""

from __future__ import annotations

import os

import pytest

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.state import predump
from runc_ckpt.state.predump import CallerPaths


def test_parent_must_be_relative_in_runcs_words(tmp_path):
    with pytest.raises(RuncCkptError, match="^--parent-path must be relative$"):
        predump.validate_parent(str(tmp_path / "img"), str(tmp_path / "pre"))


def test_parent_is_resolved_from_the_image_dir_even_before_it_exists(tmp_path):
    (tmp_path / "pre").mkdir()
    predump.validate_parent(str(tmp_path / "img"), "../pre")
    with pytest.raises(RuncCkptError, match="is not a directory"):
        predump.validate_parent(str(tmp_path / "img"), "pre")


def test_parent_through_a_symlinked_image_dir_is_resolved_like_the_kernel(tmp_path):
    real = tmp_path / "real"
    (real / "img").mkdir(parents=True)
    (real / "pre").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "img").symlink_to(real / "img")
    predump.validate_parent(str(tmp_path / "elsewhere" / "img"), "../pre")
    assert predump.relative_parent(str(tmp_path / "elsewhere" / "img"), str(real / "pre")) == "../pre"


def test_absolute_parent_link_is_made_relative(tmp_path):
    (tmp_path / "pre.1").mkdir()
    img = tmp_path / "img"
    img.mkdir()
    (img / "parent").symlink_to(tmp_path / "pre.1")
    predump.make_parent_link_relative(str(img))
    assert os.readlink(img / "parent") == "../pre.1"
    assert (img / "parent").resolve() == (tmp_path / "pre.1")
    assert sorted(os.listdir(img)) == ["parent"]


def test_relative_parent_link_is_left_alone(tmp_path):
    img = tmp_path / "img"
    img.mkdir()
    (img / "parent").symlink_to("../somewhere")
    predump.make_parent_link_relative(str(img))
    assert os.readlink(img / "parent") == "../somewhere"


def test_numbered_ignores_other_names_files_and_links(tmp_path):
    for name in ("pre-checkpoint.1", "pre-checkpoint.10", "pre-checkpoint.x", "checkpoint"):
        (tmp_path / name).mkdir()
    (tmp_path / "pre-checkpoint.3").write_text("a file")
    (tmp_path / "pre-checkpoint.4").symlink_to("pre-checkpoint.1")
    (tmp_path / "pre-checkpoint").symlink_to("pre-checkpoint.10")
    assert predump.numbered(str(tmp_path)) == [1, 10]
    assert predump.newest_pre(str(tmp_path)) == "pre-checkpoint.10"


@pytest.mark.parametrize("target", ["pre-checkpoint.9", "../elsewhere", "checkpoint"])
def test_a_dangling_or_foreign_pointer_is_no_chain(tmp_path, target):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "pre-checkpoint").symlink_to(target)
    assert predump.newest_pre(str(tmp_path)) is None


def test_plan_for_caller_paths_adds_nothing_but_what_our_flags_imply(tmp_path):
    b = tmp_path / "bundle"
    p = predump.plan(str(tmp_path / "state"), "c", CallerPaths(image_path=str(b / "pre-checkpoint"),
                                                               work_path=str(b)), True, False)
    assert p.add_flags == ["--pre-dump"] and not p.ours
    assert (p.image_dir, p.work_dir, p.final_dir) == (str(b / "pre-checkpoint"), str(b), str(b / "pre-checkpoint"))


def test_plan_without_work_path_logs_into_the_image_dir_like_runc(tmp_path):
    p = predump.plan(str(tmp_path / "s"), "c", CallerPaths(image_path="rel/img"), False, False)
    assert p.work_dir == p.image_dir == os.path.abspath("rel/img")


def test_plan_ours_with_callers_work_path(tmp_path):
    w = tmp_path / "w"
    p = predump.plan(str(tmp_path / "s"), "c", CallerPaths(work_path=str(w)), False, False)
    assert p.ours and not p.own_work and p.work_dir == str(w)
    assert p.add_flags == ["--image-path", p.image_dir]


@pytest.mark.parametrize("cid", ["..", ".", "a/b", ""])
def test_plan_refuses_ids_that_are_not_one_path_component(tmp_path, cid):
    with pytest.raises(RuncCkptError, match="invalid container id"):
        predump.plan(str(tmp_path), cid, CallerPaths(), False, False)


def test_plan_refuses_with_previous_and_a_callers_parent(tmp_path):
    with pytest.raises(RuncCkptError, match="both name the parent"):
        predump.plan(str(tmp_path), "c", CallerPaths(parent_path="../x"), False, True)


def test_failed_pre_dump_dir_is_dropped_and_number_reused(tmp_path):
    state = str(tmp_path / "state")
    p = predump.plan(state, "c", CallerPaths(), True, False)
    predump.prepare(p)
    assert os.path.isdir(p.image_dir) and os.path.isdir(p.work_dir)
    predump.abandon(p)
    assert not os.path.exists(p.image_dir)
    assert predump.plan(state, "c", CallerPaths(), True, False).image_dir == p.image_dir


def test_prepare_clears_our_stale_logs_only(tmp_path):
    state = str(tmp_path / "state")
    p = predump.plan(state, "c", CallerPaths(), False, False)
    os.makedirs(p.work_dir)
    for name in ("dump.log", "stats-dump", "other"):
        open(os.path.join(p.work_dir, name), "w").close()
    predump.prepare(p)
    assert os.listdir(p.work_dir) == ["other"]


def test_tidy_after_export_never_touches_caller_paths(tmp_path):
    img = tmp_path / "img"
    img.mkdir()
    (img / "inventory.img").write_text("x")
    (img / "stats-dump").write_text("x")
    p = predump.plan(str(tmp_path / "s"), "c", CallerPaths(image_path=str(img)), False, False)
    assert predump.tidy_after_export(p) == []
    assert sorted(os.listdir(img)) == ["inventory.img", "stats-dump"]


def test_a_leftover_in_progress_dir_of_a_dead_run_is_replaced(tmp_path):
    p = predump.plan(str(tmp_path / "state"), "c", CallerPaths(), False, False)
    os.makedirs(p.image_dir)
    open(os.path.join(p.image_dir, "pages-1.img"), "w").close()
    predump.prepare(p)
    assert os.listdir(p.image_dir) == []


def test_the_plan_says_once_whether_the_callers_images_dir_is_sealed(tmp_path):
    """checkpoint/flow asks the plan (node-level encryption: dump to tmpfs, seal into --image-path)."""
    shm = str(tmp_path / "shm" / "runc-ckpt-images-x")
    state = str(tmp_path / "s")
    caller = CallerPaths(image_path=str(tmp_path / "img"))
    assert predump.plan(state, "c", caller, False, False, False, shm).seals_caller_dir
    assert not predump.plan(state, "c", caller, False, False, False).seals_caller_dir
    # an encrypted export's dump is on tmpfs too, but its images are ours (the state dir links them)
    assert not predump.plan(state, "c", CallerPaths(), False, False, True, shm).seals_caller_dir
    # a pre-dump chain is not sealed: the caller's dir gets CRIU's images as runc writes them
    pre = CallerPaths(image_path=str(tmp_path / "img"), pre_dump=True)
    assert not predump.plan(state, "c", pre, False, False, False, shm).seals_caller_dir
