"""runtime/writeback: the bytes the page cache may still dirty before background writeback, from a fake
/proc laid out as the kernel's (meminfo in kB, vm.dirty_* sysctls)."""

from __future__ import annotations

import pytest

from runc_ckpt.runtime import writeback

MIB = 1 << 20


def _proc(tmp_path, free_kb: int, dirty_kb: int, writeback_kb: int, vm: dict[str, int]):
    (tmp_path / "sys" / "vm").mkdir(parents=True)
    (tmp_path / "meminfo").write_text(
        f"MemTotal:       {4 * free_kb} kB\nMemFree:        {free_kb} kB\nActive(file):   {free_kb // 2} kB\n"
        f"Inactive(file): {free_kb // 2} kB\nDirty:          {dirty_kb} kB\nWriteback:      {writeback_kb} kB\n"
        "HugePages_Total:       0\n")
    for name in ("dirty_background_bytes", "dirty_background_ratio", "dirty_bytes", "dirty_ratio"):
        (tmp_path / "sys" / "vm" / name).write_text(f"{vm.get(name, 0)}\n")
    return str(tmp_path)


@pytest.mark.parametrize("vm, want", [
    ({"dirty_background_ratio": 10, "dirty_ratio": 20}, 2048 * MIB // 10 - 30 * MIB),   # 10 % of free + file
    ({"dirty_background_bytes": 100 * MIB, "dirty_ratio": 20}, 70 * MIB),                 # bytes win over ratio
    ({"dirty_background_ratio": 50, "dirty_bytes": 200 * MIB}, 70 * MIB),                 # not below the limit: half it
    ({"dirty_background_bytes": 20 * MIB, "dirty_ratio": 20}, 0),                         # already over: no room
])
def test_headroom_is_the_background_threshold_less_what_is_dirty(tmp_path, vm, want):
    proc = _proc(tmp_path, 1024 * 1024, 20 * 1024, 10 * 1024, vm)
    assert writeback.headroom(proc) == want


def test_unreadable_figures_say_unknown(tmp_path):
    assert writeback.headroom(str(tmp_path)) is None
    proc = _proc(tmp_path, 1024, 0, 0, {"dirty_ratio": 20})
    (tmp_path / "meminfo").write_text("MemFree: 1024 kB\n")                              # no Dirty line
    assert writeback.headroom(proc) is None
