"""containers-transports references (`oci:DIR:TAG`, `docker://...`, ...), parsed once.

The spelling is containers/image's, so the same string works for podman,
skopeo and us. A bare NAME means what it means to podman: an image in
containers-storage, `localhost/NAME:latest` when NAME has no registry or tag.
"""

from __future__ import annotations

import re

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.record import Record

OCI = "oci"
OCI_ARCHIVE = "oci-archive"
DOCKER = "docker"
STORAGE = "containers-storage"
# Written by us directly; the others go through skopeo.
LOCAL = (OCI, OCI_ARCHIVE)
TRANSPORTS = (OCI, OCI_ARCHIVE, DOCKER, STORAGE)
# The OCI image-spec's rule for org.opencontainers.image.ref.name components.
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?::[0-9]+)?"
                   r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?"
                   r"(?:@sha256:[0-9a-f]{64})?$")


class Reference(Record):
    """One parsed reference: transport, where (dir/file/repo/name) and the tag if any."""

    transport: str
    target: str
    tag: str | None = None

    def __str__(self) -> str:
        if self.transport == DOCKER:
            return f"docker://{self.target}"
        tail = f":{self.tag}" if self.tag else ""
        return f"{self.transport}:{self.target}{tail}"

    @property
    def local(self) -> bool:
        return self.transport in LOCAL


def looks_like_image(text: str) -> bool:
    """Whether an --import/inspect argument names an image rather than an archive file."""
    return any(text.startswith(t + ":") for t in TRANSPORTS)


def parse(text: str, what: str = "image reference") -> Reference:
    """Parse text as containers/image does; a bare NAME is containers-storage's."""
    if not text:
        raise RuncCkptError(f"{what}: empty reference")
    transport, sep, rest = text.partition(":")
    if sep and transport in (OCI, OCI_ARCHIVE):
        path, tag = _split_path_tag(rest, text, what)
        return Reference(transport, path, tag)
    if sep and transport == DOCKER:
        if not rest.startswith("//") or not rest[2:]:
            raise RuncCkptError(f"{what} {text!r}: docker references are docker://HOST/REPO[:TAG]")
        name = rest[2:]
        if not _NAME.match(name):
            raise RuncCkptError(f"{what} {text!r}: {name!r} is not a valid image name")
        return Reference(DOCKER, name)
    if sep and transport == STORAGE:
        if not rest:
            raise RuncCkptError(f"{what} {text!r}: containers-storage needs an image name")
        return Reference(STORAGE, _storage_name(rest, text, what))
    if "://" in text or (sep and "/" not in transport and not _NAME.match(text)):
        raise RuncCkptError(f"{what} {text!r}: unknown transport (use one of "
                            f"{', '.join(t + ':' for t in TRANSPORTS)} or an image name)")
    return Reference(STORAGE, _storage_name(text, text, what))


def _split_path_tag(rest: str, text: str, what: str) -> tuple[str, str | None]:
    """oci:DIR[:TAG]: the last colon starts the tag when what follows is a valid tag."""
    path, sep, tag = rest.rpartition(":")
    if not sep or "/" in tag or not _TAG.match(tag):
        path, tag = rest, ""
    if not path:
        raise RuncCkptError(f"{what} {text!r}: needs a path")
    return path, tag or None


def _storage_name(name: str, text: str, what: str) -> str:
    """podman's short-name rule: no registry means localhost/, no tag means :latest.

    A `[driver@graphroot+runroot]` prefix (containers/storage's store spec)
    is kept as given; skopeo understands it.
    """
    store = ""
    if name.startswith("["):
        end = name.find("]")
        if end < 0:
            raise RuncCkptError(f"{what} {text!r}: unterminated [store] prefix")
        store, name = name[:end + 1], name[end + 1:]
    if not _NAME.match(name):
        raise RuncCkptError(f"{what} {text!r}: {name!r} is not a valid image name")
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        name = f"localhost/{name}"
    last = name.rsplit("/", 1)[1]
    if ":" not in last and "@" not in last:
        name += ":latest"
    return store + name
