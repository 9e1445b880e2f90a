"""Answers of this host's tools that change only with the tool or the boot, cached in the state dir.

`runc --version`, `criu --version`, `criu cpuinfo dump` and `criu check
--feature` answer the same until the binary is replaced, the kernel changes or
the machine reboots, yet each is a fork and exec (3-40 ms; the cpuinfo dump
~40 ms of CPU) that a tiny checkpoint or restore paid every time: about a
third of runc-ckpt's own time beside runc's. Each answer is kept in
<state_dir>/<name>.json under a key that names all it depends on: the
binary's identity (real path, device, inode, size, mtime, ctime: a replaced,
rebuilt or touched binary changes it), the kernel release and the boot
(/proc/sys/kernel/random/boot_id). Any other key is a miss and the tool is
asked again. The file is only ever a cache, in the state dir runc-ckpt alone
writes (0700): unreadable, corrupt or unwritable costs a re-ask, never an
answer from another binary or boot. A failed question is not cached.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from runc_ckpt.runtime import atomicfile

BOOT_ID = "/proc/sys/kernel/random/boot_id"
JSONValue = str | bool | int | float | list[object] | dict[str, object]


def binary_key(path: str) -> dict[str, object]:
    """What identifies one build of a binary on this host (OSError if it is gone)."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return {"path": real, "dev": st.st_dev, "ino": st.st_ino, "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, **_boot()}


def _boot() -> dict[str, str]:
    try:
        with open(BOOT_ID, encoding="ascii") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""      # no boot ID (not Linux's procfs): the kernel release alone
    return {"kernel": os.uname().release, "boot": boot}


def lookup(cache_dir: str, name: str, key: dict[str, object]) -> JSONValue | None:
    """The cached answer under exactly this key, else None."""
    try:
        with open(os.path.join(cache_dir, name + ".json"), encoding="utf-8") as f:
            doc = json.load(f)
        if isinstance(doc, dict) and doc.get("key") == key and "value" in doc:
            value: JSONValue = doc["value"]
            return value
    except (OSError, ValueError):
        pass
    return None


def store(cache_dir: str, name: str, key: dict[str, object], value: JSONValue) -> None:
    """Best effort and atomic: a cache that cannot be written only costs a re-ask next time.

    A call killed while it wrote this file (the host-facts thread writes it while runc dumps, so a
    kill of the tree during the dump can land there) left its temp file; the next write of the same
    file, which a killed write always makes due (the file was not replaced), sweeps it first.
    """
    path = os.path.join(cache_dir, name + ".json")
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        prefix = atomicfile.temp_prefix(os.path.basename(path))
        atomicfile.sweep(cache_dir, lambda entry: entry.startswith(prefix))
        atomicfile.write_json(path, {"key": key, "value": value}, mode=0o600, indent=None)
    except OSError:
        pass


def remember(cache_dir: str | None, name: str, binary: str, extra: dict[str, object],
             ask: Callable[[], JSONValue | None]) -> JSONValue | None:
    """ask()'s answer for this build of binary (plus extra in the key), from the cache when it holds one.

    cache_dir None: no cache (a caller without a state dir), ask every time. A None answer is
    a failure and is not cached; nor is anything when the binary cannot be identified."""
    if cache_dir is None:
        return ask()
    try:
        key = {**binary_key(binary), **extra}
    except OSError:
        return ask()
    cached = lookup(cache_dir, name, key)
    if cached is not None:
        return cached
    answer = ask()
    if answer is not None:
        store(cache_dir, name, key, answer)
    return answer
