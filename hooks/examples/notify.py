#!/usr/bin/env python3
"""runc-ckpt hook for every stage: append one line per event to a log file.

stdin: the container's OCI state JSON; $RUNC_CKPT_HOOK_STAGE names the stage
and $NOTIFY_LOG the log file. Each line is written with one O_APPEND write,
so concurrent checkpoints never interleave within a line.
"""

import json
import os
import sys
import time


def main() -> int:
    state = json.load(sys.stdin)
    stage = os.environ.get("RUNC_CKPT_HOOK_STAGE", "unknown")
    log = os.environ.get("NOTIFY_LOG", "/var/log/runc-ckpt-events.log")
    line = "{} {} id={} status={} pid={} bundle={}\n".format(
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), stage, state.get("id", "?"),
        state.get("status", "?"), state.get("pid", 0), state.get("bundle", "?"))
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
