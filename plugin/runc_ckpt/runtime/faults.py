"""Fault injection for tests: stop runc-ckpt at a named phase, as a crash or a timeout would.

RUNC_CKPT_FAULT=PHASE:ACTION[,PHASE:ACTION...] with ACTION `kill` (SIGKILL
ourselves: a crash, an OOM kill, an engine's kill -9), `killtree` (SIGKILL
our whole process group -- runc, `criu swrk` and what they started in it --
as an engine's timeout, systemd or Ctrl-C does; `killtree@SECONDS` does it
that long after the phase, from a thread, so the kill lands inside runc or
CRIU; runc-ckpt must lead its process group), `pause` (SIGSTOP
ourselves, so a test can send SIGTERM/SIGKILL at exactly that point, then
SIGCONT) or `fail` (an error line there, as a failing step would give).
Phases, in the order a flow passes them:

  tmpfs-made    an encrypted checkpoint's tmpfs dir for CRIU's images exists (state/tmpfsimages)
  chain-staged  --incremental-from: the parent chain is staged in the scratch dir, not yet indexed
  dump          runc checkpoint has started (runc runs on without us)
  memory-dump   --pre-copy's phase-0 memory dump (runc checkpoint --leave-running) has started
  memory-round-N  round N (1-4) of --pre-copy's memory is about to be dumped: the rounds before it are sent
  incremental-built  --incremental-from: P1' is built in the scratch dir, the archive not yet begun
  images-sig    a signed images dir has its manifest, its signature not yet (trust.imagesdir)
  seal          an encrypted archive or stream has its first record written (trust.seal)
  export-tar    GNU tar is writing the rootfs diff into its spool (archive.tarstage)
  export-write  the archive's temp file holds its first members
  sign          a signed archive's manifest is written, its signature not yet
  rename        the archive is complete, just before its rename
  tmpfs-wipe    the encrypted export is complete, its plaintext images on tmpfs not yet wiped
  tmpfs-seal    node-level encryption: the dump is on tmpfs, not yet sealed into the caller's images dir
  staging       restore --import has staged the archive (rootfs diff, volumes, images)
  apply         restore --import has applied part of the archive
  runc-restore  runc restore has started

and those of a migration stream (migrate/): on the sender hello-sent,
phase1-sent (before the freeze), dumped (after the dump, before phase 2),
stream-sent; on the receiver hello-read, phase1-staged, staged (verified,
before apply), applied (before runc restore).

Kills inside CRIU itself are injected by the tests through a CRIU action script
(CRIU_CONFIG_FILE; tests/integration/treekill_helpers.py), which kills this
process group at a named CRIU action.

Unset (always, outside tests) it costs one environment lookup per phase.
"""

from __future__ import annotations

import os
import signal
import threading

from runc_ckpt.base.errors import RuncCkptError

ENV_VAR = "RUNC_CKPT_FAULT"
PHASES = ("tmpfs-made", "chain-staged", "dump", "memory-dump", "memory-round-1", "memory-round-2", "memory-round-3",
          "memory-round-4", "incremental-built", "images-sig", "seal", "export-tar", "export-write", "sign", "rename",
          "tmpfs-wipe", "tmpfs-seal", "staging", "apply", "runc-restore",
          "hello-sent", "phase1-sent", "dumped", "stream-sent", "hello-read", "phase1-staged", "staged", "applied")
_fired: set[str] = set()


def point(phase: str) -> None:
    """Act on RUNC_CKPT_FAULT if it names this phase (once per process: apply passes it per entry)."""
    spec = os.environ.get(ENV_VAR)
    if not spec or phase in _fired:
        return
    _fired.add(phase)
    assert phase in PHASES, phase
    for item in spec.split(","):
        name, _, action = item.partition(":")
        if name != phase:
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "killtree" or action.startswith("killtree@"):
            _kill_tree(float(action.partition("@")[2] or 0))
        elif action == "pause":
            os.kill(os.getpid(), signal.SIGSTOP)
        elif action == "fail":
            raise RuncCkptError(f"injected failure at {phase} ({ENV_VAR})")


def _kill_tree(delay: float) -> None:
    """SIGKILL our process group now, or after delay seconds (runc and CRIU run on meanwhile)."""
    if os.getpgrp() != os.getpid():
        raise RuncCkptError(f"{ENV_VAR}: killtree needs runc-ckpt to lead its process group (setsid)")
    if delay <= 0:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    timer = threading.Timer(delay, os.killpg, (os.getpgrp(), signal.SIGKILL))
    timer.daemon = True
    timer.start()
