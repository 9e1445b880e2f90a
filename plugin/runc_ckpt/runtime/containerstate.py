"""Ask the real runc about containers: `runc state ID` and `runc list -f json`.

These are read-only queries made on the caller's behalf, so their failures
must not reach the caller's --log: a failed query becomes one RuncCkptError
(one error line, written by us) carrying runc's own message, e.g. "container
does not exist". Hence runc is called with the caller's global flags but
`--log=` (runc's logger on stderr, which we capture) and text log format.
"""

from __future__ import annotations

import json
import re
import subprocess

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.base.jsondoc import JSONObject
from runc_ckpt.base.record import Record

TYPE_CHECKING = False  # typing's flag, without importing typing (base/record.py says why)
if TYPE_CHECKING:
    from datetime import datetime

# logrus text format: msg="quoted" or msg=bare.
_MSG = re.compile(r'level=(?:error|fatal|panic) msg=("(?:[^"\\]|\\.)*"|\S+)')
# runc 1.1.5 refuses these states itself; paused containers it does checkpoint.
NOT_CHECKPOINTABLE = ("created", "stopped")


class ContainerState(Record):
    """The fields of `runc state` that checkpoint uses."""

    id: str
    status: str
    bundle: str
    rootfs: str
    created: str
    pid: int
    annotations: dict[str, str]

    @classmethod
    def from_json(cls, doc: JSONObject) -> ContainerState:
        try:
            return cls(id=str(doc["id"]), status=str(doc["status"]), bundle=str(doc["bundle"]),
                       rootfs=str(doc.get("rootfs", "")), created=str(doc.get("created", "")),
                       pid=int(doc.get("pid") or 0), annotations=dict(doc.get("annotations") or {}))
        except (KeyError, TypeError, ValueError) as e:
            raise RuncCkptError(f"unexpected output of runc state: {e}") from None

    def check_checkpointable(self) -> None:
        """Refuse, in runc's words, a container runc would refuse."""
        if self.status in NOT_CHECKPOINTABLE:
            raise RuncCkptError(f"Container cannot be checkpointed in {self.status} state")


def query_globals(inv: Invocation) -> list[str]:
    """The caller's global flags with runc's log sent to stderr, in text format."""
    return [*inv.runc_globals, "--log=", "--log-format=text"]


def runc_error(stderr: str) -> str:
    """runc's last error message in its stderr, else the stderr text itself."""
    found: list[str] = _MSG.findall(stderr)   # one group: the strings it matched
    if found:
        msg = found[-1]
        if msg.startswith('"'):
            try:
                return str(json.loads(msg))   # a JSON string literal: str
            except json.JSONDecodeError:
                return msg[1:-1]
        return msg
    return " ".join(stderr.split()) or "runc failed without a message"


# `runc state ID` queries started ahead (prefetch), by argv: the next state() with that argv takes the answer.
_ahead: dict[tuple[str, ...], subprocess.Popen[str]] = {}


def prefetch(runc: str, inv: Invocation, container_id: str) -> None:
    """Start `runc state ID` now, in the background; the next state() of the same container takes its answer.

    commands.checkpoint asks before it imports the flow (~25 ms of imports), so runc answers (~7 ms) while
    they load instead of after. It is the same read-only query, asked a little earlier; a caller that may wait
    for the container, or change it, before it asks (state/settle under the container's lock) calls forget().
    """
    argv = (runc, *query_globals(inv), "state", container_id)
    if argv in _ahead:
        return
    try:
        _ahead[argv] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
    except OSError:
        pass            # state() runs it again, and says why it cannot


def forget() -> None:
    """End and reap every query started ahead and not taken: the next state() asks runc afresh."""
    while _ahead:
        _, proc = _ahead.popitem()
        proc.kill()
        proc.communicate()


def _query(runc: str, inv: Invocation, args: list[str]) -> str:
    argv = (runc, *query_globals(inv), *args)
    ahead = _ahead.pop(argv, None)
    try:
        if ahead is not None:
            stdout, stderr = ahead.communicate()
            out = subprocess.CompletedProcess(argv, ahead.returncode, stdout, stderr)
        else:
            out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    except OSError as e:
        raise RuncCkptError(f"cannot run {runc}: {e.strerror}") from None
    if out.returncode != 0:
        raise RuncCkptError(runc_error(out.stderr))
    return out.stdout


def state(runc: str, inv: Invocation, container_id: str) -> ContainerState:
    """`runc state ID` (or its answer, if prefetch() asked ahead); a missing container raises runc's
    "container does not exist"."""
    text = _query(runc, inv, ["state", container_id])
    try:
        return ContainerState.from_json(json.loads(text))
    except json.JSONDecodeError as e:
        raise RuncCkptError(f"unexpected output of runc state: {e}") from None


def exists(runc: str, inv: Invocation, container_id: str) -> bool:
    """Whether runc knows the container (any `runc state` failure counts as gone)."""
    try:
        state(runc, inv, container_id)
    except RuncCkptError:
        return False
    return True


def list_all(runc: str, inv: Invocation) -> list[ContainerState]:
    """Every container under the caller's --root (runc prints `null` for none)."""
    text = _query(runc, inv, ["list", "-f", "json"])
    try:
        docs = json.loads(text) or []
    except json.JSONDecodeError as e:
        raise RuncCkptError(f"unexpected output of runc list: {e}") from None
    return [ContainerState.from_json(d) for d in docs]


def created_key(created: str) -> tuple[datetime, int]:
    """Sort key for runc's created stamps (RFC3339Nano, trailing zeros trimmed).

    A plain string sort is wrong for them ("…47.43Z" vs "…47.4305Z"), and
    datetime keeps only microseconds, so the nanoseconds are kept apart.
    """
    # Imported here, not at the top: only --latest sorts by creation time, and a tiny checkpoint's start-up
    # (containerstate loads before runc is forked) would pay ~1 ms for it.
    from datetime import UTC, datetime
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", created)
    if not m:
        return datetime.min.replace(tzinfo=UTC), 0
    base, frac, zone = m.groups()
    when = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return when.astimezone(UTC), int((frac or "0").ljust(9, "0"))


def running(containers: list[ContainerState]) -> list[ContainerState]:
    return [c for c in containers if c.status == "running"]


def latest(containers: list[ContainerState]) -> ContainerState | None:
    """The most recently created container, whatever its state (podman's --latest)."""
    return max(containers, key=lambda c: created_key(c.created), default=None)
