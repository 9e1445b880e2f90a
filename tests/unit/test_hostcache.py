"""Host facts cached per binary and boot (runtime.hostcache): asked once, asked again when anything they
depend on changes, and a cache that lies about the key or is corrupt never answers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runc_ckpt.metadata import configdump
from runc_ckpt.runtime import atomicfile, hostcache
from runc_ckpt.runtime.criu import cpuinfo

OWN_IMAGE = b"cpu-of-this-host"


def _tool(path: Path, body: str) -> str:
    """A fake tool that logs each run (argv) to <path>.log, then runs body."""
    path.write_text(f'#!/bin/sh\necho "$*" >> "{path}.log"\n{body}\n')
    path.chmod(0o755)
    return str(path)


def _runs(tool: str) -> list[str]:
    log = Path(tool + ".log")
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def boot(tmp_path, monkeypatch) -> Path:
    """This 'boot': a boot ID file the test can change."""
    path = tmp_path / "boot_id"
    path.write_text("11111111-2222-3333-4444-555555555555\n")
    monkeypatch.setattr(hostcache, "BOOT_ID", str(path))
    return path


@pytest.fixture
def tools(tmp_path, boot) -> tuple[str, str]:
    runc = _tool(tmp_path / "runc", "echo 'runc version 1.1.5'; echo 'commit: v1.1.5'")
    # criu: --version; cpuinfo dump writes OWN_IMAGE into -D DIR; cpuinfo check always refuses (so a pass
    # can only come from the cache).
    criu = _tool(tmp_path / "criu", f"""case "$1 $2" in
    "--version ") echo 'Version: 4.2.1' ;;
    "cpuinfo dump") printf %s '{OWN_IMAGE.decode()}' > "$4/cpuinfo.img" ;;
    "cpuinfo check") echo 'Error (cpu.c:1): CPU feature avx512f not present' > "$6"; exit 1 ;;
esac""")
    return runc, criu


def test_versions_are_asked_once_per_binary_and_boot(tools, tmp_path, boot):
    runc, criu = tools
    state = str(tmp_path / "state")
    first = configdump.versions(runc, criu, state)
    assert first["runc"] == "1.1.5" and first["criu"] == "4.2.1"
    assert configdump.versions(runc, criu, state) == first
    assert (len(_runs(runc)), len(_runs(criu))) == (1, 1), "the second call ran the tools again"
    boot.write_text("99999999-2222-3333-4444-555555555555\n")          # a reboot: asked again
    assert configdump.versions(runc, criu, state) == first
    assert (len(_runs(runc)), len(_runs(criu))) == (2, 2)
    _tool(Path(runc), "echo 'runc version 1.1.6'")                     # a new runc at the same path
    assert configdump.versions(runc, criu, state)["runc"] == "1.1.6"


def test_versions_without_a_state_dir_ask_every_time(tools):
    runc, criu = tools
    configdump.versions(runc, criu)
    configdump.versions(runc, criu)
    assert len(_runs(runc)) == 2


def test_an_unknown_version_is_not_cached(tmp_path, boot):
    runc = _tool(tmp_path / "runc", "exit 1")
    state = str(tmp_path / "state")
    assert configdump.versions(runc, "no-such-criu", state)["runc"] == "unknown"
    assert configdump.versions(runc, "no-such-criu", state)["runc"] == "unknown"
    assert len(_runs(runc)) == 2


def test_cpuinfo_dump_is_cached_and_this_hosts_own_image_passes_without_criu(tools, tmp_path):
    _, criu = tools
    state = str(tmp_path / "state")
    assert cpuinfo.dump(criu, state) == OWN_IMAGE
    assert cpuinfo.dump(criu, state) == OWN_IMAGE
    assert _runs(criu) == [f"cpuinfo dump -D {_runs(criu)[0].split()[-1]}"]
    # The same CPU against itself passes: CRIU (which here refuses everything) is not run.
    assert cpuinfo.check(criu, OWN_IMAGE, state).ok
    assert len(_runs(criu)) == 1


@pytest.mark.parametrize("case", ["another CPU's image", "no state dir", "nothing cached", "another boot"])
def test_every_other_cpu_check_runs_criu(tools, tmp_path, boot, case):
    _, criu = tools
    state = str(tmp_path / "state")
    if case != "nothing cached":
        cpuinfo.dump(criu, state)
    if case == "another boot":
        boot.write_text("99999999-2222-3333-4444-555555555555\n")
    image = OWN_IMAGE + b"-avx512" if case == "another CPU's image" else OWN_IMAGE
    verdict = cpuinfo.check(criu, image, None if case == "no state dir" else state)
    assert not verdict.ok and "avx512f" in verdict.detail
    assert _runs(criu)[-1].startswith("cpuinfo check")


def test_a_cache_under_another_key_or_corrupt_never_answers(tools, tmp_path):
    _, criu = tools
    state = str(tmp_path / "state")
    cpuinfo.dump(criu, state)
    script = Path(criu).read_text()
    os.unlink(criu)                     # the same CRIU text, reinstalled: another inode, so another key
    Path(criu).write_text(script)
    Path(criu).chmod(0o755)
    assert not cpuinfo.check(criu, OWN_IMAGE, state).ok
    cpuinfo.dump(criu, state)
    cache = Path(state) / (cpuinfo.CACHE_NAME + ".json")
    doc = json.loads(cache.read_text())
    for text in ("{not json", '{"key": 1}', "[]", json.dumps({**doc, "value": "!!not base64"}),
                 json.dumps({"key": {**doc["key"], "boot": "another"}, "value": doc["value"]})):
        cache.write_text(text)
        assert not cpuinfo.check(criu, OWN_IMAGE, state).ok, text
    cache.write_text(json.dumps(doc))
    assert cpuinfo.check(criu, OWN_IMAGE, state).ok, "the test's own cache should answer"


@pytest.mark.parametrize("value", ["!!not base64", 5, ["a"]], ids=["bad-base64", "a-number", "a-list"])
def test_a_damaged_cached_image_is_dumped_again(tools, tmp_path, value):
    """dump() and check() read the cached image through one decoder: a damaged value asks CRIU again."""
    _, criu = tools
    state = str(tmp_path / "state")
    cpuinfo.dump(criu, state)
    cache = Path(state) / (cpuinfo.CACHE_NAME + ".json")
    cache.write_text(json.dumps({**json.loads(cache.read_text()), "value": value}))
    runs = len(_runs(criu))
    assert cpuinfo.dump(criu, state) == OWN_IMAGE
    assert _runs(criu)[runs:] and _runs(criu)[-1].startswith("cpuinfo dump")


def test_an_unwritable_cache_dir_still_answers(tools, tmp_path):
    runc, criu = tools
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert configdump.versions(runc, criu, str(blocker / "state"))["runc"] == "1.1.5"


def test_a_killed_writers_temp_file_goes_with_the_next_write(tools, tmp_path):
    """A tree kill while the host-facts thread wrote the cache left its temp file (unheld): the next
    call misses the cache, asks again, and its write sweeps the dead temp; a live writer's stays."""
    runc, criu = tools
    state = tmp_path / "state"
    state.mkdir()
    dead = state / ".criu-cpuinfo.json.runc-ckpt-deadbeef.tmp"
    dead.write_text('{"key": ')
    live_fd, live = atomicfile.locked_temp(str(state), "criu-cpuinfo.json")   # flock held: a live writer
    other = state / ".lock.runc-ckpt-cafef00d.tmp"                        # another file's temp: not ours to sweep
    other.write_text("")
    try:
        assert cpuinfo.dump(criu, str(state)) == OWN_IMAGE
        assert not dead.exists()
        assert os.path.exists(live) and other.exists()
        assert json.loads((state / "criu-cpuinfo.json").read_text())["value"]
    finally:
        os.close(live_fd)
