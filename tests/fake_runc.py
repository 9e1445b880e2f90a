"""A fake runc (and criu) for reliability tests that need no kernel support: real files, fake containers.

Containers are JSON files at <--root>/<id>/state.json, where runc keeps its own (runc-ckpt
looks for that entry before it asks runc about an ID). Knobs are
files in $FAKE_RUNC_DIR: `<command>-sleep` (seconds), `<command>-rc` (exit
status), `restore-exists` (restore fails "already exists" after another
container of that id appears, as when a `run` races us). Every call is
appended to `calls`. checkpoint writes inventory.img/pages-1.img into
--image-path and CRIU's `parent` link for --parent-path; restore checks that
the images (and a parent's) are complete and writes --pid-file.
"""

from __future__ import annotations

import json
import os
import sys
import time

D = os.environ["FAKE_RUNC_DIR"]
GLOBAL_VALUES = {"--root", "--log", "--log-format", "--criu"}
ROOT = "/run/runc"      # runc's default; main() takes --root


def knob(name: str, default: str | None = None) -> str | None:
    try:
        with open(os.path.join(D, name)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return default


def container(cid: str) -> str:
    return os.path.join(ROOT, cid, "state.json")


def main(argv: list[str]) -> int:
    with open(os.path.join(D, "calls"), "a") as f:
        f.write(" ".join(argv) + "\n")
    if argv[:1] == ["--version"]:
        print("runc version 1.1.5")
        return 0
    global ROOT
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] == "--root":
            ROOT = argv[i + 1]
        i += 1 if "=" in argv[i] or argv[i] not in GLOBAL_VALUES else 2
    cmd, rest = (argv[i], argv[i + 1:]) if i < len(argv) else ("", [])
    flags: dict[str, str] = {}
    words: list[str] = []
    j = 0
    while j < len(rest):
        a = rest[j]
        if a.startswith("--") and a[2:] in ("image-path", "parent-path", "work-path", "bundle", "pid-file"):
            flags[a[2:]] = rest[j + 1]
            j += 2
            continue
        (flags.__setitem__(a.lstrip("-"), "1") if a.startswith("-") else words.append(a))
        j += 1
    cid = words[-1] if words else ""
    time.sleep(float(knob(f"{cmd}-sleep", "0") or 0))
    if cmd == "state":
        if not os.path.exists(container(cid)):
            sys.stderr.write('time="x" level=error msg="container does not exist"\n')
            return 1
        with open(container(cid)) as f:
            print(f.read())
        return 0
    if cmd == "checkpoint":
        rc = int(knob("checkpoint-rc", "0") or 0)
        if rc:
            sys.stderr.write('level=error msg="checkpoint failed"\n')
            return rc
        img = flags.get("image-path") or os.path.join(os.getcwd(), "checkpoint")   # runc's default
        os.makedirs(img, exist_ok=True)
        if "parent-path" in flags:
            os.symlink(flags["parent-path"], os.path.join(img, "parent"))
        with open(os.path.join(img, "pages-1.img"), "wb") as f:
            f.write(os.urandom(4096))
        with open(os.path.join(img, "inventory.img"), "wb") as f:   # CRIU's last write
            f.write(b"inventory of " + cid.encode() + b" " + str(time.time()).encode())
        if "pre-dump" not in flags and "leave-running" not in flags and "R" not in flags:
            remove_container(cid)
        return 0
    if cmd == "restore":
        img = flags["image-path"]
        if not os.path.isfile(os.path.join(img, "inventory.img")):
            sys.stderr.write('level=error msg="no images"\n')
            return 1
        if os.path.lexists(os.path.join(img, "parent")) and \
                not os.path.isfile(os.path.join(img, "parent", "inventory.img")):
            sys.stderr.write('level=error msg="parent images missing"\n')
            return 1
        if knob("restore-exists") is not None:
            write_container(cid, knob("restore-exists") or "/elsewhere", 4242)
        if os.path.exists(container(cid)):
            sys.stderr.write(f'level=error msg="container with id exists: {cid}"\n')
            return 1
        rc = int(knob("restore-rc", "0") or 0)
        if rc:
            work = flags.get("work-path", img)
            with open(os.path.join(work, "restore.log"), "w") as f:
                f.write("Error (criu/cr-restore.c): fake failure\n")
            sys.stderr.write(f'level=error msg="criu failed: type RESTORE errno 0\\nlog file: {work}/restore.log"\n')
            return rc
        pid = 10000 + os.getpid() % 1000
        write_container(cid, flags.get("bundle", os.getcwd()), pid)
        if "pid-file" in flags:
            with open(flags["pid-file"], "w") as f:
                f.write(str(pid))
        return 0
    if cmd == "list":                                      # runc list -f json
        docs = []
        for n in sorted(os.listdir(ROOT)) if os.path.isdir(ROOT) else []:
            if os.path.isfile(container(n)):
                with open(container(n)) as f:
                    docs.append(json.load(f))
        print(json.dumps(docs))
        return 0
    if cmd in ("delete", "kill"):
        if cmd == "delete" and os.path.exists(container(cid)):
            remove_container(cid)
        return 0
    return 0


def write_container(cid: str, bundle: str, pid: int) -> None:
    os.makedirs(os.path.dirname(container(cid)), exist_ok=True)
    with open(container(cid), "w") as f:
        json.dump({"ociVersion": "1.0.2", "id": cid, "pid": pid, "status": "running", "bundle": bundle,
                   "rootfs": os.path.join(bundle, "rootfs"), "created": "2026-01-01T00:00:00Z",
                   "annotations": {}}, f)


def remove_container(cid: str) -> None:
    """runc removes the container's whole dir under its root."""
    os.unlink(container(cid))
    os.rmdir(os.path.dirname(container(cid)))


def criu(argv: list[str]) -> int:
    if "--version" in argv:
        print("Version: 4.2.1")
    return 0                      # `criu check --feature mem_dirty_track`: supported


if __name__ == "__main__":
    sys.exit(criu(sys.argv[1:]) if os.environ.get("FAKE_AS") == "criu" else main(sys.argv[1:]))
