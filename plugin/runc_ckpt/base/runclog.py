"""Write log lines exactly as runc 1.1.5 (logrus) does.

Podman reads `--log FILE` written with `--log-format json` as ONE JSON
object, so an error run writes exactly one error line there. runc's fatal()
logs the error to the logger and, when the logger is not stderr, also prints
the bare message to stderr; we do the same.
"""

from __future__ import annotations

import os
import re
import sys
import time

from runc_ckpt.base.globalflags import GlobalFlags

# logrus's TextFormatter leaves a value unquoted only if every char is in here.
_BARE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._/@^+")
# The msg field of a text line: msg="quoted" or msg=bare.
TEXT_MSG = re.compile(r'(?:^|\s)msg=("(?:[^"\\]|\\.)*"|\S+)')


def rfc3339(now: float, utc: bool = False) -> str:
    """Seconds-precision RFC 3339, as logrus stamps runc's lines: local time with its
    offset ("Z" for UTC), or always "Z" with utc=True (archive manifests, inspect)."""
    t = time.gmtime(now) if utc else time.localtime(now)
    off = t.tm_gmtoff or 0
    sign = "+" if off > 0 else "-"
    zone = "Z" if off == 0 else f"{sign}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + zone


def _quote(value: str) -> str:
    # logrus leaves an empty value bare, and quotes with Go's %q, which for
    # printable text matches a JSON string.
    if all(c in _BARE for c in value):
        return value
    import json
    return json.dumps(value, ensure_ascii=False)


def _json(value: dict[str, str]) -> str:
    # Go's encoding/json (logrus's JSONFormatter) escapes <, > and & as \u003c etc.
    import json
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def with_message(line: str, msg: str) -> str:
    """The same runc log line (json or text, newline kept) with its message replaced: how the
    one error line can carry our context without a second line."""
    end = "\n" if line.endswith("\n") else ""
    body = line[:len(line) - len(end)]
    if body.lstrip().startswith("{"):
        import json
        doc = json.loads(body)
        doc["msg"] = msg
        return _json(doc) + end
    m = TEXT_MSG.search(body)
    if m is None:
        return f"{body} msg={_quote(msg)}{end}"
    return body[:m.start(1)] + _quote(msg) + body[m.end(1):] + end


def format_line(level: str, msg: str, log_format: str, now: float | None = None) -> str:
    """One log line in runc's text or json format, newline included."""
    stamp = rfc3339(time.time() if now is None else now)
    if log_format == "json":
        return _json({"level": level, "msg": msg, "time": stamp}) + "\n"
    return f"time={_quote(stamp)} level={level} msg={_quote(msg)}\n"


def _to_stderr(flags: GlobalFlags) -> bool:
    # Only an empty --log means runc's logger IS stderr; `--log /dev/stderr`
    # opens a new file, so runc then also prints the bare fatal message.
    return flags.log == ""


def _write(fd: int, text: str) -> None:
    # Arguments may carry undecodable bytes (surrogateescape); a log line
    # must still go out rather than raise. (sys.stderr itself uses
    # backslashreplace, so it needs no such care.)
    os.write(fd, text.encode("utf-8", "replace"))


def log(flags: GlobalFlags, level: str, msg: str) -> None:
    """Append one line to runc's log destination; never raises."""
    if level == "debug" and not flags.debug:
        return
    line = format_line(level, msg, flags.log_format)
    try:
        if _to_stderr(flags):
            sys.stderr.write(line)
            sys.stderr.flush()
        else:
            fd = os.open(flags.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                _write(fd, line)
            finally:
                os.close(fd)
    except OSError:
        pass


def debug(flags: GlobalFlags, msg: str) -> None:
    log(flags, "debug", msg)


def warn(flags: GlobalFlags, msg: str) -> None:
    log(flags, "warning", msg)


def fatal(flags: GlobalFlags, msg: str, exit_code: int = 1) -> int:
    """Report a fatal error the way runc's fatal() does; return the exit code."""
    msg = " ".join(msg.split("\n")).strip() or "unknown error"
    log(flags, "error", msg)
    if not _to_stderr(flags):
        try:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()
        except OSError:
            pass
    return exit_code
