"""Two real full dumps make an incremental image that plain runc restores with the process's memory intact."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pycriu.images
import pytest

from runc_ckpt.runtime.criu import incremental
from tests.conftest import require_tool
from tests.integration.conftest import runc, wait_for

# What the page workloads share: a page's content from (page, generation), and files written whole.
PAGES_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define PG 4096
static void fill(unsigned char *p, unsigned long page, unsigned long gen) {
    unsigned long long x = 0x9E3779B97F4A7C15ULL * (page + 1) ^ (gen + 1) * 0xD1B54A32D192ED03ULL;
    for (int j = 0; j < PG; j += 8) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; *(unsigned long long *)(p + j) = x; }
}
static int exists(const char *f) { struct stat st; return stat(f, &st) == 0; }
static void put(const char *f, const char *text) {
    char tmp[64]; snprintf(tmp, sizeof tmp, "%s.tmp", f);
    int fd = open(tmp, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (write(fd, text, strlen(text)) < 0) exit(2);
    close(fd); rename(tmp, f);
}
"""

# Fills MIB MiB page by page from (page, generation), then on /change: rewrites every EVERY-th page, unmaps the
# last 64 pages and maps 64 new ones (which may land on the old addresses). On /verify it checks every page it
# still has against what it must hold and writes "ok <pages>" or "bad <count>" to /result.
TOUCHER_C = PAGES_C + r"""
int main(int argc, char **argv) {
    unsigned long n = strtoul(argv[1], 0, 10) << 8, every = strtoul(argv[2], 0, 10), extra = 64, keep = n;
    unsigned char *p = mmap(0, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), *q = 0;
    unsigned char want[PG];
    int changed = 0;
    for (unsigned long i = 0; i < n; i++) fill(p + i * PG, i, 0);
    put("/ready", "");
    for (;;) {
        usleep(20000);
        if (!changed && exists("/change")) {
            for (unsigned long i = 0; i < n; i += every) fill(p + i * PG, i, 1);
            keep = n - extra;
            munmap(p + keep * PG, extra * PG);
            q = mmap(0, extra * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            for (unsigned long i = 0; i < extra; i++) fill(q + i * PG, n + i, 2);
            changed = 1;
            put("/changed", "");
        }
        if (exists("/verify")) {
            unsigned long bad = 0, seen = 0;
            char out[64];
            unlink("/verify");
            for (unsigned long i = 0; i < keep; i++, seen++) {
                fill(want, i, changed && i % every == 0);
                bad += memcmp(want, p + i * PG, PG) != 0;
            }
            for (unsigned long i = 0; q && i < extra; i++, seen++) {
                fill(want, n + i, 2);
                bad += memcmp(want, q + i * PG, PG) != 0;
            }
            snprintf(out, sizeof out, bad ? "bad %lu" : "ok %lu", bad ? bad : seen);
            put("/result", out);
        }
    }
}
"""
MIB = 64
EVERY = 10


def static_program(tmp_path_factory: pytest.TempPathFactory, name: str, source: str) -> Path:
    """The C program `source` built static (it runs in a busybox container) as a file named `name`."""
    gcc = require_tool("gcc")
    work = tmp_path_factory.mktemp(name)
    (work / f"{name}.c").write_text(source)
    subprocess.run([gcc, "-static", "-O2", "-o", str(work / name), str(work / f"{name}.c")], check=True)
    return work / name


@pytest.fixture(scope="session")
def toucher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return static_program(tmp_path_factory, "toucher", TOUCHER_C)


def _pages_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("pages-*.img"))


def _verify(rootfs: Path) -> str:
    (rootfs / "result").unlink(missing_ok=True)
    (rootfs / "verify").write_text("")
    wait_for(lambda: (rootfs / "result").exists(), timeout=30, what="the workload's own memory check")
    return (rootfs / "result").read_text()


def _dump(containers, cid: str, image: Path, *flags: str) -> None:
    out = runc(containers.root, "checkpoint", *flags, "--image-path", str(image), "--work-path",
               str(image.parent / f"{image.name}-work"), cid, check=False, timeout=120)
    assert out.returncode == 0, out.stderr


def test_incremental_image_restores_with_plain_runc(make_bundle, containers, toucher, tmp_path):
    b = make_bundle(args=["/toucher", str(MIB), str(EVERY)])
    subprocess.run(["cp", str(toucher), str(b.rootfs / "toucher")], check=True)
    cid = containers.run(b, cid=f"incr-{os.urandom(4).hex()}")
    wait_for(lambda: (b.rootfs / "ready").exists(), timeout=30, what="the workload to fill its memory")
    p0, p1, p1x = tmp_path / "p0", tmp_path / "p1", tmp_path / "p1x"
    _dump(containers, cid, p0, "--leave-running")
    (b.rootfs / "change").write_text("")
    wait_for(lambda: (b.rootfs / "changed").exists(), timeout=30, what="the workload to change its memory")
    _dump(containers, cid, p1)
    assert containers.status(cid) is None

    result = incremental.build(str(p0), str(p1), str(p1x))

    assert os.readlink(p1x / "parent") == "../p0"
    total = MIB << 8
    assert result.pages >= total
    # a tenth of the buffer, the 64 new pages and the workload's stack and data: nothing else crosses
    assert result.kept < total // EVERY + 64 + 200, result
    assert _pages_bytes(p1x) == result.kept * incremental.PAGE
    assert _pages_bytes(p1x) < _pages_bytes(p1) // 5
    # what `crit show` prints (crit's decode(): pycriu.images.load with pretty): CRIU's own names for the flags
    with open(next(p1x.glob("pagemap-*.img")), "rb") as f:
        shown = pycriu.images.load(f, True)
    flags = {e.get("flags") for e in shown["entries"][1:]}
    assert "PE_PARENT" in flags and {"PE_PRESENT", "PE_LAZY | PE_PRESENT"} & flags, flags

    out = runc(containers.root, "restore", "-d", "--image-path", str(p1x), "--work-path", str(tmp_path / "rw"),
               "--bundle", str(b.path), cid, check=False, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr + (tmp_path / "rw" / "restore.log").read_text()[-3000:]
    assert containers.status(cid) == "running"
    assert _verify(b.rootfs) == f"ok {total}"
