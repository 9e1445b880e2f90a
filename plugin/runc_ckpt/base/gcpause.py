"""The cyclic garbage collector paused while a call's modules load.

A call imports a command, then its flow (restore --import: ~200 modules).
Imports only allocate -- classes, functions, module dicts that live until the
process ends, none of them garbage -- yet every 700 allocations start a GC
pass over the young objects, and the older generations are walked again as
they grow: ~8 % of the import time (~5 ms of a tiny restore --import,
best of 15). The pause covers the import alone: the flow runs with the
collector as the caller had it, so a big archive's staging collects its
cycles as before.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """No GC pass while the block (an import) runs; the collector is then as it was."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
