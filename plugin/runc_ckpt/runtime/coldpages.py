"""Free pages a virtual machine's host took back: touched again before a freeze, not during it.

Where the guest reports its free pages to the hypervisor (virtio-balloon's
free page reporting, VIRTIO_BALLOON_F_REPORTING: Firecracker, Cloud
Hypervisor, QEMU with free-page-reporting=on), the host discards them, and
the guest's next write to such a page waits for the host to fault in and
zero a new one. Measured on this project's 2-core VM: writing 1.1 GiB of
zeros into such memory took 2.5-3.2 s (~0.4 GB/s, where warm memory takes
~0.25 s). A CRIU dump is mostly such writes: round 1 of
bench/migrate_bench.py's big case (1 GiB, into runtime/privatetmpfs) froze
the container for 1.1-2.0 s where the same dump into warm pages froze it
for 0.5-0.6 s, and perf showed CRIU's memcpy into the image files at 37 %
of the samples against 8 %.

So before a dump that freezes the container, as many bytes of zeros as
the dump will write are written into a file beside it (Warming), and the
file is deleted just before the dump: the freed pages go back to the
kernel's free lists warm, and CRIU, which allocates a moment later, gets
them (the kernel reports free pages only after they have been free for
about two seconds: mm/page_reporting.c's delay). Freeing the previous
dump's files just before the next one was tried instead and did not do it
(the round still froze for 1.24 s). The write runs in a thread, started
once the dump before has been taken, so that it overlaps the sending of
that dump: written inline before each dump, its ~3 s a GiB let a workload
that dirties 64 MiB/s outrun the rounds (downtime 3.3x the limit, against
1.4x). The container runs meanwhile. Without free page reporting, nothing
is done.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time

VIRTIO_DEVICES = "/sys/bus/virtio/devices"
BALLOON = 5                  # virtio device ID of a memory balloon (/sys/.../device: 0x0005)
REPORTING = 5                # VIRTIO_BALLOON_F_REPORTING: the bit in its features string
CHUNK = 1 << 20
_ZEROS = bytes(CHUNK)
_NUMBERS = itertools.count()


def reported(devices: str = VIRTIO_DEVICES) -> bool:
    """Whether a virtio balloon here reports free pages to the host (each features file: one 0/1 per bit)."""
    try:
        names = os.listdir(devices)
    except OSError:
        return False
    for name in names:
        try:
            with open(os.path.join(devices, name, "device"), encoding="ascii") as f:
                if int(f.read().strip(), 16) != BALLOON:
                    continue
            with open(os.path.join(devices, name, "features"), encoding="ascii") as f:
                features = f.read().strip()
        except (OSError, ValueError):
            continue
        if len(features) > REPORTING and features[REPORTING] == "1":
            return True
    return False


class Warming:
    """`size` bytes of zeros written into a new file in directory by a daemon thread from now on, while the
    container runs and the stream flows, so that where it overlaps them the warming costs no time;
    release() waits for it and deletes the file just before the dump that is to reuse its pages. Best
    effort: a full file system ends the write early, and the file is gone once released."""

    def __init__(self, directory: str, size: int) -> None:
        self._path = os.path.join(directory, f".warm-{os.getpid()}-{next(_NUMBERS)}")
        self._size = size
        self._made = False
        self.seconds = 0.0              # the write's, once it is done
        self._thread = threading.Thread(target=self._write, name="runc-ckpt-warming", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        began = time.monotonic()
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError:
            return
        self._made = True
        try:
            left = self._size
            while left > 0:
                n = os.write(fd, _ZEROS[:min(left, CHUNK)])
                if n <= 0:
                    break
                left -= n
        except OSError:
            pass
        finally:
            os.close(fd)
            self.seconds = time.monotonic() - began

    def release(self) -> float:
        """Wait for the write, delete the file; the seconds waited."""
        began = time.monotonic()
        self._thread.join()
        if self._made:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
        return time.monotonic() - began
