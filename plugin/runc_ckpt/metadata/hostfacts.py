"""What an export records about this host, gathered in a thread while runc dumps the container.

The manifest names runc's and CRIU's versions (two `--version` calls), the
restore's needs hold this CPU's cpuinfo.img (`criu cpuinfo dump`), and the
needs are read from the images with pycriu, whose import alone costs ~60 ms.
None of it depends on the dump, and together it was ~0.1 s of a tiny
checkpoint's ~0.25 s of our own work, spent after runc had finished while
our process only waited on runc before. So a checkpoint that exports starts
HostFacts just before runc and asks it for its results afterwards: they
come for (nearly) free, the same values as computed inline. The versions and
the cpuinfo.img are cached per binary and boot (runtime.hostcache), and the
thread also loads the modules the caller names as `preload` (the flow's
packaging with the export writer, ~25 ms of imports), which the caller imports
only after the dump. The caller starts the thread once runc is spawned: started
before, its imports would hold the interpreter while the caller forks runc.

A failure in the thread is not lost: that value is then computed again in
the caller's thread, where any error surfaces as it always did.
"""

from __future__ import annotations

import importlib
import threading

_MISSING = object()


class HostFacts:
    """Tool versions and cpuinfo.img for runc and criu, fetched in a daemon thread from start() on."""

    def __init__(self, runc: str, criu: str, read_images: bool, cache_dir: str, preload: tuple[str, ...] = ()) -> None:
        self._runc, self._criu, self._cache_dir = runc, criu, cache_dir
        self._read_images = read_images
        self._preload = preload
        self._versions: object = _MISSING
        self._cpuinfo: object = _MISSING
        self._thread = threading.Thread(target=self._gather, name="runc-ckpt-hostfacts", daemon=True)

    def start(self) -> None:
        """Gather in the thread from now on; facts never started are computed when asked for."""
        self._thread.start()

    def _gather(self) -> None:
        try:
            # Imported here, not at the top: loaded in this thread while runc dumps, not in the caller's
            # start-up (configdump's platform and spec/storage readers, the image reader: ~8 ms).
            from runc_ckpt.metadata import configdump
            from runc_ckpt.runtime.criu import cpuinfo, images
            self._versions = configdump.versions(self._runc, self._criu, self._cache_dir)
            if self._read_images:
                self._cpuinfo = cpuinfo.dump(self._criu, self._cache_dir)
            # By name: a top-level import would load them before the dump, in the caller's own time.
            for name in self._preload:
                importlib.import_module(name)
            if self._read_images:
                images.available()          # loads CRIU's image decoder once, for needs.record
        except Exception:  # noqa: BLE001  # recomputed (and reported) in the caller's thread
            return

    def wait(self) -> None:
        """Join the thread: before the process may exit, so no `criu cpuinfo dump` temp dir is left behind."""
        if self._thread.ident is not None:
            self._thread.join()

    def versions(self, runc: str, criu: str) -> dict[str, str]:
        """configdump.versions(runc, criu), from the thread when it asked the same tools."""
        self.wait()
        # Imported here, not at the top: see _gather (the thread has loaded it by now).
        from runc_ckpt.metadata import configdump
        if self._versions is _MISSING or (runc, criu) != (self._runc, self._criu):
            return configdump.versions(runc, criu, self._cache_dir)
        return self._versions  # type: ignore[return-value]

    def cpuinfo(self, criu: str) -> bytes | None:
        """cpuinfo.dump(criu), from the thread when it asked the same CRIU."""
        self.wait()
        # Imported here, not at the top: see _gather (the thread has loaded it by now).
        from runc_ckpt.runtime.criu import cpuinfo
        if self._cpuinfo is _MISSING or criu != self._criu:
            return cpuinfo.dump(criu, self._cache_dir)
        return self._cpuinfo  # type: ignore[return-value]
