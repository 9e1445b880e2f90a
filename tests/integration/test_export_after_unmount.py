"""An engine unmounts the container root as soon as the dump ends its process; --export must not care.

podman's cleanup (conmon sees the exit) and containerd's shim unmount the
overlay root right after `runc checkpoint` stops the container, racing our
export of the rootfs diff. The overlay's upper and lower dirs stay, so the
mount is looked up before the dump (rootfs.diff.locate). Here the race is
made certain: the "runc" runc-ckpt calls is a wrapper that runs the real
runc and, after a checkpoint, unmounts the root before returning.
"""

from __future__ import annotations

import os
import subprocess

from tests.export_helpers import inner, read_members
from tests.integration.conftest import wait_for

WRAPPER = """#!/bin/sh
{runc} "$@"
rc=$?
for a do [ "$a" = checkpoint ] && umount {rootfs}; done
exit $rc
"""


def test_export_reads_the_diff_after_the_engine_unmounted_the_root(make_bundle, containers, tmp_path, runc_ckpt_bin,
                                                                    real_runc):
    b = make_bundle()
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    subprocess.run(["sh", "-c", f"echo changed > {b.rootfs}/etc/changed-file"], check=True)
    wrapper = tmp_path / "runc-unmounting"
    wrapper.write_text(WRAPPER.format(runc=real_runc, rootfs=b.rootfs))
    wrapper.chmod(0o755)
    archive = tmp_path / "web.tar.zst"
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "checkpoint", "--export", str(archive), cid],
                         capture_output=True, text=True, env={**os.environ, "RUNC_CKPT_RUNC": str(wrapper)},
                         stdin=subprocess.DEVNULL)
    b.mounted = not subprocess.run(["mountpoint", "-q", str(b.rootfs)]).returncode  # the wrapper unmounted it
    assert out.returncode == 0, out.stderr
    assert not b.mounted, "the wrapper did not unmount the root: the test proves nothing"
    diff = inner(read_members(str(archive))["rootfs-diff.tar"])
    assert "etc/changed-file" in diff and "counter" in diff
