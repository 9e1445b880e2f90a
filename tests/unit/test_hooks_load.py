"""Hook definitions: loading, validation errors that name file and key, and selection."""

from __future__ import annotations

import json

import pytest

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.settings import hooks


def define(d, name, body, suffix=".json"):
    p = d / f"{name}{suffix}"
    p.write_text(body if isinstance(body, str) else json.dumps(body))
    return p


def basic(**over):
    body = {"version": "1.0.0", "hook": {"path": "/bin/true"}, "stages": ["precheckpoint"]}
    body.update(over)
    return body


def test_missing_dir_means_no_hooks(tmp_path):
    assert hooks.load(str(tmp_path / "absent")) == []


def test_loads_json_and_yaml_sorted_by_name(tmp_path):
    define(tmp_path, "b", basic(hook={"path": "/bin/echo", "args": ["echo", "hi"], "env": ["A=1"],
                                      "timeout": 2}, when={"always": True}))
    define(tmp_path, "a", "version: '1.0.0'\nhook: {path: /bin/true}\nstages: [postrestore]\n"
                          "when: {annotations: {'^com\\.x$': '^yes$'}}\n", ".yaml")
    define(tmp_path, "c", "version: '1.0.0'\nhook: {path: /bin/true}\nstages: [prerestore]\n", ".yml")
    loaded = hooks.load(str(tmp_path))
    assert [h.name for h in loaded] == ["a", "b", "c"]
    a, b, c = loaded
    assert b.path == "/bin/echo" and b.args == ("echo", "hi") and b.env == ("A=1",) and b.timeout == 2
    assert b.always and b.stages == ("precheckpoint",) and b.file == str(tmp_path / "b.json")
    assert a.args == ("/bin/true",) and a.timeout is None and not a.always
    assert a.matches({"com.x": "yes"}) and not a.matches({"com.x": "no"}) and not a.matches({})


def test_other_files_are_ignored(tmp_path):
    define(tmp_path, "ok", basic())
    for name in ("README.md", "sync.sh", ".hidden.json", "notes.json~"):
        (tmp_path / name).write_text("not a hook {")
    (tmp_path / "dir.json").mkdir()
    assert [h.name for h in hooks.load(str(tmp_path))] == ["ok"]


def test_same_name_twice_is_an_error(tmp_path):
    define(tmp_path, "x", basic())
    define(tmp_path, "x", "version: '1.0.0'\nhook: {path: /bin/true}\nstages: [prerestore]\n", ".yaml")
    with pytest.raises(RuncCkptError, match="hook 'x' is also defined"):
        hooks.load(str(tmp_path))


@pytest.mark.parametrize("body,key,words", [
    (basic(hook={"path": "relative"}), "hook/path", "not an absolute path"),
    (basic(hook={}), "hook", "'path' is a required property"),
    (basic(stages=["predump"]), "stages/0", "is not one of"),
    (basic(stages=[]), "stages", "should be non-empty"),
    (basic(version="2"), "version", "was expected"),
    (basic(hook={"path": "/bin/true", "timeout": 0}), "hook/timeout", "less than or equal to the minimum"),
    (basic(hook={"path": "/bin/true", "env": ["NOEQUALS"]}), "hook/env/0", "does not match"),
    (basic(hook={"path": "/bin/true", "args": "true"}), "hook/args", "not of type 'array'"),
    (basic(when={"allways": True}), "when/allways", "unknown key"),
    (basic(extra=1), "extra", "unknown key"),
    (basic(when={"annotations": {"k": 1}}), "when/annotations/k", "not of type 'string'"),
])
def test_invalid_definition_names_file_and_key(tmp_path, body, key, words):
    p = define(tmp_path, "bad", body)
    with pytest.raises(RuncCkptError) as e:
        hooks.load(str(tmp_path))
    msg = str(e.value)
    assert msg.startswith(f"hook file {p}: {key}: "), msg
    assert words in msg


def test_bad_regex_names_file_and_key(tmp_path):
    p = define(tmp_path, "re", basic(when={"annotations": {"^ok$": "(unclosed"}}))
    with pytest.raises(RuncCkptError, match=rf"hook file {p}: when/annotations/\^ok\$: bad regular expression"):
        hooks.load(str(tmp_path))


def test_malformed_json_and_yaml(tmp_path):
    define(tmp_path, "j", "{not json", ".json")
    with pytest.raises(RuncCkptError, match="j.json: not valid JSON"):
        hooks.load(str(tmp_path))
    (tmp_path / "j.json").unlink()
    define(tmp_path, "y", "hook: [", ".yaml")
    with pytest.raises(RuncCkptError, match="y.yaml: not valid YAML"):
        hooks.load(str(tmp_path))


def test_hooks_dir_not_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(RuncCkptError, match=f"hooks dir {f}"):
        hooks.load(str(f))


def hook(name, stages=("precheckpoint",), always=False, annotations=()):
    import re
    return hooks.Hook(name=name, file=f"/h/{name}.json", path="/bin/true", args=("/bin/true",), env=(),
                      timeout=None, stages=tuple(stages), always=always,
                      annotations=tuple((re.compile(k), re.compile(v)) for k, v in annotations))


def test_select_by_stage_always_annotation_and_name():
    hs = [hook("always", always=True), hook("post", stages=("postcheckpoint",), always=True),
          hook("ann", annotations=[(r"^com\.example\.sync$", "^true$")]), hook("byname"),
          hook("unanchored", annotations=[("sync", "tr")])]
    names = lambda sel: [h.name for h in sel]  # noqa: E731
    assert names(hooks.select(hs, "precheckpoint", {})) == ["always"]
    assert names(hooks.select(hs, "precheckpoint", {"com.example.sync": "true"})) == ["always", "ann", "unanchored"]
    assert names(hooks.select(hs, "precheckpoint", {"com.example.sync": "false"})) == ["always"]
    assert names(hooks.select(hs, "precheckpoint", None, ["byname"])) == ["always", "byname"]
    assert names(hooks.select(hs, "postcheckpoint", {}, ["byname"])) == ["post"]
    assert names(hooks.select(hs, "prerestore", {"com.example.sync": "true"})) == []


def test_select_unknown_enabled_name_is_an_error():
    with pytest.raises(RuncCkptError, match="annotation io.runc-ckpt.hooks: no hook named nope"):
        hooks.select([hook("a")], "precheckpoint", {}, ["a", "nope"])


def test_select_unknown_stage_is_a_programming_error():
    with pytest.raises(ValueError):
        hooks.select([], "predump", {})


def test_schema_copy_in_hooks_folder_is_the_packaged_one():
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    shipped = repo / "plugin" / "runc_ckpt" / "settings" / "schemas" / "hook.schema.json"
    assert (repo / "hooks" / "hook.schema.json").read_text() == shipped.read_text()


def test_readme_example_is_a_valid_definition(tmp_path):
    """The format example in hooks/README.md must stay loadable."""
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[2] / "hooks" / "README.md").read_text()
    block = re.search(r"```json\n(.*?)```", readme, re.S)
    assert block is not None
    define(tmp_path, "example", block.group(1))
    (h,) = hooks.load(str(tmp_path))
    assert h.args == ("sync.sh", "--verbose") and h.timeout == 20 and h.stages == ("precheckpoint",)
    assert h.matches({"com.example.sync": "true"}) and not h.matches({"com.example.sync": "false"})
