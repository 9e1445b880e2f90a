"""`runc-ckpt restore` without --import: runc's own restore, with our policy, hooks and --tcp-close.

Without --import the call is runc's own (podman/conmon, CRI-O and containerd
make it): runc gets the caller's argv unchanged except for flags runc 1.1.5
lacks. --tcp-close becomes a CRIU config file (runc_ckpt.runtime.criuconf);
--no-new-keyring (conmon) and --parent-path (containerd; CRIU finds the
parent through the images' `parent` link) are dropped with a debug line.
Flags we do not know go to runc in place, for runc to accept or refuse. A
plain `restore ID` finds a checkpoint our features kept in the state dir
(see state_dir_images).
"""

from __future__ import annotations

import json
import os
import subprocess

from runc_ckpt.base import goflags, realrunc, runclog
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.restore import hostpreflight
from runc_ckpt.restore.request import RestoreRequest
from runc_ckpt.runtime import containerid, faults, lock
from runc_ckpt.settings import config, hooks, policy
from runc_ckpt.state import predump, settle, tmpfsimages
from runc_ckpt.trust import imagesdir, sealeddir, sealkeys, verdict
from runc_ckpt.trust import policy as trustpolicy

# Flags runc 1.1.5 does not know, handled or dropped before runc sees the call.
NOT_FOR_RUNC = {"tcp-close", "no-new-keyring", "parent-path", "skip-preflight", "check", "signature-policy"}
# runc writes it into every checkpoint and restore opens it first: no file, no checkpoint.
DESCRIPTORS = "descriptors.json"


def state_dir_images(state_dir: str, req: RestoreRequest) -> str | None:
    """The state-dir images a plain `restore ID` should use, else None (runc's own default).

    runc reads ./checkpoint when --image-path is not given. A checkpoint that
    one of our features kept in the state dir (<state_dir>/<id>/checkpoint)
    must restore with the same plain call, as podman's does; so when
    ./checkpoint holds no checkpoint (runc would fail) and the state dir
    holds one for this ID, we name it. Otherwise runc's default stands.
    """
    if req.image_path is not None or len(req.containers) != 1:
        return None
    cid = req.containers[0]
    if not containerid.is_valid(cid) or os.path.exists(os.path.join(predump.RUNC_DEFAULT_IMAGES, DESCRIPTORS)):
        return None
    images = os.path.join(containerid.container_dir(state_dir, cid), predump.CHECKPOINT)
    return images if os.path.isfile(os.path.join(images, DESCRIPTORS)) else None


def _bundle_annotations(bundle: str) -> dict:
    """The annotations of the bundle runc will restore; runc itself judges the rest of config.json."""
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            annotations = json.load(f).get("annotations")
    except (OSError, ValueError, AttributeError):
        return {}
    return annotations if isinstance(annotations, dict) else {}


def _judge_images(policy_path: str | None, image_dir: str | None, inv: Invocation) -> None:
    """Under a trust policy, the images dir's signed manifest (trust.imagesdir) is checked before runc runs.

    Without a policy file nothing is read, so runc's own restore costs what it did.
    """
    trust = trustpolicy.load(policy_path)
    if trust.path is None or image_dir is None:
        return
    _, requirements = trust.requirements("dir", image_dir)
    # Only a signature requirement needs the files hashed; accept or reject alone decide without them.
    manifest, sig = imagesdir.read(image_dir) if any(r.type == trustpolicy.SIGNED for r in requirements) \
        else (None, None)
    judged = verdict.decide(trust, "dir", image_dir, manifest, sig, f"images dir {image_dir}")
    runclog.debug(inv.flags, f"trust: {judged.reason}")
    verdict.enforce(judged)


def restore(inv: Invocation, req: RestoreRequest) -> int:
    """Hand the call to runc as given, minus the flags runc 1.1.5 lacks; returns only for hooks."""
    cfg = config.load(inv.flags.config)
    config.apply_log_level(cfg, inv.flags)
    # Policy and hooks come from the bundle runc is about to restore; anything
    # wrong with them stops us before runc is called.
    bundle = os.path.abspath(req.bundle or ".")
    annotations = _bundle_annotations(bundle)
    pol = policy.effective(cfg, annotations, req.policy.given())
    runclog.debug(inv.flags, pol.describe())
    hook_defs = hooks.load(cfg.hooks_dir)
    pre = hooks.select(hook_defs, "prerestore", annotations, pol.hooks)
    post = hooks.select(hook_defs, "postrestore", annotations, pol.hooks)
    kept = pol.runc_flags(req.policy.keys()) + list(req.runc_argv)
    images = state_dir_images(cfg.state_dir, req)
    if images is not None:
        runclog.debug(inv.flags, f"restore: no checkpoint in ./checkpoint; using {images}")
        kept = ["--image-path", images, *kept]
    if req.dropped:
        runclog.debug(inv.flags, f"restore: not passing {' '.join(req.dropped)} to runc 1.1.5"
                      + (" (tcp-close goes to CRIU through CRIU_CONFIG_FILE)" if req.tcp_close else ""))
    if req.tcp_close:
        # Imported here, not at the top: its tempfile costs every engine's restore ~7 ms (test_layering LAZY).
        from runc_ckpt.runtime import criuconf
        # exec keeps os.environ: runc, and the `criu swrk` it starts, see the variable.
        os.environ.update(criuconf.environ_with(["tcp-close"]))
    runc = realrunc.find(cfg.runc)
    cid = req.containers[0] if len(req.containers) == 1 else ""
    if settle.needed(cfg.state_dir, inv.flags.root, cid):
        # The same recovery as checkpoint's, so a dump that completed after the images here is not lost.
        with lock.hold(cfg.state_dir, lock.container_key(inv.flags.root, cid), "restore", cfg.lock_timeout,
                       what=f"container {cid}"):
            for message in settle.settle(runc, inv.flags.root, cfg.state_dir, cid, bundle, cfg.lock_timeout):
                runclog.warn(inv.flags, message)
            settle.forget(cfg.state_dir, cid)
        if images is None and (images := state_dir_images(cfg.state_dir, req)) is not None:
            kept = ["--image-path", images, *kept]      # recovered just now
    image_path = images if images is not None else req.image_path     # what runc will read
    sealed = os.path.abspath(image_path) if image_path and sealeddir.is_sealed(image_path) else None
    memory = None
    if sealed is not None:
        # Node-level encryption: the signature covers the sealed files, so it is judged before anything is
        # opened; then the images are decrypted into tmpfs for CRIU, and wiped after runc.
        _judge_images(req.signature_policy or cfg.signature_policy, sealed, inv)
        memory = _open_sealed(cfg, cid, sealed, inv)
        image_path = tmpfsimages.images_of(memory)
        kept = goflags.with_value(kept, "image-path", image_path)
    try:
        return _run(runc, inv, req, cfg, kept, image_path, bundle, annotations, pol, pre, post,
                    judge=sealed is None, wait=memory is not None)
    finally:
        if memory is not None:
            tmpfsimages.wipe(containerid.container_dir(cfg.state_dir, cid), memory)


def _open_sealed(cfg: config.Config, cid: str, sealed: str, inv: Invocation) -> str:
    """A node-sealed images dir decrypted into a fresh tmpfs dir (recorded for the next call's sweep); its path."""
    containerid.check(cid)
    memory = tmpfsimages.choose()
    record_dir = containerid.container_dir(cfg.state_dir, cid)
    tmpfsimages.make(record_dir, memory, os.path.join(sealed, sealeddir.LISTING))
    try:
        os.mkdir(tmpfsimages.images_of(memory), 0o700)
        sealeddir.open_into(sealed, tmpfsimages.images_of(memory), sealkeys.load_privates(cfg.decryption_key))
    except BaseException as e:
        tmpfsimages.wipe(record_dir, memory)
        if isinstance(e, RuncCkptError):
            hint = "" if cfg.decryption_key else " (runc-ckpt.yaml names no decryption_key)"
            raise RuncCkptError(f"images dir {sealed} is encrypted: {e}{hint}") from None
        raise
    runclog.debug(inv.flags, f"restore: opened the sealed images of {sealed} into {memory}")
    return memory


def _run(runc: str, inv: Invocation, req: RestoreRequest, cfg: config.Config, kept: list[str],
         image_path: str | None, bundle: str, annotations: dict, pol: policy.Policy, pre: list[hooks.Hook],
         post: list[hooks.Hook], judge: bool, wait: bool) -> int:
    """Pre-flight, trust, then runc: exec'd, unless hooks or a tmpfs dir to wipe need us after it."""
    argv = [*inv.runc_globals, "restore", *kept]
    # issue 21: what the CRIU images need of this host, before runc touches anything
    image_dir = hostpreflight.image_dir_for(image_path)
    if image_dir is not None:
        try:
            hostpreflight.for_image_path(image_dir, bundle, kept + (["--tcp-close"] if req.tcp_close else []),
                                         inv.flags.criu, req.skip_preflight, req.check,
                                         lambda m: runclog.warn(inv.flags, m))
        except hostpreflight.CheckDone as e:
            return e.code
    elif req.check:
        raise RuncCkptError("restore --check: no checkpoint images in "
                            f"{os.path.abspath(image_path or 'checkpoint')}")
    if judge:
        _judge_images(req.signature_policy or cfg.signature_policy, image_dir, inv)
    if not pre and not post and not wait:
        realrunc.exec_runc(runc, argv)
        return 1
    cid = req.containers[0] if req.containers else ""
    hooks.run_stage("prerestore", pre, hooks.state_json(cid, "creating", 0, bundle, annotations),
                    inv.flags, pol.hook_timeout)
    # Hooks after runc: run it as a child (same stdio, fds and environment) instead of exec.
    faults.point("runc-restore")
    code = subprocess.run([runc, *argv], close_fds=False, check=False).returncode
    if code == 0 and post:
        # Imported here, not at the top: only postrestore hooks need it (~3 ms; test_layering LAZY).
        from runc_ckpt.runtime import containerstate
        try:
            st = containerstate.state(runc, inv, cid)
            state = hooks.state_json(st.id, st.status, st.pid, st.bundle, annotations)
        except RuncCkptError:
            state = hooks.state_json(cid, "stopped", 0, bundle, annotations)
        hooks.run_stage("postrestore", post, state, inv.flags, pol.hook_timeout)
    return code
