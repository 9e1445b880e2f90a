"""A signed manifest of a CRIU images dir, for the checkpoints engines package themselves.

podman, CRI-O and containerd call a plain `runc checkpoint --image-path DIR`
and copy DIR (podman's `checkpoint/`) into archives of their own, which
carry no runc-ckpt manifest; their restore comes back as a plain `runc
restore --image-path DIR`. So when a signing key is in effect, the images
dir gets its own manifest and signature, two files CRIU ignores, and they
travel wherever the engine copies the dir:

  runc-ckpt.images.json  {"format": "runc-ckpt-images", "version": 1,
                          "container": ID, "files": {name: {"size", "sha256"}},
                          "links": {name: target}}
  runc-ckpt.images.sig   trust.signature's document over those bytes

On restore, under a trust policy, every file is hashed and compared before
runc runs (a file missing, changed or added is refused: CRIU would read it),
then the policy judges the signature with transport "dir". The parent link
of a pre-dump chain is recorded, not followed: the parent's own images are
not covered.
"""

from __future__ import annotations

import json
import os
import stat

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.runtime import atomicfile, faults
from runc_ckpt.trust import signature

TYPE_CHECKING = False  # typing's flag, without importing typing (base/record.py says why)
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

MANIFEST = "runc-ckpt.images.json"
SIGNATURE = "runc-ckpt.images.sig"
FORMAT = "runc-ckpt-images"
VERSION = 1
# Written into the dir after the manifest, by the restore itself or by CRIU's restore: never read by CRIU.
LATER = frozenset({MANIFEST, SIGNATURE, "restore.log", "stats-restore"})
_CHUNK = 1 << 20
MAX_MANIFEST = 16 << 20


def _listing(directory: str) -> tuple[dict[str, dict[str, object]], dict[str, str]]:
    """(regular files: size and sha256, symlinks: target) of directory, the LATER names and our temp files aside."""
    files: dict[str, dict[str, object]] = {}
    links: dict[str, str] = {}
    with os.scandir(directory) as it:
        for entry in it:
            if entry.name in LATER or atomicfile.is_temp(entry.name):
                continue
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                links[entry.name] = os.readlink(entry.path)
            elif stat.S_ISREG(st.st_mode):
                files[entry.name] = {"size": st.st_size, "sha256": _sha256(entry.path)}
            else:
                raise RuncCkptError(f"images dir {directory}: {entry.name} is neither a file nor a link")
    return dict(sorted(files.items())), dict(sorted(links.items()))


def _sha256(path: str) -> str:
    import hashlib  # here, not at the top: the flow loads this module before runc; signing is rare
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def sign(directory: str, container_id: str, key: ec.EllipticCurvePrivateKey) -> None:
    """Write the dir's manifest and its signature (atomically, manifest first)."""
    files, links = _listing(directory)
    doc = json.dumps({"format": FORMAT, "version": VERSION, "container": container_id,
                      "files": files, "links": links}, indent=1).encode() + b"\n"
    atomicfile.write_bytes(os.path.join(directory, MANIFEST), doc, 0o644)
    faults.point("images-sig")
    atomicfile.write_bytes(os.path.join(directory, SIGNATURE), signature.sign(doc, key), 0o644)


def read(directory: str) -> tuple[bytes | None, bytes | None]:
    """(manifest, signature) as stored, each None if absent; the manifest is checked against the files first.

    A manifest the files do not match is refused here, whatever the policy says: the dir was changed.
    """
    manifest = _read_small(os.path.join(directory, MANIFEST))
    sig = _read_small(os.path.join(directory, SIGNATURE))
    if manifest is None:
        return None, sig
    try:
        doc = json.loads(manifest)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise ValueError("not a runc-ckpt images manifest")
        want = (doc["files"], doc["links"])
    except (UnicodeDecodeError, ValueError, KeyError) as e:
        raise RuncCkptError(f"images dir {directory}: {MANIFEST}: {e}") from None
    files, links = _listing(directory)
    problems = [f"{n}: listed but missing" for n in sorted(set(want[0]) - set(files))]
    problems += [f"{n}: not listed (added after the checkpoint)" for n in sorted(set(files) - set(want[0]))]
    problems += [f"{n}: size/sha256 differ from {MANIFEST}" for n in sorted(set(files) & set(want[0]))
                 if want[0][n] != files[n]]
    if links != want[1]:
        problems.append(f"links differ from {MANIFEST}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RuncCkptError(f"images dir {directory} does not match its {MANIFEST}: {problems[0]}{more}")
    return manifest, sig


def _read_small(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise RuncCkptError(f"{path}: {e.strerror}") from None
    try:
        data = os.read(fd, MAX_MANIFEST + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_MANIFEST:
        raise RuncCkptError(f"{path}: larger than {MAX_MANIFEST} bytes")
    return data
