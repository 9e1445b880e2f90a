"""Helpers for the policy/hook tests on the real stack: a logging real runc, configs, archive members."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from runc_ckpt.archive import compression
from tests.conftest import require_tool
from tests.integration.conftest import Bundle, Containers, wait_for


@dataclass
class Stack:
    """runc-ckpt with a private config and a real runc that logs each call's arguments."""

    bin: str
    root: Path
    config: Path
    calls: Path

    def env(self) -> dict[str, str]:
        return dict(os.environ, RUNC_CKPT_CONFIG=str(self.config),
                    RUNC_CKPT_RUNC=str(self.calls.parent / "runc-logged"))

    def run(self, *args: str, root: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [self.bin, *(["--root", str(self.root)] if root else []), *args]
        return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=self.env(),
                              timeout=120)

    def runc_calls(self, command: str) -> list[str]:
        if not self.calls.exists():
            return []
        return [line for line in self.calls.read_text().splitlines() if f" {command} " in f" {line} "]


def make_stack(runc_ckpt_bin: str, root: Path, base: Path) -> Stack:
    base.mkdir(parents=True, exist_ok=True)
    calls = base / "runc-calls.log"
    wrapper = base / "runc-logged"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {require_tool("runc")} "$@"\n')
    wrapper.chmod(0o755)
    config = base / "runc-ckpt.yaml"
    config.write_text("")
    return Stack(runc_ckpt_bin, root, config, calls)


def members(archive: Path) -> dict[str, bytes]:
    """Every regular member of a (compressed) archive, by name."""
    out = {}
    with open(archive, "rb") as raw, compression.decompressing_reader(io.BufferedReader(raw)) as stream, \
            tarfile.open(fileobj=stream, mode="r|") as tar:
        for m in tar:
            if m.isfile():
                out[m.name] = tar.extractfile(m).read()  # type: ignore[union-attr]
    return out


def inner_names(tar_bytes: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return tar.getnames()


def magic(archive: Path) -> str:
    with open(archive, "rb") as f:
        return compression.detect(f.read(4))


def start(make_bundle, containers: Containers, annotations: dict[str, str] | None = None,
          volumes: dict[str, str] | None = None) -> tuple[Bundle, str]:
    b = make_bundle(volumes=volumes)
    if annotations:
        spec = b.config()
        spec["annotations"] = annotations
        b.write_config(spec)
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    return b, cid


def still_running(containers: Containers, b: Bundle, cid: str) -> None:
    assert containers.status(cid) == "running"
    now = b.counter()
    wait_for(lambda: b.counter() > now + 2, what="container to keep running")
