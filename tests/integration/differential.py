"""Harness for differential tests: the same scenario with the real runc and with runc-ckpt.

Two sides, each with its own private --root, state dir and busybox bundle on
an overlay rootfs, made once per test module (so scenarios share them). A
scenario starts the same container ID on both sides (the roots are apart),
runs the same steps from the bundle directory, and records an Outcome:
every step's exit code, stdout and stderr, the --log file's lines, the
files created in the bundle directory and the container's state
afterwards. Side-specific paths and times are normalised, so equal
behaviour gives equal Outcomes; a test asserts equality, or asserts the
exact difference that COMPATIBILITY in runc-ckpt(1) documents.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.conftest import COUNTER, Bundle, make_spec, overlay_bundle, wait_for

_TIME = re.compile(r'(time="|"time":")[^"]*"')
_DIGITS = re.compile(r"[0-9]+")
REAL, OURS = "runc", "runc-ckpt"


@dataclass
class Step:
    rc: int
    stdout: str
    stderr: list[str]


@dataclass
class Outcome:
    steps: list[Step]
    log: list[str]
    files: dict[str, list[str]]
    state: str | None

    def errors(self) -> list[str]:
        """Every error-level message of the log file and stderr, in order."""
        found = []
        for line in self.log + [ln for s in self.steps for ln in s.stderr]:
            if line.startswith("{"):
                doc = json.loads(line)
                if doc.get("level") == "error":
                    found.append(doc["msg"])
            elif "level=error" in line:
                found.append(line)
        return found


@dataclass
class Side:
    """One runtime under test with its private root, state dir and bundle."""

    label: str
    bin: str
    base: Path
    root: Path
    bundle: Bundle
    env: dict[str, str]
    runc: str
    log: Path = field(init=False)
    started: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.log = self.base / "log"

    def norm(self, text: str) -> str:
        return _TIME.sub(r'\1T"', text.replace(str(self.base), "<BASE>"))

    def call(self, *args: str, globals_: tuple[str, ...] = (), timeout: float = 120) -> Step:
        """`<runtime> --root ROOT GLOBALS ARGS` from the bundle dir, stdio not the container's."""
        out = subprocess.run([self.bin, "--root", str(self.root), *globals_, *args], cwd=self.bundle.path,
                             capture_output=True, text=True, env=self.env, stdin=subprocess.DEVNULL,
                             timeout=timeout, check=False)
        return Step(out.returncode, self.norm(out.stdout), self.norm(out.stderr).splitlines())

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([self.bin, "--root", str(self.root), *args], cwd=self.bundle.path,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env)

    def start(self, cid: str) -> None:
        """Start cid with the real runc on both sides: creating it is not under test."""
        self.started.append(cid)
        subprocess.run([self.runc, "--root", str(self.root), "run", "-d", "--bundle", str(self.bundle.path), cid],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True, timeout=60)
        if COUNTER in self.bundle.config()["process"]["args"]:
            wait_for(lambda: self.bundle.counter() > 0, what=f"{self.label}: {cid} to start")

    def status(self, cid: str) -> str | None:
        out = subprocess.run([self.runc, "--root", str(self.root), "state", cid], capture_output=True, text=True,
                             check=False)
        return json.loads(out.stdout)["status"] if out.returncode == 0 else None

    def files(self) -> dict[str, list[str]]:
        """What the scenario left in the bundle dir: each new directory's entries (digits masked,
        since CRIU names some images by ids), config.json and the rootfs mount excluded."""
        listing: dict[str, list[str]] = {}
        for entry in sorted(os.listdir(self.bundle.path)):
            path = self.bundle.path / entry
            if entry in ("config.json", "rootfs", "upper", "work"):
                continue
            if path.is_dir() and not path.is_symlink():
                listing[entry] = sorted({_DIGITS.sub("N", n) for n in os.listdir(path)})
            else:
                listing[entry] = []
        return listing

    def reset(self) -> None:
        """Remove the scenario's containers and every file it created in the bundle dir."""
        for cid in self.started:
            subprocess.run([self.runc, "--root", str(self.root), "delete", "--force", cid], capture_output=True,
                           check=False)
        self.started.clear()
        for entry in os.listdir(self.bundle.path):
            if entry not in ("config.json", "rootfs", "upper", "work"):
                path = self.bundle.path / entry
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        for path in (self.log,):
            if path.exists():
                path.unlink()
        shutil.rmtree(self.base / "state", ignore_errors=True)
        for name in ("counter", "stop"):
            (self.bundle.rootfs / name).unlink(missing_ok=True)


def make_side(label: str, binary: str, base: Path, lower: Path, runc_bin: str) -> Side:
    base.mkdir(parents=True)
    root = base / "root"
    root.mkdir()
    b = overlay_bundle(base / "bundle", lower)
    cfg = base / "runc-ckpt.yaml"
    cfg.write_text(f"state_dir: {base / 'state'}\nvolume_roots: [{base / 'volumes'}]\n")
    env = {**os.environ, "RUNC_CKPT_CONFIG": str(cfg)}
    env.pop("RUNC_CKPT_RUNC", None)
    return Side(label, binary, base, root, b, env, runc_bin)


@dataclass
class Pair:
    """The two sides; run() plays one scenario on both and returns their Outcomes."""

    real: Side
    ours: Side
    count: int = 0

    def run(self, scenario: Callable[[Side, str], list[Step]],
            spec: Callable[[Side], dict] | None = None, start: bool = True) -> tuple[Outcome, Outcome]:
        """Play scenario(side, cid) on each side; spec(side) gives the side's config.json."""
        self.count += 1
        cid = f"diff-{self.count}"
        outcomes = []
        for side in (self.real, self.ours):
            side.bundle.write_config(spec(side) if spec else make_spec(["sh", "-c", COUNTER]))
            try:
                if start:
                    side.start(cid)
                steps = scenario(side, cid)
                log = side.norm(side.log.read_text()).splitlines() if side.log.exists() else []
                outcomes.append(Outcome(steps, log, side.files(), side.status(cid)))
            finally:
                side.reset()
        return outcomes[0], outcomes[1]

    def close(self) -> None:
        for side in (self.real, self.ours):
            side.reset()
            subprocess.run(["umount", "-l", str(side.bundle.rootfs)], check=False)
