"""A restore target for tests that never reach CRIU: bundle, base rootfs, volume, a fake runc.

The fake runc (RUNC_CKPT_RUNC) records every call; `state` says "no such
container" unless told otherwise, `restore` succeeds. Snapshots compare a
whole directory tree (names, types, modes, owners, sizes, content hashes,
link targets, file mtimes; directory mtimes are left out because creating
and removing a staging dir touches them).
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

FAKE_RUNC = """#!/bin/sh
printf '%s\\n' "$*" >> "{log}"
printf 'CRIU_CONFIG_FILE=%s\\n' "$CRIU_CONFIG_FILE" >> "{log}"
for a do
    case $a in
        state)
            [ -e "{state_ok}" ] && {{ echo '{{"status":"running"}}'; exit 0; }}
            echo "container does not exist" >&2; exit 1 ;;
        restore) exit $(cat "{restore_rc}" 2>/dev/null || echo 0) ;;
        delete) exit 0 ;;
    esac
done
exit 0
"""


@dataclass
class Target:
    tmp: Path
    bundle: Path
    rootfs: Path
    volume: Path
    outside: Path
    runc_root: Path
    runc_log: Path
    env: dict[str, str]
    bin: str

    def restore(self, *args: str, cid: str | None = "hostile-test") -> subprocess.CompletedProcess[str]:
        argv = [self.bin, "--root", str(self.runc_root), "restore", *args, "--bundle", str(self.bundle), "-d"]
        if cid:
            argv.append(cid)
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, stdin=subprocess.DEVNULL,
                              timeout=120, check=False)

    def runc_calls(self) -> list[str]:
        if not self.runc_log.exists():
            return []
        return [line for line in self.runc_log.read_text().splitlines() if not line.startswith("CRIU_CONFIG_FILE=")]

    def set_container_exists(self, cid: str = "hostile-test") -> None:
        """The fake runc's `state` succeeds, and runc's root holds the container's dir, as runc's would."""
        (self.tmp / "state-ok").touch()
        (self.runc_root / cid).mkdir(exist_ok=True)
        (self.runc_root / cid / "state.json").write_text("{}")

    def set_restore_rc(self, rc: int) -> None:
        (self.tmp / "restore-rc").write_text(str(rc))


def make_target(tmp: Path, runc_ckpt_bin: str) -> Target:
    bundle = tmp / "bundle"
    rootfs = bundle / "rootfs"
    for sub in ("bin", "etc", "tmp"):
        (rootfs / sub).mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "lower-file").write_text("from the image\n")
    volume = tmp / "volumes" / "vol1" / "_data"
    volume.mkdir(parents=True)
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "victim").write_text("must survive\n")
    (outside / "secret").write_text("must not be linked\n")
    runc_root = tmp / "runc-root"
    runc_root.mkdir()
    log = tmp / "fake-runc.log"
    fake = tmp / "fake-runc"
    fake.write_text(FAKE_RUNC.format(log=log, state_ok=tmp / "state-ok", restore_rc=tmp / "restore-rc"))
    fake.chmod(0o755)
    cfg = tmp / "runc-ckpt.yaml"
    # The state dir (locks, restore work dirs) lies beside tmp, so snapshots of tmp stay comparable.
    cfg.write_text(f"volume_roots: [{tmp / 'volumes'}]\nstate_dir: {tmp}-state\n")
    env = dict(os.environ, RUNC_CKPT_RUNC=str(fake), RUNC_CKPT_CONFIG=str(cfg))
    env.pop("CRIU_CONFIG_FILE", None)
    return Target(tmp, bundle, rootfs, volume, outside, runc_root, log, env, runc_ckpt_bin)


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Everything about a tree except directory mtimes."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if rel.split(os.sep)[0] in skip:
                continue
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            extra: object = None
            if stat.S_ISREG(st.st_mode):
                extra = (hashlib.sha256(Path(p).read_bytes()).hexdigest(), st.st_mtime_ns)
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size if kind != stat.S_IFDIR
                        else 0, extra)
    # the roots' own modes matter too (the rootfs root mode is set on apply)
    out["."] = (stat.S_IMODE(os.stat(root).st_mode),)
    return out
