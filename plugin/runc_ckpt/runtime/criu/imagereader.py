"""A forked helper that imports pycriu and reads a checkpoint's needs while the restore stages its archive.

Importing pycriu (the protobuf runtime and every *_pb2 module) costs ~55 ms
of CPU, a fifth of a tiny `restore --import`, and a podman archive (no
manifest, so no recorded needs) must have its CRIU images read before
anything is applied. A thread would not help: the import holds the GIL,
and staging is Python too. A child forked before the locks does the import
on the other core while the parent locks, stages and verifies; the parent
then sends the staged images dir and waits for the answer where it would
have read the images itself, so a refusal still comes before any change.

The child only reads: its stdio is /dev/null, every inherited descriptor
but its two pipes is closed (no lock outlives us through it), and it ends
at EOF on its request pipe, which is what it sees when the parent dies or
has no question. It closes its answer pipe once the answer is written, so
the parent reads to EOF without waiting for the child's exit, and the parent
reaps it when the call ends (stop()), not on its way to runc restore. The
images are untrusted here as in the parent: pycriu decodes them, an
ImageError comes back as text and is raised in the parent; any other
failure of the child (killed, crashed) makes the parent read the images
itself, so the check is never weaker than in-process.
"""

from __future__ import annotations

import gc
import json
import os
import signal

from runc_ckpt.runtime.criu import images

_MAX_ANSWER = 64 << 20      # the parent's own child; still, never read without a bound


class Helper:
    """The forked reader: `needs(image_dir)` asks it once; `close()` ends it (and reaps it) in any case."""

    def __init__(self) -> None:
        req_r, self._req_w = os.pipe()
        self._ans_r, ans_w = os.pipe()
        pid = os.fork()
        if pid == 0:                    # the child: never returns into the caller's code
            code = 1
            try:
                os.close(self._req_w)
                os.close(self._ans_r)
                _serve(req_r, ans_w)
                code = 0
            finally:
                os._exit(code)
        os.close(req_r)
        os.close(ans_w)
        self._pid: int | None = pid
        self._killed = False
        self._asked: str | None = None      # the images dir the child was sent (it has one question)

    def ask(self, image_dir: str) -> None:
        """Send the child its one question now: it reads while the caller goes on. A failed send leaves the
        answer to needs(), which then finds none (and the caller reads the images itself)."""
        if self._asked is not None or self._req_w < 0:     # asked already, or hung up
            return
        self._asked = image_dir
        try:
            os.write(self._req_w, os.fsencode(image_dir))
        except OSError:
            pass
        finally:
            os.close(self._req_w)
            self._req_w = -1

    def needs(self, image_dir: str) -> images.ImageNeeds | None:
        """The images' needs from the child; None when it could not answer (then read them in-process)."""
        try:
            self.ask(image_dir)
            if self._asked != image_dir:        # it was asked about another dir: its answer is not this one's
                return None
            chunks = []
            size = 0
            while chunk := os.read(self._ans_r, 1 << 16):
                chunks.append(chunk)
                size += len(chunk)
                if size > _MAX_ANSWER:
                    return None
            doc = json.loads(b"".join(chunks)) if chunks else None
        except (OSError, ValueError):
            return None
        finally:
            self.hang_up()
        if not isinstance(doc, dict):
            return None
        if "error" in doc:
            raise images.ImageError(str(doc["error"]))
        return _decode(doc)

    def hang_up(self) -> None:
        """Close our pipe ends and end the child (it only reads, so a kill loses nothing), without waiting for
        its exit (close() reaps it); idempotent."""
        for fd in (self._req_w, self._ans_r):
            if fd >= 0:
                os.close(fd)
        self._req_w = self._ans_r = -1
        if self._pid is not None and not self._killed:
            self._killed = True
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """End the child and reap it; idempotent."""
        self.hang_up()
        if self._pid is not None:
            pid, self._pid = self._pid, None
            os.waitpid(pid, 0)


def _serve(req_r: int, ans_w: int) -> None:
    """The child's whole life: detach from the caller's descriptors, import pycriu, answer one request."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    keep = sorted({req_r, ans_w})
    os.closerange(3, keep[0])
    os.closerange(keep[0] + 1, keep[1])
    os.closerange(keep[1] + 1, os.sysconf("SC_OPEN_MAX"))
    signal.signal(signal.SIGINT, signal.SIG_DFL)     # the caller's Ctrl-C ends the child quietly
    gc.disable()        # it imports pycriu, answers once and exits: no GC pass (~2 ms of the import; base.gcpause)
    available = images.available()
    request = b""
    while chunk := os.read(req_r, 1 << 16):
        request += chunk
    if not request:
        return                          # EOF: the parent has no question, or is gone
    image_dir = os.fsdecode(request)
    try:
        found = images.read(image_dir) if available and images.is_image_dir(image_dir) else images.ImageNeeds()
        answer = _encode(found)
    except images.ImageError as e:
        answer = {"error": str(e)}
    data = json.dumps(answer).encode()
    while data:
        data = data[os.write(ans_w, data):]
    os.close(ans_w)     # the parent's EOF now, not once this process (pycriu's ~30 MiB and all) is torn down


def _encode(found: images.ImageNeeds) -> dict[str, object]:
    return {"files": [[f.path, f.mode, f.size, f.build_id] for f in found.files],
            "tcp_established": found.tcp_established, "file_locks": found.file_locks,
            "ext_unix_sk": found.ext_unix_sk,
            "cpuinfo": found.cpuinfo.hex() if found.cpuinfo is not None else None}


def _decode(doc: dict[str, object]) -> images.ImageNeeds | None:
    try:
        files = [images.ImageFile(str(p), int(m), None if s is None else int(s), None if b is None else str(b))
                 for p, m, s, b in doc["files"]]        # type: ignore[attr-defined]
        cpu = doc["cpuinfo"]
        found = images.ImageNeeds()
        found.files = files
        found.tcp_established = doc["tcp_established"] is True
        found.file_locks = doc["file_locks"] is True
        found.ext_unix_sk = doc["ext_unix_sk"] is True
        found.cpuinfo = bytes.fromhex(cpu) if isinstance(cpu, str) else None
        return found
    except (KeyError, TypeError, ValueError):
        return None


_helper: Helper | None = None
# Helpers that answered, reaped by stop() when the call ends: the restore never waits for a child's exit.
_answered: list[Helper] = []


def start() -> None:
    """Fork the helper now (before any lock is taken: it must hold none), if none runs yet."""
    global _helper
    if _helper is None:
        _helper = Helper()


def stop() -> None:
    """End the helper if it still runs (the call is over, or the images were never needed); reap every helper."""
    global _helper
    if _helper is not None:
        helper, _helper = _helper, None
        helper.close()
    while _answered:
        _answered.pop().close()


def ask(image_dir: str) -> None:
    """Have the helper read image_dir now, if one runs, while the caller goes on; needs(image_dir) takes the
    answer. The answer is used only where needs() is called: asking early changes no check's order."""
    if _helper is not None:
        _helper.ask(image_dir)


def needs(image_dir: str) -> images.ImageNeeds:
    """The needs the images in image_dir state: from the helper when one runs, else read here.
    None known when pycriu is not installed or image_dir holds no checkpoint. Raises images.ImageError."""
    global _helper
    if _helper is not None:
        helper, _helper = _helper, None
        _answered.append(helper)
        found = helper.needs(image_dir)
        if found is not None:
            return found
    if images.available() and images.is_image_dir(image_dir):
        return images.read(image_dir)
    return images.ImageNeeds()
