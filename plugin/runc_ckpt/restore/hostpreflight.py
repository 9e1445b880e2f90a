"""The restore's host pre-flight: gather the checkpoint's needs and this host's side, refuse or report.

Both restores call it before anything is touched: `restore --import` once
the archive is staged and verified (the needs come from its manifest, or
from the CRIU images of an archive without our record), and runc's own
`restore --image-path` (needs from the images alone). --skip-preflight
turns a refusal into a warning; --check prints the whole table and stops.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable

from runc_ckpt.archive import layout, reader
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.metadata import configdump, hostcheck, needs
from runc_ckpt.restore import podmanspec
from runc_ckpt.runtime import ocispec, podmanstore
from runc_ckpt.runtime.criu import imagereader, images

OWN_FLAGS = ("tcp-established", "file-locks", "ext-unix-sk", "tcp-close")


class CheckDone(Exception):
    """`restore --check` has printed its table: end the call with this exit code, change nothing."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def flag_names(argv: Iterable[str]) -> frozenset[str]:
    """The restore flags (without dashes or values) among runc's arguments."""
    out = set()
    for arg in argv:
        if arg.startswith("-"):
            name, _, value = arg.lstrip("-").partition("=")
            if name in OWN_FLAGS and value.lower() not in ("false", "0"):
                out.add(name)
    return frozenset(out)


def _recorded(manifest: dict | None) -> needs.Needs | None:
    """The needs the manifest records, if it does (else the CRIU images are read)."""
    return needs.from_json((manifest or {}).get("needs"))


def _image_dir(import_dir: str) -> str:
    """The staged archive's CRIU images, which the pre-flight reads when the manifest records no needs."""
    return os.path.join(import_dir, layout.CHECKPOINT_DIR)


def checkpoint_needs(manifest: dict | None, image_dir: str, spec: dict | None) -> needs.Needs:
    """The recorded needs when the manifest has them, else what the CRIU images say."""
    recorded = _recorded(manifest)
    if recorded is not None:
        return recorded
    try:
        return needs.from_images(image_dir, spec)
    except images.ImageError as e:
        raise RuncCkptError(f"pre-flight: {e} (--skip-preflight restores anyway)") from None


def prefetch(staged: reader.Staged, import_dir: str) -> None:
    """Once the archive is staged and verified: when the pre-flight will read its CRIU images (no needs
    recorded in the manifest), the image reader the entry started (runtime.criu.imagereader) reads them now,
    on the other core, while the archive is settled; its answer is taken where for_import runs, as before."""
    if _recorded(staged.manifest) is None:
        imagereader.ask(_image_dir(import_dir))       # the dir for_import asks about: the answer is kept


def decide(checks: list[hostcheck.Check], what: str, skip: bool, check_only: bool,
           warn: Callable[[str], None]) -> None:
    """Refuse on a failed check (one line per cause), or print the table for --check and stop."""
    bad = hostcheck.failures(checks)
    if check_only:
        sys.stdout.write(hostcheck.table(checks))
        sys.stdout.flush()
        raise CheckDone(1 if bad else 0)
    if not bad:
        return
    lines = [c.detail for c in bad]
    if skip:
        for line in lines:
            warn(f"pre-flight (skipped): {line}")
        return
    raise RuncCkptError(f"{what} would fail on this host; nothing was changed:\n  " + "\n  ".join(lines)
                        + "\n(--skip-preflight restores anyway; restore --check shows every check)")


def image_dir_for(image_path: str | None) -> str | None:
    """The CRIU image dir runc will read, if it holds a checkpoint (else runc reports the problem)."""
    path = os.path.abspath(image_path or "checkpoint")
    return path if images.is_image_dir(path) else None


def bundle_image(spec: dict | None) -> dict[str, str]:
    """The image the bundle says it holds (io.runc-ckpt.image, resolved in podman's storage), where known."""
    name = ocispec.annotations(spec or {}).get(configdump.IMAGE_ANNOTATION)
    image_id = podmanstore.image_id(name) if name else None
    return {"name": name, "id": image_id} if name and image_id else {}


def for_import(staged: reader.Staged, import_dir: str, rootfs: str, spec: dict, runc_flags: Iterable[str],
               criu: str, cache_dir: str, skip: bool, check_only: bool, warn: Callable[[str], None]) -> None:
    """`restore --import`: the staged archive's needs against this host, the diff laid over the rootfs;
    cache_dir: the state dir, whose cached host facts spare CRIU's CPU check of this host's own checkpoint."""
    image_dir = _image_dir(import_dir)
    target = hostcheck.Target(
        rootfs=rootfs, spec=spec, flags=flag_names(runc_flags), criu=criu, cache_dir=cache_dir,
        diff_root=staged.rootfs.staging.path if staged.rootfs is not None else None,
        deleted=frozenset(staged.deleted), base_image=bundle_image(spec),
        ignore_binds=frozenset(podmanspec.PODMAN_FILES))
    checks = hostcheck.run(checkpoint_needs(staged.manifest, image_dir, spec), target)
    decide(checks, f"restoring {staged.path}", skip, check_only, warn)


def for_image_path(image_dir: str, bundle: str, runc_flags: Iterable[str], criu: str, skip: bool,
                   check_only: bool, warn: Callable[[str], None]) -> None:
    """runc's own `restore --image-path` (any engine's images): what the CRIU images need of the bundle."""
    try:
        spec = ocispec.load(bundle)
    except RuncCkptError:
        return                  # runc reports a bundle it cannot use, in its own words
    root = spec.get("root") if isinstance(spec.get("root"), dict) else {}
    rootfs = os.path.normpath(os.path.join(bundle, str((root or {}).get("path") or "rootfs")))
    target = hostcheck.Target(rootfs=rootfs, spec=spec, flags=flag_names(runc_flags), criu=criu,
                              check_cgroup=False)
    decide(hostcheck.run(checkpoint_needs(None, image_dir, spec), target), f"restoring {image_dir}", skip,
           check_only, warn)
