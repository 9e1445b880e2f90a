"""`runc-ckpt restore` without --import: runc's own restore, with our policy, hooks and --tcp-close.

Without --import the call is runc's own (podman/conmon, CRI-O and containerd
make it): runc gets the caller's argv unchanged except for flags runc 1.1.5
lacks. --tcp-close becomes a CRIU config file (runc_ckpt.runtime.criuconf);
--no-new-keyring (conmon) and --parent-path (containerd; CRIU finds the
parent through the images' `parent` link) are dropped with a debug line.
"""

from __future__ import annotations

import os

from runc_ckpt.commands import cmdflags, options
from runc_ckpt.frontend import passthrough, realrunc, runclog
from runc_ckpt.frontend.errors import RuncCkptError
from runc_ckpt.frontend.globalflags import Invocation

# Flags runc 1.1.5 does not know, handled or dropped before runc sees the call.
NOT_FOR_RUNC = {"tcp-close", "no-new-keyring", "parent-path"}


def strip_flags(args: list[str], drop: set[str]) -> tuple[list[str], list[str]]:
    """Split args into those runc gets and those (flag with its value) named in drop."""
    by_name = {n: o for o in options.RESTORE for n in o.names}
    kept: list[str] = []
    dropped: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            kept.extend(args[i:])
            break
        i += 1
        if len(arg) < 2 or arg[0] != "-":
            kept.append(arg)
            continue
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, eq, _ = body.partition("=")
        opt = by_name.get(name)
        tokens = [arg]
        if opt is not None and opt.kind != "bool" and not eq and i < len(args):
            tokens.append(args[i])
            i += 1
        (dropped if opt is not None and opt.names[0] in drop else kept).extend(tokens)
    return kept, dropped


def _bundle_annotations(bundle: str) -> dict:
    """The annotations of the bundle runc will restore; runc itself judges the rest of config.json."""
    import json
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            annotations = json.load(f).get("annotations")
    except (OSError, ValueError, AttributeError):
        return {}
    return annotations if isinstance(annotations, dict) else {}


def restore(inv: Invocation, parsed: cmdflags.Parsed) -> int:
    """Hand the call to runc as given, minus the flags runc 1.1.5 lacks; returns only for hooks."""
    from runc_ckpt.settings import config, hooks, policy
    cfg = config.load(inv.flags.config)
    config.apply_log_level(cfg, inv.flags)
    # Policy and hooks come from the bundle runc is about to restore; anything
    # wrong with them stops us before runc is called.
    bundle = os.path.abspath(str(parsed.bundle or "."))
    annotations = _bundle_annotations(bundle)
    pol = policy.effective(cfg, annotations, {k: parsed.values[k] for k in parsed.given})
    runclog.debug(inv.flags, pol.describe())
    hook_defs = hooks.load(cfg.hooks_dir)
    pre = hooks.select(hook_defs, "prerestore", annotations, pol.hooks)
    post = hooks.select(hook_defs, "postrestore", annotations, pol.hooks)
    kept, dropped = strip_flags(inv.args, NOT_FOR_RUNC)
    kept = pol.runc_flags(parsed.given) + kept
    if dropped:
        runclog.debug(inv.flags, f"restore: not passing {' '.join(dropped)} to runc 1.1.5"
                      + (" (tcp-close goes to CRIU through CRIU_CONFIG_FILE)" if parsed.tcp_close else ""))
    if parsed.tcp_close:
        from runc_ckpt.runtime import criuconf
        # exec keeps os.environ: runc, and the `criu swrk` it starts, see the variable.
        os.environ.update(criuconf.environ_with(["tcp-close"]))
    runc = realrunc.find(cfg.runc)
    argv = [*inv.runc_globals, "restore", *kept]
    if not pre and not post:
        passthrough.exec_runc(runc, argv)
        return 1
    cid = parsed.positionals[0] if parsed.positionals else ""
    hooks.run_stage("prerestore", pre, hooks.state_json(cid, "creating", 0, bundle, annotations),
                    inv.flags, pol.hook_timeout)
    # Hooks after runc: run it as a child (same stdio, fds and environment) instead of exec.
    import subprocess
    code = subprocess.run([runc, *argv], close_fds=False).returncode
    if code == 0 and post:
        from runc_ckpt.runtime import containerstate
        try:
            st = containerstate.state(runc, inv, cid)
            state = hooks.state_json(st.id, st.status, st.pid, st.bundle, annotations)
        except RuncCkptError:
            state = hooks.state_json(cid, "stopped", 0, bundle, annotations)
        hooks.run_stage("postrestore", post, state, inv.flags, pol.hook_timeout)
    return code
