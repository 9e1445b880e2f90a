"""The man pages' checkpoint/restore/inspect examples, run as written, with real runc and CRIU.

Each page's example blocks marked
  [//]: # (example: covered by tests/integration/test_man_page_examples.py)
are read from the page and run in order against busybox containers. Only
what must differ on a test machine is rewritten: the page's paths move
under tmp_path (/srv/bundles/ -> bundles/, /tmp/ and the exports dir ->
files/), every call gets a private --root, and runc-ckpt's config sends
its state dir under tmp_path. Flags, IDs and order are the page's own.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.conftest import wait_for
from tests.unit.test_man_pages import examples

THIS = "tests/integration/test_man_page_examples.py"
REDIRECTIONS = {"</dev/null", ">/dev/null", "2>&1"}


class PageRunner:
    """Runs a page's example commands against a private runc root and tmp paths."""

    def __init__(self, runc_ckpt: str, root: Path, tmp: Path) -> None:
        self.runc_ckpt = runc_ckpt
        self.root = root
        self.tmp = tmp
        self.files = tmp / "files"
        self.files.mkdir()
        (tmp / "bundles").mkdir()
        config = tmp / "runc-ckpt.yaml"
        config.write_text(f"state_dir: {tmp / 'state'}\n")
        self.env = {**os.environ, "RUNC_CKPT_CONFIG": str(config)}
        self.prefixes = [("/srv/bundles/", f"{tmp}/bundles/"), ("/var/lib/runc-ckpt/exports/", f"{self.files}/"),
                         ("/tmp/", f"{self.files}/")]
        self.outputs: list[str] = []

    def argv(self, command: str) -> list[str]:
        words = [w for w in shlex.split(command) if w not in REDIRECTIONS]
        assert words[0] == "runc-ckpt", command
        for i, w in enumerate(words):
            for old, new in self.prefixes:
                if w.startswith(old):
                    words[i] = new + w[len(old):]
        return [self.runc_ckpt, "--root", str(self.root), *words[1:]]

    def run(self, command: str) -> str:
        """Run one command, honouring the page's redirections to /dev/null.

        Output goes to files, never pipes, so a detached container cannot
        hold us; a container started with its stdio on /dev/null (as the
        page's `run` does) can be checkpointed, one writing to a host file
        cannot.
        """
        out_path, err_path = self.tmp / "stdout", self.tmp / "stderr"
        quiet = REDIRECTIONS <= set(shlex.split(command))
        with open(out_path, "w") as out, open(err_path, "w") as err:
            rc = subprocess.run(self.argv(command), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL if quiet else out,
                                stderr=subprocess.DEVNULL if quiet else err,
                                env=self.env, timeout=180, check=False).returncode
        stdout, stderr = out_path.read_text(), err_path.read_text()
        assert rc == 0, f"`{command}` exited {rc}: {stderr}"
        self.outputs.append(stdout)
        return stdout

    def run_page(self, page: str) -> int:
        """Run every block of `page` marked for this file; returns how many commands ran."""
        ran = 0
        for kind, where, block, _line in examples(REPO / "docs" / page):
            if kind == "covered by" and THIS in where:
                for line in block:
                    assert line.startswith("# "), line
                    self.run(line[2:])
                    ran += 1
        return ran

    def checkpoint(self, *args: str) -> None:
        """Setup outside the page: `runc-ckpt checkpoint ARGS` with the page's paths."""
        self.run(" ".join(["runc-ckpt", "checkpoint", *args]))


def counter_goes_on(bundle, since: int) -> None:
    """The restored process carries on counting from `since`; a restarted one would start at 1."""
    readings: list[int] = []
    wait_for(lambda: readings.append(bundle.counter()) or readings[-1] > 0, what="a counter reading")
    first = next(r for r in readings if r > 0)  # 0: read while the shell rewrote the file
    assert first >= since, f"counter restarted: {first} after {since} at checkpoint"
    wait_for(lambda: bundle.counter() > first + 2, what="the restored counter to go on")


@pytest.fixture
def runner(runc_ckpt_bin, containers, tmp_path):
    r = PageRunner(runc_ckpt_bin, containers.root, tmp_path)
    containers.ids.extend(["web", "web2"])  # the pages' IDs, removed at teardown
    return r


def test_runc_ckpt_1(runner, make_bundle, containers):
    web = make_bundle(name="bundles/web")
    assert runner.run_page("runc-ckpt.1.md") == 3  # run, checkpoint, restore
    assert containers.status("web") == "running"
    assert (runner.files / "web.tar.zst").stat().st_mode & 0o777 == 0o600
    counter_goes_on(web, 1)  # run and checkpoint follow each other at once: no known count


def test_runc_ckpt_checkpoint_1(runner, make_bundle, containers, runc_ckpt_bin):
    web = make_bundle(name="bundles/web")
    containers.run(web, cid="web", runc_bin=runc_ckpt_bin)
    wait_for(lambda: web.counter() > 3, what="counter to start")
    assert runner.run_page("runc-ckpt-checkpoint.1.md") == 2
    assert containers.status("web") is None  # the second example stopped it
    for archive in ("web.tar.zst", "web.tar"):
        runner.run(f"runc-ckpt inspect /tmp/{archive}")


def test_runc_ckpt_restore_1(runner, make_bundle, containers, runc_ckpt_bin):
    original = make_bundle(name="bundles/original")
    containers.run(original, cid="web", runc_bin=runc_ckpt_bin)
    wait_for(lambda: original.counter() > 3, what="counter to start")
    runner.checkpoint("--export", "/tmp/web.tar.zst", "web")
    at_checkpoint = original.counter()
    web, web2 = make_bundle(name="bundles/web"), make_bundle(name="bundles/web2")
    assert runner.run_page("runc-ckpt-restore.1.md") == 2
    for cid, bundle in (("web", web), ("web2", web2)):
        assert containers.status(cid) == "running"
        counter_goes_on(bundle, at_checkpoint)


def test_runc_ckpt_inspect_1(runner, make_bundle, containers, runc_ckpt_bin):
    web = make_bundle(name="bundles/web")
    containers.run(web, cid="web", runc_bin=runc_ckpt_bin)
    wait_for(lambda: web.counter() > 3, what="counter to start")
    runner.checkpoint("--leave-running", "-e", "/var/lib/runc-ckpt/exports/web.tar.zst", "web")
    runner.checkpoint("--compress", "none", "-e", "/tmp/web-none.tar", "web")
    os.rename(runner.files / "web-none.tar", runner.files / "web.tar")
    assert runner.run_page("runc-ckpt-inspect.1.md") == 2
    text, as_json = runner.outputs[-2:]
    assert "web" in text
    assert isinstance(json.loads(as_json), dict)
