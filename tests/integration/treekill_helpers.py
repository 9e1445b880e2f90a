"""Kill runc-ckpt with its whole process tree (RUNC_CKPT_FAULT=PHASE:killtree[@s]) and check what is left.

Every call runs in a session of its own, as an engine's would, so that the
fault's kill of the process group takes runc and `criu swrk` with it and
nothing of the test. After a kill the protocol is the one an engine follows:
retry the call; if the retry fails naming a command (in backquotes), run
that command -- the one recovery call -- unless the container already runs
somewhere. Then the container must run on exactly one host, its counter must
not have gone back, and nothing may be left: no mount, no runc dir without
state.json, no held lock or lock temp file, no temp or staging file, no
stray runc or CRIU process.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.integration.conftest import Bundle, wait_for
from tests.reliability_env import leftovers

COMMAND = re.compile(r"`(runc-ckpt [^`]+)`")
TIMEOUT = 180
# A CRIU action script (through CRIU_CONFIG_FILE, which `criu swrk` reads) that kills the process group of
# the runc-ckpt above it when CRIU reaches the action named in $TREEKILL_AT: a kill inside CRIU itself.
KILL_SCRIPT = """#!/bin/sh
[ "$CRTOOLS_SCRIPT_ACTION" = "$TREEKILL_AT" ] || exit 0
pid=$$
while [ "$pid" -gt 1 ]; do
    read -r _ _ _ ppid pgid _ < /proc/$pid/stat
    if [ "$pid" = "$pgid" ] && tr '\\0' ' ' < /proc/$pid/cmdline | grep -q runc-ckpt; then
        echo "$CRTOOLS_SCRIPT_ACTION: kill -9 -$pgid" >> "$0.log"
        kill -KILL "-$pgid"
        exit 0
    fi
    pid=$ppid
done
echo "$CRTOOLS_SCRIPT_ACTION: no runc-ckpt above $$" >> "$0.log"
exit 1
"""


@dataclass
class TreeHost:
    """One simulated host: runc root, state dir, config; calls run as their own process group."""

    name: str
    bin: str
    root: Path
    state: Path
    env: dict
    cwd: Path

    def argv(self, *args: str) -> list[str]:
        return [self.bin, "--root", str(self.root), *args]

    def spawn(self, *args: str, fault: str | None = None, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
              ) -> subprocess.Popen:
        """fault: RUNC_CKPT_FAULT's PHASE:ACTION, or criu:ACTION (a tree kill at that CRIU action script)."""
        env = self.env
        if fault and fault.startswith("criu:"):
            env = dict(env, CRIU_CONFIG_FILE=str(self.cwd / "criu-kill.conf"), TREEKILL_AT=fault[5:])
        elif fault:
            env = dict(env, RUNC_CKPT_FAULT=fault)
        # stderr goes to a file, never a pipe: a half-restored CRIU task that survives the kill inherits it,
        # and a pipe would stay open as long as that task lives.
        err = tempfile.TemporaryFile()  # noqa: SIM115 (closed by finish())
        p = subprocess.Popen(self.argv(*args), stdin=stdin, stdout=stdout, stderr=err, env=env,
                             cwd=self.cwd, start_new_session=True)
        p.err_file = err  # type: ignore[attr-defined]
        return p

    def call(self, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
        p = self.spawn(*args, fault=fault, stdout=subprocess.DEVNULL)
        return finish(p)

    def runc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runc", "--root", str(self.root), *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, check=False, timeout=TIMEOUT)

    def status(self, cid: str) -> str | None:
        out = self.runc("state", cid)
        return json.loads(out.stdout)["status"] if out.returncode == 0 else None

    def run_named(self, text: str) -> subprocess.CompletedProcess[str]:
        """Run the one command an error line names (`runc-ckpt ...`), with this host's binary and config."""
        m = COMMAND.search(text)
        assert m, f"the error names no command: {text}"
        words = m.group(1).split()[1:]
        err = tempfile.TemporaryFile()  # noqa: SIM115 (closed by finish())
        p = subprocess.Popen([self.bin, *words], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=err, env=self.env, cwd=self.cwd, start_new_session=True)
        p.err_file = err  # type: ignore[attr-defined]
        return finish(p)


def ps_tree() -> str:
    return subprocess.run(["ps", "-eo", "pid,ppid,pgid,stat,args"], capture_output=True, text=True,
                          check=False).stdout[-4000:]


def make_tree_host(tmp_path: Path, name: str, bin_: str) -> TreeHost:
    base = tmp_path / f"host-{name}"
    for d in ("runc-root", "state", "volumes"):
        (base / d).mkdir(parents=True, exist_ok=True)
    cfg = base / "runc-ckpt.yaml"
    cfg.write_text(f"state_dir: {base / 'state'}\nvolume_roots: [{base / 'volumes'}]\nlock_timeout: 30\n")
    script = base / "criu-kill.sh"
    script.write_text(KILL_SCRIPT)
    script.chmod(0o755)
    (base / "criu-kill.conf").write_text(f"action-script {script}\n")
    return TreeHost(name, bin_, base / "runc-root", base / "state", dict(os.environ, RUNC_CKPT_CONFIG=str(cfg)), base)


def names_command(text: str) -> bool:
    return COMMAND.search(text) is not None


def counter(b: Bundle) -> int:
    try:
        return b.counter()
    except (OSError, ValueError):
        return -1


def runs_on(hosts: list[tuple[TreeHost, Bundle]], cid: str) -> list[tuple[TreeHost, Bundle]]:
    return [(h, b) for h, b in hosts if h.status(cid) == "running"]


def assert_runs_once_and_counts_on(hosts: list[tuple[TreeHost, Bundle]], cid: str, seen: int) -> tuple[TreeHost, Bundle]:
    """Exactly one host runs cid, its counter goes on from at least `seen`."""
    running = runs_on(hosts, cid)
    assert len(running) == 1, f"{cid} runs on {[h.name for h, _ in running]}"
    host, b = running[0]
    wait_for(lambda: counter(b) > seen, timeout=15, what=f"the counter on {host.name} to pass {seen}")
    return host, b


def mounts_below(path: Path) -> list[str]:
    real = os.path.realpath(path)
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp.startswith(real + "/"):
                out.append(mp)
    return out


def pids_holding(path: Path) -> list[tuple[int, str]]:
    real = os.path.realpath(path)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fds = [os.readlink(f"/proc/{name}/fd/{n}") for n in os.listdir(f"/proc/{name}/fd")]
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(t.startswith(real + "/") for t in fds):
            found.append((int(name), cmd))
    return found


def stray_processes(tmp_path: Path, cid: str) -> list[tuple[int, str]]:
    """runc or CRIU processes of this test still alive, or anything holding its state files open."""
    found = [(p, c) for p, c in pids_holding(tmp_path) if "criu" in c or "runc" in c]
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        text = b" ".join(argv).decode(errors="replace")
        if cid.encode() in argv and ("runc" in text or "criu" in text):
            found.append((int(name), text))
        if text.startswith("criu: restore") and any(str(tmp_path) in target for target in _fd_targets(name)):
            found.append((int(name), text))
    return found


def _fd_targets(pid: str) -> list[str]:
    """What pid's fds name; those of a process that exits meanwhile (another test's CRIU) are skipped."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    targets = []
    for n in names:
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{n}"))
        except OSError:
            continue
    return targets


def assert_nothing_left(hosts: list[tuple[TreeHost, Bundle]], cid: str, tmp_path: Path) -> None:
    rootfs_mounts = {os.path.realpath(b.rootfs) for _, b in hosts}
    for h, b in hosts:
        extra = [m for m in mounts_below(tmp_path) if m not in rootfs_mounts and not m.startswith(
            tuple(os.path.realpath(x.rootfs) + "/" for _, x in hosts))]
        assert not extra, f"mounts left: {extra}"
        for d in h.root.iterdir():
            assert (d / "state.json").exists(), f"runc dir without state.json: {d}"
        locks = h.state / "locks"
        if locks.is_dir():
            temps = [n for n in os.listdir(locks) if n.endswith(".tmp")]
            assert not temps, f"lock temp files left: {temps}"
            for n in os.listdir(locks):
                if n.endswith(".lock") and not n.startswith("."):
                    fd = os.open(locks / n, os.O_RDONLY)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        raise AssertionError(f"lock still held: {locks / n}") from None
                    finally:
                        os.close(fd)
        left = leftovers(b.path, h.state)
        left = [x for x in left if "/locks/" not in x]
        # (.intent-sent.json stays beside images a stream without a back channel keeps: documented state)
        left += [str(p) for p in h.state.rglob(".intent-*") if p.name != ".intent-sent.json"]
        assert not left, f"temp/staging/stranded files left: {left}"
    strays = stray_processes(tmp_path, cid)
    assert not strays, f"stray processes: {strays}"


def finish(p: subprocess.Popen) -> subprocess.CompletedProcess[str]:
    """Wait for the process itself (not for EOF: a survivor may hold its stdio); its stderr from the file."""
    try:
        p.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        raise AssertionError(f"{p.args} hung for {TIMEOUT}s: {ps_tree()}") from None
    err = p.err_file  # type: ignore[attr-defined]
    err.seek(0)
    text = err.read().decode(errors="replace")
    err.close()
    return subprocess.CompletedProcess(p.args, p.returncode, b"", text)


def migrate(src: TreeHost, dst: TreeHost, cid: str, dst_bundle: Bundle, send_fault: str | None = None,
            recv_fault: str | None = None, send_args: tuple[str, ...] = ()
            ) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """src `checkpoint --export - [send_args] cid` | dst `restore --import - --bundle B -d cid`, each in its
    own session."""
    r, w = os.pipe()
    ps = src.spawn("checkpoint", "--export", "-", *send_args, cid, fault=send_fault, stdout=w)
    os.close(w)
    pr = dst.spawn("restore", "--import", "-", "--bundle", str(dst_bundle.path), "-d", cid, fault=recv_fault,
                   stdin=r, stdout=subprocess.DEVNULL)
    os.close(r)
    return finish(ps), finish(pr)


def settle_time() -> None:
    """Let processes that a kill orphaned be reaped (their fds closed) before they are counted."""
    time.sleep(0.2)
