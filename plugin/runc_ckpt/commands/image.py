"""`runc-ckpt image build ARCHIVE REF`: make a checkpoint image from an archive (image.build)."""

from __future__ import annotations

import os

from runc_ckpt.base import runclog
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.commands import cmdflags, options
from runc_ckpt.image import build, reference
from runc_ckpt.settings import config

NAME = "runc-ckpt image build - turn a checkpoint archive into a checkpoint image"
USAGE = "runc-ckpt [global options] image build [command options] <archive> <image-reference>"
DESCRIPTION = ("Turn a checkpoint archive (runc-ckpt's, podman's export, a CRI-O/kubelet or containerd one) "
               "into an OCI checkpoint image that podman, CRI-O and runc-ckpt restore: oci:DIR[:TAG], "
               "oci-archive:FILE[:TAG], docker://HOST/REPO:TAG, containers-storage:NAME or a bare NAME.")


def run(inv: Invocation) -> int:
    args = cmdflags.sub_command(inv.args, "build", NAME, USAGE, DESCRIPTION, "image build ARCHIVE REF")
    if args is None:
        return 0
    p = cmdflags.parse_or_help(options.IMAGE_BUILD, args, "image build", NAME, USAGE, DESCRIPTION,
                               runc_command=False)
    if p is None:
        return 0
    if len(p.positionals) != 2:
        raise RuncCkptError(f"image build: expected an archive and an image reference, got {len(p.positionals)} "
                            f"arguments")
    cfg = config.load(inv.flags.config)
    ref = reference.parse(p.positionals[1], "image build")
    digest = build.build(os.path.abspath(p.positionals[0]), ref, p.text("compress") or None,
                         cfg.state_dir, inv.flags)
    runclog.debug(inv.flags, f"image build: {ref} manifest {digest}")
    print(ref)
    return 0
