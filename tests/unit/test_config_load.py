"""runc-ckpt.yaml: where it is found, defaults, and errors that name the file and the key."""

from __future__ import annotations

import pytest

from runc_ckpt.base import configfile
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.settings import config


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv(config.ENV_VAR, raising=False)


def write(tmp_path, text, name="runc-ckpt.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_missing_default_file_gives_defaults(monkeypatch, tmp_path):
    monkeypatch.setattr(configfile, "DEFAULT_PATH", str(tmp_path / "absent.yaml"))
    cfg = config.load(None)
    assert cfg == config.Config()
    assert cfg.path is None
    assert cfg.compress == "zstd" and cfg.retention == 0 and cfg.export_dir is None


def test_flag_beats_env_beats_default(monkeypatch, tmp_path):
    a = write(tmp_path, "compress: gzip\n", "a.yaml")
    b = write(tmp_path, "compress: none\n", "b.yaml")
    monkeypatch.setenv(config.ENV_VAR, b)
    assert config.load(a).compress == "gzip"
    assert config.load(None).compress == "none"
    assert config.load(None).path == b


def test_every_setting_loads(tmp_path):
    path = write(tmp_path, """
runc: /usr/sbin/runc
state_dir: /var/lib/x
compress: gzip
compress_level: 9
compress_threads: 2
volume_roots: [/v1, /v2]
export_dir: /exports
export_roots: [/exports, /other]
retention: 3
hooks_dir: /etc/hooks
hook_timeout: 2.5
log_level: debug
""")
    cfg = config.load(path)
    assert (cfg.runc, cfg.state_dir, cfg.compress, cfg.compress_level, cfg.compress_threads) == \
        ("/usr/sbin/runc", "/var/lib/x", "gzip", 9, 2)
    assert cfg.volume_roots == ["/v1", "/v2"]
    assert (cfg.export_dir, cfg.export_roots, cfg.retention) == ("/exports", ["/exports", "/other"], 3)
    assert (cfg.hooks_dir, cfg.hook_timeout, cfg.log_level, cfg.path) == ("/etc/hooks", 2.5, "debug", path)
    assert cfg.keys == {"runc", "state_dir", "compress", "compress_level", "compress_threads", "volume_roots",
                        "export_dir", "export_roots", "retention", "hooks_dir", "hook_timeout", "log_level"}


def test_empty_file_gives_defaults_with_path(tmp_path):
    path = write(tmp_path, "# nothing\n")
    cfg = config.load(path)
    assert cfg.compress == "zstd" and cfg.path == path and cfg.keys == frozenset()


@pytest.mark.parametrize("source", ["flag", "env"])
def test_explicitly_named_missing_file_is_an_error(monkeypatch, tmp_path, source):
    missing = str(tmp_path / "nope.yaml")
    if source == "env":
        monkeypatch.setenv(config.ENV_VAR, missing)
    with pytest.raises(RuncCkptError, match=f"config file {missing} .*does not exist"):
        config.load(missing if source == "flag" else None)


@pytest.mark.parametrize("text,key,words", [
    ("compress: lz4\n", "compress", "is not one of"),
    ("compress_level: 0\n", "compress_level", "less than the minimum"),
    ("compress_level: high\n", "compress_level", "not of type 'integer'"),
    ("retention: -1\n", "retention", "less than the minimum"),
    ("hook_timeout: 0\n", "hook_timeout", "less than or equal to the minimum"),
    ("volume_roots: [relative/dir]\n", "volume_roots/0", "not an absolute path"),
    ("export_dir: exports\n", "export_dir", "not an absolute path"),
    ("runc: runc\n", "runc", "not an absolute path"),
    ("log_level: loud\n", "log_level", "is not one of"),
    ("exportdir: /x\n", "exportdir", "unknown key"),
    ("- a\n- b\n", "(top level)", "not of type 'object'"),
])
def test_invalid_values_name_file_and_key(tmp_path, text, key, words):
    path = write(tmp_path, text)
    with pytest.raises(RuncCkptError) as e:
        config.load(path)
    msg = str(e.value)
    assert msg.startswith(f"config file {path}: {key}: "), msg
    assert words in msg


def test_malformed_yaml_is_an_error_naming_the_file(tmp_path):
    path = write(tmp_path, "compress: [zstd\n")
    with pytest.raises(RuncCkptError, match=f"config file {path}: not valid YAML"):
        config.load(path)


def test_directory_instead_of_file_is_an_error(tmp_path):
    with pytest.raises(RuncCkptError, match="Is a directory"):
        config.load(str(tmp_path))


def test_export_dir_null_is_allowed(tmp_path):
    assert config.load(write(tmp_path, "export_dir: null\n")).export_dir is None


def test_attribute_names_other_modules_read():
    cfg = config.Config()
    for name in ("runc", "state_dir", "compress", "compress_level", "compress_threads", "volume_roots"):
        assert hasattr(cfg, name)


def test_schema_and_config_record_list_the_same_keys():
    import json
    from importlib import resources
    schema = json.loads(resources.files("runc_ckpt.settings").joinpath("schemas", "config.schema.json").read_text())
    fields = set(config.Config._fields) - {"path", "keys"}
    assert set(schema["properties"]) == fields


@pytest.mark.parametrize("level,debug", [("debug", True), ("warning", False)])
def test_apply_log_level(level, debug):
    from runc_ckpt.base.globalflags import GlobalFlags
    flags = GlobalFlags()
    config.apply_log_level(config.Config(log_level=level), flags)
    assert flags.debug is debug


def test_apply_log_level_never_turns_debug_off():
    from runc_ckpt.base.globalflags import GlobalFlags
    flags = GlobalFlags()
    flags.debug = True
    config.apply_log_level(config.Config(log_level="warning"), flags)
    assert flags.debug is True


def test_config_loading_stays_off_the_pass_through_imports():
    """globalflags/realrunc/passthrough must not pull in yaml or jsonschema (the hot path)."""
    import subprocess
    import sys
    code = ("import sys; import runc_ckpt.cli, runc_ckpt.base.globalflags, runc_ckpt.base.realrunc, runc_ckpt.base.realrunc, "
            "runc_ckpt.settings.config; print(sorted(m for m in ('yaml', 'jsonschema') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
