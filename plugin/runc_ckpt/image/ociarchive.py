"""oci-archive: an OCI image layout as one tar file, written atomically and unpacked safely.

Unpacking accepts only what a layout holds (oci-layout, index.json,
blobs/sha256/<digest>, their directories) as regular files and directories;
anything else -- links, devices, other names, a member twice -- is refused,
so an archive cannot write outside the scratch directory or plant anything.
"""

from __future__ import annotations

import io
import os
import re
import tarfile

from runc_ckpt.archive.safeextract import UnsafeArchive, split_name
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.image import oci
from runc_ckpt.runtime import atomicfile

_BLOB = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def pack(layout: str, target: str) -> None:
    """Write the layout directory as the tar file `target` (mode 0600: it holds memory pages)."""
    with atomicfile.writing(target, 0o600) as raw:
        out = io.BufferedWriter(raw, 1 << 20)   # completes short writes, which tarfile does not check
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in (oci.LAYOUT_FILE, oci.INDEX_FILE, "blobs", "blobs/sha256"):
                tar.add(os.path.join(layout, name), arcname=name, recursive=False)
            for blob in sorted(os.listdir(os.path.join(layout, "blobs", "sha256"))):
                tar.add(os.path.join(layout, "blobs", "sha256", blob), arcname=f"blobs/sha256/{blob}",
                        recursive=False)
        out.flush()
        out.detach()                            # the commit (fsync, rename) needs raw still open


def unpack(path: str, scratch: str) -> None:
    """Unpack the oci-archive at `path` into the empty directory `scratch`, in one streaming read."""
    what = f"oci-archive {path}"
    try:
        # Opened apart so that only its own failure reads "cannot open"; the `with` below closes it.
        f = open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise RuncCkptError(f"cannot open {what}: {e.strerror}") from None
    seen: set[str] = set()
    try:
        with f, tarfile.open(fileobj=f, mode="r|") as tar:
            for m in tar:
                parts = split_name(m.name, what)
                name = "/".join(parts)
                if m.isdir() and name in ("", "blobs", "blobs/sha256"):
                    os.makedirs(os.path.join(scratch, name), mode=0o755, exist_ok=True)
                    continue
                ok = name in (oci.LAYOUT_FILE, oci.INDEX_FILE) or (
                    len(parts) == 3 and parts[:2] == ("blobs", "sha256") and _BLOB.match(parts[2]))
                if not ok or not m.isreg():
                    raise UnsafeArchive(f"{what}: member {m.name!r} is not part of an OCI image layout")
                if name in seen:
                    raise UnsafeArchive(f"{what}: member {name!r} appears twice")
                seen.add(name)
                dest = os.path.join(scratch, *parts)
                os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
                src = tar.extractfile(m)
                assert src is not None
                out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                with open(out, "wb") as w:
                    left = m.size
                    while left:
                        chunk = src.read(min(_CHUNK, left))
                        if not chunk:
                            raise RuncCkptError(f"{what} is truncated in {name}")
                        w.write(chunk)
                        left -= len(chunk)
    except tarfile.TarError as e:
        raise RuncCkptError(f"{what} is not a tar file: {e}") from None
    if oci.INDEX_FILE not in seen:
        raise RuncCkptError(f"{what} holds no {oci.INDEX_FILE}: not an OCI image archive")
