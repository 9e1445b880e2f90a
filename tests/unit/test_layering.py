"""The package's layers hold: the pass-through path loads only the stdlib, the entry (cli) and base/.

podman calls its runtime on every create, start, state and delete, and a
call that reaches Python (an unusual argv shape, --config) must still cost
little. So the pass-through path is run in a fresh interpreter, with exec
stubbed out, and every module it loaded is checked: nothing outside the
standard library, runc_ckpt.cli and runc_ckpt.base may appear (no yaml, jsonschema,
zstandard, nor our own heavier layers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

PROBE = r"""
import json, os, sys
os.execv = lambda path, argv: (_ for _ in ()).throw(SystemExit(0))
from runc_ckpt import cli
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""

# Arguments that reach Python's pass-through (the sh front end execs runc for the common ones).
SHAPES = [
    ["state", "web"],
    ["--", "state", "web"],
    ["--root", "/run/x", "--log-format=json", "list"],
    ["delete", "--force", "web"],
]


def _loaded(args: list[str], tmp_path, via_config: bool = False) -> list[str]:
    fake = tmp_path / "runc"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    env = dict(os.environ)
    if via_config:
        cfg = tmp_path / "runc-ckpt.yaml"
        cfg.write_text(f"state_dir: {tmp_path / 'state'}\nrunc: {fake}\ncompress: gzip\n")
        env.pop("RUNC_CKPT_RUNC", None)
        env["RUNC_CKPT_CONFIG"] = str(cfg)
    else:
        env["RUNC_CKPT_RUNC"] = str(fake)
    # -S: site's own imports (.pth hooks) are not the pass-through path's.
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {sys.path!r}\n" + PROBE, *args],
                         capture_output=True, text=True, env=env, check=True, cwd=REPO)
    return json.loads(out.stdout.splitlines()[-1])


def _is_stdlib(name: str) -> bool:
    top = name.split(".", 1)[0]
    return top in sys.stdlib_module_names or top in sys.builtin_module_names or top == "__main__"


@pytest.mark.parametrize("via_config", [False, True], ids=["env", "config-file"])
@pytest.mark.parametrize("args", SHAPES, ids=" ".join)
def test_pass_through_path_loads_only_stdlib_and_base(args, via_config, tmp_path):
    loaded = _loaded(args, tmp_path, via_config)
    ours = [m for m in loaded if m == "runc_ckpt" or m.startswith("runc_ckpt.")]
    assert "runc_ckpt.base.realrunc" in ours, "the probe did not reach the pass-through path"
    outside = [m for m in ours if m not in ("runc_ckpt", "runc_ckpt.cli", "runc_ckpt.base") and not m.startswith("runc_ckpt.base.")]
    foreign = [m for m in loaded if not _is_stdlib(m) and not (m == "runc_ckpt" or m.startswith("runc_ckpt."))]
    assert outside == [], f"pass-through loaded our heavier layers: {outside}"
    assert foreign == [], f"pass-through loaded non-stdlib modules: {foreign}"


def test_probe_sees_a_heavy_import_when_there_is_one(tmp_path):
    """The check can fail: checkpoint --help goes beyond base/, and the probe must see it."""
    loaded = _loaded(["checkpoint", "--help"], tmp_path)
    assert "runc_ckpt.commands.checkpoint" in loaded


# The function-level imports the package keeps, each for a start-up cost it keeps off a path
# (its comment says which): (argv, a module the path must load, modules it must not load).
# Every other import sits at the top of its module.
LAZY = [
    # runc's own restore (podman's, containerd's, CRI-O's): no archive reader, image stack or migration,
    # no CRIU config file writer (--tcp-close), no state query (postrestore hooks)
    (["restore", "--bundle", "{tmp}", "web"], "runc_ckpt.restore.runc_restore",
     ["runc_ckpt.restore.importer", "runc_ckpt.migrate.receiver", "runc_ckpt.migrate.request",
      "runc_ckpt.image.source", "runc_ckpt.runtime.criuconf"]),
    # --help, and a usage error left to runc (exec'd): no flow at all
    (["checkpoint", "--help"], "runc_ckpt.commands.checkpoint",
     ["runc_ckpt.checkpoint.flow", "runc_ckpt.migrate.sender"]),
    (["checkpoint", "--leave-running"], "runc_ckpt.commands.checkpoint",
     ["runc_ckpt.checkpoint.flow", "runc_ckpt.migrate.sender"]),
    (["restore", "--help"], "runc_ckpt.commands.restore",
     ["runc_ckpt.restore.runc_restore", "runc_ckpt.restore.importer", "runc_ckpt.migrate.receiver"]),
    (["restore", "--bundle"], "runc_ckpt.commands.restore",
     ["runc_ckpt.restore.runc_restore", "runc_ckpt.restore.importer", "runc_ckpt.migrate.receiver"]),
    # checkpoint --export FILE: no stream sender (--export - only), no image writers (--create-image only),
    # no TOML parser (podmanstore.storage_graphroot: only for a bundle that names its image; ~12 ms),
    # no PyYAML for a plain config file (settings.plainyaml; import + load ~15 ms), no export writer
    # before the dump (archive.export, ~25 ms: loaded by metadata.hostfacts while runc dumps), and no
    # archive reader nor safeextract (state.transaction's staging sweep takes its prefix from archive.layout; the
    # journaled merge is state.journaledmerge's, an import's only: ~5 ms, 11 modules),
    # and no dataclasses (records are NamedTuples or slotted classes: dataclasses + inspect ~10 ms, ~0.5 ms a class);
    # no packaging before the dump (checkpoint.packaging: config.dump, versions, needs and the platform
    # module, ~8 ms, loaded by metadata.hostfacts while runc dumps), no ctypes (runtime.mounttable: unmounts only),
    # no typing (~2.5 ms: the modules on this path take TYPE_CHECKING = False, base/record.py);
    # no trust/ without a key (7 modules, ~1 ms), no CRIU feature probe (a dump on a parent only), no
    # stats-dump reader (--print-stats: loaded by metadata.hostfacts while runc dumps)
    (["checkpoint", "--export", "{tmp}/out.tar", "web"], "runc_ckpt.checkpoint.flow",
     ["runc_ckpt.migrate.sender", "runc_ckpt.migrate.stream", "runc_ckpt.image.transport",
      "runc_ckpt.image.create", "tomllib", "yaml", "runc_ckpt.archive.export",
      "runc_ckpt.checkpoint.incremental_export", "runc_ckpt.runtime.criu.incremental", "xxhash",
      "runc_ckpt.archive.reader", "gzip", "dataclasses", "inspect", "runc_ckpt.checkpoint.packaging",
      "runc_ckpt.metadata.configdump", "runc_ckpt.metadata.needs", "platform", "ctypes",
      "runc_ckpt.archive.safeextract", "tarfile", "typing", "runc_ckpt.trust", "runc_ckpt.trust.keys",
      "runc_ckpt.trust.sealkeys", "runc_ckpt.trust.sealeddir", "runc_ckpt.trust.imagesdir",
      "runc_ckpt.trust.policy", "runc_ckpt.runtime.criu.features", "runc_ckpt.runtime.criu.stats"]),
    # restore --import FILE with a plain config file: no PyYAML either, nor dataclasses; no libc binding
    # (mounttable.unmount: a leftover's unmount only), no parent check or page hashing (incremental: a dump
    # on a parent only), no state query or datetime (postrestore hooks only; configdump's are annotations)
    (["restore", "--import", "{tmp}/a.tar", "--bundle", "{tmp}", "web"], "runc_ckpt.restore.importer",
     ["yaml", "dataclasses", "inspect", "ctypes", "xxhash", "runc_ckpt.runtime.containerstate", "datetime",
      "runc_ckpt.runtime.criu.incremental"]),
]


@pytest.mark.parametrize(("args", "loaded", "absent"), LAZY, ids=[
    "runc-restore", "checkpoint-help", "checkpoint-to-runc", "restore-help", "restore-to-runc", "export-file",
    "import-file"])
def test_kept_lazy_imports_keep_their_modules_off_the_path(args, loaded, absent, tmp_path):
    mods = _loaded([a.format(tmp=tmp_path) for a in args], tmp_path)
    assert loaded in mods, "the probe did not reach the command"
    assert [m for m in absent if m in mods] == []


@pytest.mark.parametrize(("args", "module"), [
    (["restore", "--import", "{tmp}/a.tar", "--bundle", "{tmp}", "web"], "runc_ckpt.restore.importer"),
    (["restore", "--import", "-", "--bundle", "{tmp}", "web"], "runc_ckpt.migrate.receiver"),
    (["checkpoint", "--export", "-", "web"], "runc_ckpt.migrate.sender"),
    (["checkpoint", "--create-image", "oci:{tmp}/img", "web"], "runc_ckpt.image.transport"),
    (["checkpoint", "web"], "runc_ckpt.checkpoint.flow"),
    (["restore", "--bundle", "{tmp}", "web"], "runc_ckpt.restore.runc_restore"),
    (["checkpoint", "--export", "{tmp}/b.tar", "--incremental-from", "{tmp}/a.tar", "web"],
     "runc_ckpt.checkpoint.incremental_export"),
], ids=["import", "import-stream", "export-stream", "create-image", "checkpoint", "runc-restore", "incremental"])
def test_the_lazy_imports_load_where_they_are_needed(args, module, tmp_path):
    """The other side of LAZY: the probe sees each module once its feature is asked for."""
    assert module in _loaded([a.format(tmp=tmp_path) for a in args], tmp_path)


def test_a_config_file_beyond_the_plain_subset_loads_yaml(tmp_path, monkeypatch):
    """The other side of plainyaml's LAZY entry: a block list is PyYAML's to read."""
    cfg = tmp_path / "block.yaml"
    cfg.write_text(f"state_dir: {tmp_path / 'state'}\nvolume_roots:\n  - /v\n")
    monkeypatch.setenv("RUNC_CKPT_CONFIG", str(cfg))
    assert "yaml" in _loaded(["checkpoint", "--export", f"{tmp_path}/out.tar", "web"], tmp_path)


def test_the_image_reader_forks_before_typing_loads(tmp_path):
    """restore --import FILE forks its CRIU image reader as the entry starts (cli): nothing it imports
    first loads typing (~2.5 ms the reader's pycriu import would start later)."""
    probe = (f"import sys; sys.path[:0] = {sys.path!r}\n"
             "from runc_ckpt import cli\nfrom runc_ckpt.runtime.criu import imagereader\n"
             "print('typing' in sys.modules)")
    out = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["False"]
