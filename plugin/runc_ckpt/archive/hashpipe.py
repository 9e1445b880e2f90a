"""sha256 of a member, computed in a helper thread while the caller's thread reads or writes.

On 2 cores, SHA-256 of a checkpoint's bytes (~1.7 GB/s here) was a fifth of
a many-file export's own time when done inline: the main thread is busy
with syscalls that leave the other core half idle. One pipe per member keeps
the order of the updates.
"""

from __future__ import annotations

import hashlib
import queue
import threading


class HashPipe:
    """sha256 in a worker thread, so hashing overlaps the I/O (hashlib releases the GIL).

    Only views of immutable bytes may be handed over: they are hashed after
    the caller has moved on. Import: views of decompressed chunks, handed
    over in batches (reader.MemberSource gathers HASH_BATCH bytes: a queue
    hand-off per 512-byte header of a many-file tree cost more than the file
    writes). Export: writer.TarWriter's ~1 MiB pieces of a big member. The
    bounded queue caps the memory held at a few MiB.
    """

    def __init__(self, depth: int = 16) -> None:
        self._q: queue.Queue[tuple[hashlib._Hash, list[memoryview]] | None] = queue.Queue(depth)
        # Started by the first update(): an import whose members all stay under reader.MemberSource's
        # HASH_BATCH (a tiny restore) hashes them inline and never pays for a thread (~0.1-1 ms, more
        # while another process holds the second core).
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                self._q.task_done()
                return
            sha = item[0]
            for view in item[1]:
                sha.update(view)
            self._q.task_done()

    def update(self, sha: hashlib._Hash, views: list[memoryview]) -> None:
        if self._thread is None:
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._thread = thread   # only once started: a signal raised in start() leaves close() nothing to join
        self._q.put((sha, views))

    def digest(self, sha: hashlib._Hash) -> str:
        if self._thread is not None:
            self._q.join()
        return sha.hexdigest()

    def close(self) -> None:
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout=5)
