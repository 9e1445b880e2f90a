"""Policy: flag > annotation > config > default, and annotation errors that name the annotation."""

from __future__ import annotations

import pytest

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.settings.config import Config
from runc_ckpt.settings.policy import ANNOTATIONS, Policy, effective

P = "io.runc-ckpt."


def cfg(**kw) -> Config:
    """A Config as load() makes it from a file that sets the keys in kw."""
    return Config(**kw, path="/etc/test.yaml", keys=frozenset(kw))


def test_defaults_without_config_file():
    pol = effective(Config(), None, None)
    assert pol.compress == "zstd" and pol.compress_level == 3 and pol.export_dir is None
    assert pol.export_dir is None
    assert (pol.tcp_established, pol.file_locks, pol.ignore_rootfs, pol.ignore_volumes) == (False,) * 4
    assert pol.extra_volumes == () and pol.hooks == ()
    assert pol.sources["compress"] == "default"


def test_config_beats_default():
    pol = effective(cfg(compress="gzip", export_dir="/exp", retention=2, hook_timeout=4), {}, {})
    assert (pol.compress, pol.export_dir, pol.retention, pol.hook_timeout) == ("gzip", "/exp", 2, 4.0)
    assert pol.export_dir is not None
    assert pol.sources["compress"] == "config /etc/test.yaml"


def test_annotation_beats_config():
    pol = effective(cfg(compress="gzip", retention=5), {P + "compress": "none", P + "retention": "1"}, {})
    assert pol.compress == "none" and pol.retention == 1
    assert pol.sources["compress"] == "annotation io.runc-ckpt.compress"
    assert pol.sources["retention"] == "annotation io.runc-ckpt.retention"


def test_flag_beats_annotation():
    pol = effective(cfg(compress="gzip"), {P + "compress": "none", P + "tcp-established": "true"},
                    {"compress": "zstd", "tcp_established": False})
    assert pol.compress == "zstd" and pol.tcp_established is False
    assert pol.sources["compress"] == "flag --compress"
    assert pol.sources["tcp_established"] == "flag --tcp-established"


def test_flags_policy_does_not_cover_are_ignored():
    pol = effective(Config(), {}, {"leave_running": True, "image_path": "/x", "export": "/a.tar"})
    assert pol == effective(Config(), {}, {})


def test_bad_compress_flag_value_is_an_error():
    with pytest.raises(RuncCkptError, match="--compress"):
        effective(Config(), {}, {"compress": "lz4"})


@pytest.mark.parametrize("key,field", [("tcp-established", "tcp_established"), ("file-locks", "file_locks"),
                                       ("ignore-rootfs", "ignore_rootfs"), ("ignore-volumes", "ignore_volumes")])
@pytest.mark.parametrize("raw,value", [("true", True), ("1", True), ("True", True), ("false", False),
                                       ("0", False), (" true ", True)])
def test_boolean_annotations(key, field, raw, value):
    pol = effective(Config(), {P + key: raw}, {})
    assert getattr(pol, field) is value


@pytest.mark.parametrize("key", ["tcp-established", "file-locks", "ignore-rootfs", "ignore-volumes"])
@pytest.mark.parametrize("raw", ["yes", "", "on", "2"])
def test_non_boolean_names_the_annotation(key, raw):
    with pytest.raises(RuncCkptError, match=f"^annotation {P}{key}: .* is not a boolean"):
        effective(Config(), {P + key: raw}, {})


@pytest.mark.parametrize("raw", ["lz4", "ZSTD", ""])
def test_unknown_compression_names_the_annotation(raw):
    with pytest.raises(RuncCkptError, match=f"^annotation {P}compress: unknown compression"):
        effective(Config(), {P + "compress": raw}, {})


@pytest.mark.parametrize("raw,ok", [("1", True), ("22", True), ("0", False), ("23", False), ("x", False),
                                    ("-3", False)])
def test_compress_level_annotation(raw, ok):
    ann = {P + "compress-level": raw}
    if ok:
        assert effective(Config(), ann, {}).compress_level == int(raw)
    else:
        with pytest.raises(RuncCkptError, match=f"^annotation {P}compress-level: "):
            effective(Config(), ann, {})


@pytest.mark.parametrize("raw", ["-1", "many", "1.5", ""])
def test_bad_retention_names_the_annotation(raw):
    with pytest.raises(RuncCkptError, match=f"^annotation {P}retention: "):
        effective(Config(), {P + "retention": raw}, {})


def test_unknown_key_under_prefix_names_it():
    with pytest.raises(RuncCkptError, match=f"^annotation {P}export_dir: unknown runc-ckpt annotation"):
        effective(Config(), {P + "export_dir": "/x"}, {})


def test_other_annotations_are_ignored():
    pol = effective(Config(), {"io.podman.annotations.autoremove": "TRUE", "org.criu.config": "",
                               "io.runc-ckptx": "1"}, {})
    assert pol == effective(Config(), {}, {})


def test_non_string_value_names_the_annotation():
    with pytest.raises(RuncCkptError, match=f"^annotation {P}file-locks: value must be a string"):
        effective(Config(), {P + "file-locks": True}, {})


def test_annotations_not_an_object():
    with pytest.raises(RuncCkptError, match="annotations"):
        effective(Config(), ["a"], {})  # type: ignore[arg-type]


def test_export_dir_annotation_inside_export_roots(tmp_path):
    root = tmp_path / "exports"
    root.mkdir()
    c = cfg(export_roots=[str(root)])
    assert effective(c, {P + "export-dir": str(root)}, {}).export_dir == str(root)
    sub = effective(c, {P + "export-dir": str(root / "team-a")}, {})
    assert sub.export_dir == str(root / "team-a") and sub.export_dir is not None
    assert sub.sources["export_dir"] == "annotation io.runc-ckpt.export-dir"


@pytest.mark.parametrize("value", ["/etc/cron.d", "relative/dir", "{root}/../escape", "{root}x"])
def test_export_dir_annotation_outside_export_roots_is_refused(tmp_path, value):
    root = tmp_path / "exports"
    root.mkdir()
    with pytest.raises(RuncCkptError, match=f"^annotation {P}export-dir: "):
        effective(cfg(export_roots=[str(root)]), {P + "export-dir": value.format(root=root)}, {})


def test_export_dir_annotation_through_symlink_out_is_refused(tmp_path):
    root = tmp_path / "exports"
    root.mkdir()
    (root / "link").symlink_to("/etc")
    with pytest.raises(RuncCkptError, match="outside"):
        effective(cfg(export_roots=[str(root)]), {P + "export-dir": str(root / "link")}, {})


def test_export_dir_annotation_below_the_configs_export_dir(tmp_path):
    c = cfg(export_dir=str(tmp_path), export_roots=[])
    assert effective(c, {P + "export-dir": str(tmp_path / "sub")}, {}).export_dir == str(tmp_path / "sub")
    with pytest.raises(RuncCkptError, match="outside"):
        effective(c, {P + "export-dir": "/var/tmp"}, {})


def test_empty_export_dir_annotation_turns_auto_export_off():
    pol = effective(cfg(export_dir="/exp"), {P + "export-dir": ""}, {})
    assert pol.export_dir is None


def test_volumes_annotation():
    pol = effective(Config(), {P + "volumes": " /data, /srv/cache/ ,,/data"}, {})
    assert pol.extra_volumes == ("/data", "/srv/cache")


@pytest.mark.parametrize("raw", ["data", "/ok,rel", "/a/../b"])
def test_bad_volumes_annotation(raw):
    with pytest.raises(RuncCkptError, match=f"^annotation {P}volumes: "):
        effective(Config(), {P + "volumes": raw}, {})


def test_hooks_annotation():
    assert effective(Config(), {P + "hooks": "sync, notify,sync"}, {}).hooks == ("sync", "notify")


@pytest.mark.parametrize("raw", ["../x", "a b", "x/y"])
def test_bad_hooks_annotation(raw):
    with pytest.raises(RuncCkptError, match=f"^annotation {P}hooks: "):
        effective(Config(), {P + "hooks": raw}, {})


def test_every_annotation_has_a_test_here():
    import inspect
    import sys
    text = inspect.getsource(sys.modules[__name__])
    for key in ANNOTATIONS:
        assert f'"{key}"' in text, key


def test_runc_flags_adds_what_policy_turned_on_and_the_caller_did_not_pass():
    pol = effective(Config(), {P + "tcp-established": "true", P + "file-locks": "true"}, {})
    assert pol.runc_flags(set()) == ["--tcp-established", "--file-locks"]
    assert pol.runc_flags({"file_locks"}) == ["--tcp-established"]
    assert effective(Config(), {}, {}).runc_flags(set()) == []


def test_unset_config_keys_are_reported_as_defaults():
    pol = effective(cfg(retention=4), {}, {})
    assert pol.sources["retention"] == "config /etc/test.yaml"
    assert pol.sources["compress"] == "default"
    assert "compress=zstd (default)" in pol.describe()


def test_describe_names_every_source():
    pol = effective(cfg(compress="gzip"), {P + "file-locks": "1"}, {"tcp_established": True})
    line = pol.describe()
    assert "compress=gzip (config /etc/test.yaml)" in line
    assert "file_locks=True (annotation io.runc-ckpt.file-locks)" in line
    assert "tcp_established=True (flag --tcp-established)" in line


def test_policy_is_frozen():
    pol = effective(Config(), {}, {})
    with pytest.raises(AttributeError):
        pol.compress = "none"  # type: ignore[misc]


@pytest.mark.parametrize("export_dir,pre_dump,want", [(None, False, False), ("/x", False, True),
                                                      ("/x", True, False)])
def test_auto_export_only_of_a_complete_checkpoint(export_dir, pre_dump, want):
    assert Policy(export_dir=export_dir).auto_exports(pre_dump) is want
