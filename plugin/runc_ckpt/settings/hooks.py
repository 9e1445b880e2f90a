"""Checkpoint/restore hooks: load definitions, pick those for a container, run them.

The format follows oci-hooks(5) (see hooks/README.md and
schemas/hook.schema.json): one JSON or YAML file per hook in hooks_dir, the
file name without extension being the hook's name. A hook runs with the
container's state JSON on stdin, as OCI hooks do, in its own session so that
a timeout kills everything it started. A failing pre* hook aborts the
operation before runc touches the container; a failing post* hook is only
reported, since the checkpoint or restore it follows already happened.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterable, Mapping

from runc_ckpt.base import runclog
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import GlobalFlags
from runc_ckpt.base.record import Record
from runc_ckpt.settings.config import validate

STAGES = ("precheckpoint", "postcheckpoint", "prerestore", "postrestore")
PRE_STAGES = ("precheckpoint", "prerestore")
SUFFIXES = (".json", ".yaml", ".yml")
_OUTPUT_TAIL = 300  # characters of a failed hook's output quoted in the error
_OUTPUT_KEPT = 4096  # bytes of a hook's output read back (for the debug log)


class Hook(Record):
    """One validated hook definition."""

    name: str
    file: str
    path: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    timeout: float | None
    stages: tuple[str, ...]
    always: bool = False
    annotations: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = ()

    def matches(self, annotations: Mapping[str, object]) -> bool:
        """Whether the `when` conditions select this hook by themselves (any one suffices)."""
        if self.always:
            return True
        for key_re, value_re in self.annotations:
            for key, value in annotations.items():
                if isinstance(value, str) and key_re.search(key) and value_re.search(value):
                    return True
        return False


def load(hooks_dir: str) -> list[Hook]:
    """All hook definitions in hooks_dir, sorted by name; a missing directory means none.

    Files without a .json/.yaml/.yml suffix (scripts, READMEs) and dot files
    are ignored. An invalid definition is an error naming the file and key:
    a hook the operator relies on must never be skipped silently.
    """
    try:
        entries = sorted(os.listdir(hooks_dir))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise RuncCkptError(f"hooks dir {hooks_dir}: {e.strerror}") from None
    hooks: dict[str, Hook] = {}
    for entry in entries:
        stem, suffix = os.path.splitext(entry)
        if entry.startswith(".") or suffix not in SUFFIXES:
            continue
        path = os.path.join(hooks_dir, entry)
        if not os.path.isfile(path):
            continue
        hook = load_file(path)
        if hook.name in hooks:
            raise RuncCkptError(f"hook file {path}: hook {stem!r} is also defined by {hooks[stem].file}")
        hooks[hook.name] = hook
    return list(hooks.values())


def load_file(path: str) -> Hook:
    """Parse and validate one definition file."""
    what = f"hook file {path}"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise RuncCkptError(f"{what}: {e.strerror if isinstance(e, OSError) else 'not UTF-8 text'}") from None
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError as e:
            raise RuncCkptError(f"{what}: not valid JSON: {e}") from None
    else:
        import yaml
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise RuncCkptError(f"{what}: not valid YAML: {' '.join(str(e).split())}") from None
    validate(data, schema_name="hook.schema.json", what=what)
    hook = data["hook"]
    when = data.get("when", {})
    patterns = []
    for key, value in when.get("annotations", {}).items():
        patterns.append((_compile(what, key, f"when/annotations/{key}"),
                         _compile(what, value, f"when/annotations/{key}")))
    name = os.path.splitext(os.path.basename(path))[0]
    return Hook(name=name, file=path, path=hook["path"], args=tuple(hook.get("args") or [hook["path"]]),
                env=tuple(hook.get("env", ())), timeout=hook.get("timeout"), stages=tuple(data["stages"]),
                always=bool(when.get("always", False)), annotations=tuple(patterns))


def _compile(what: str, pattern: str, key: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise RuncCkptError(f"{what}: {key}: bad regular expression {pattern!r}: {e}") from None


def select(hooks: Iterable[Hook], stage: str, annotations: Mapping[str, object] | None,
           enabled_names: Iterable[str] | None = None) -> list[Hook]:
    """The hooks to run at `stage` for a container, in name order.

    A hook is selected if it lists the stage and either its `when` matches the
    container's annotations or its name is in enabled_names (the
    io.runc-ckpt.hooks annotation, Policy.hooks). Naming a hook that does not
    exist is an error: the operator asked for something that cannot happen.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown hook stage {stage!r}")
    hooks = list(hooks)
    enabled = set(enabled_names or ())
    unknown = sorted(enabled - {h.name for h in hooks})
    if unknown:
        raise RuncCkptError(f"annotation io.runc-ckpt.hooks: no hook named {', '.join(unknown)} "
                            "in the hooks directory")
    annotations = annotations or {}
    return [h for h in hooks if stage in h.stages and (h.name in enabled or h.matches(annotations))]


def state_json(container_id: str, status: str, pid: int, bundle: str,
               annotations: Mapping[str, object] | None, oci_version: str = "1.0.2") -> dict[str, object]:
    """The OCI state object a hook reads on stdin (runtime-spec "state").

    Callers pass runc's state for a container that exists; before a restore
    there is none yet, so prerestore hooks get status "creating" and pid 0.
    """
    return {"ociVersion": oci_version, "id": container_id, "status": status, "pid": pid,
            "bundle": bundle, "annotations": dict(annotations or {})}


def run_stage(stage: str, hooks: Iterable[Hook], state: Mapping[str, object], flags: GlobalFlags,
              default_timeout: float = 30.0) -> None:
    """Run the selected hooks of one stage, in order, with `state` as JSON on stdin.

    pre* stages: the first failure raises RuncCkptError naming the hook, and
    the remaining hooks do not run. post* stages: every hook runs; each
    failure becomes a warning in runc's log.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown hook stage {stage!r}")
    payload = json.dumps(state, separators=(",", ":")).encode()
    for hook in hooks:
        failure = _run(hook, stage, payload, flags, hook.timeout or default_timeout)
        if failure is None:
            continue
        message = f"{stage} hook {hook.name} ({hook.file}): {failure}"
        if stage in PRE_STAGES:
            raise RuncCkptError(message)
        runclog.warn(flags, message)


def _run(hook: Hook, stage: str, payload: bytes, flags: GlobalFlags, timeout: float) -> str | None:
    """Run one hook; None on success, else why it failed."""
    env = dict(e.split("=", 1) for e in hook.env)
    env.update(RUNC_CKPT_HOOK_STAGE=stage, RUNC_CKPT_HOOK_NAME=hook.name)
    # Files, not pipes: a hook that ignores stdin or a grandchild that keeps
    # stdout open can then never block us; only the timeout bounds the wait.
    # Imported here, not at the top: only a hook that runs needs it (~3 ms of start-up otherwise).
    import tempfile
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as output:
        stdin.write(payload)
        stdin.seek(0)
        try:
            proc = subprocess.Popen(list(hook.args), executable=hook.path, stdin=stdin, stdout=output,
                                    stderr=subprocess.STDOUT, env=env, cwd="/", start_new_session=True)
        except OSError as e:
            return f"cannot run {hook.path}: {e.strerror}"
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return f"timed out after {timeout:g}s; its process group was killed"
        except BaseException:
            _kill_group(proc)
            raise
        # Only the end: a chatty hook must not fill our memory or the log.
        size = output.seek(0, os.SEEK_END)
        output.seek(max(0, size - _OUTPUT_KEPT))
        text = output.read().decode(errors="replace")
    runclog.debug(flags, f"{stage} hook {hook.name}: exit status {code}: {' '.join(text.split())}")
    if code == 0:
        return None
    reason = f"exit status {code}" if code > 0 else f"killed by signal {-code}"
    tail = " ".join(text.split())[-_OUTPUT_TAIL:]
    return f"{reason}: {tail}" if tail else reason


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the hook's whole process group (its own session), then reap the hook."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
