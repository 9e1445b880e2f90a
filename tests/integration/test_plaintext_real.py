"""No plaintext memory on disk (issue 20): the real runc + CRIU, a random marker that exists only in the
container's memory, and a grep of every file we could have written.

The container's shell builds the marker from /dev/urandom at run time (it is in no file, no argv, no
environment) and hands it to the test through a FIFO (pipe data never reaches the disk). An encrypted
checkpoint -- to an archive, to an `oci:` image and over a stream -- must leave it in no file under the
state dir, the runc root, the archive dir, the bundle, $TMPDIR or /dev/shm; the control (the same without
encryption, --keep) must leave it in the state dir, so the grep can fail. While the encrypted export runs,
the marker IS on tmpfs (the call is paused there): CRIU's images went to tmpfs, not somewhere unseen.
Then the whole tree is killed at each phase that holds plaintext on tmpfs: after the next calls (and the
restore an engine runs when told) nothing plaintext is left anywhere, and the container runs once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.integration.conftest import COUNTER, Bundle, wait_for
from tests.integration.test_restore_import_real import restore_env
from tests.integration.test_tree_kill_real import new_id
from tests.integration.test_trust_real import _keys
from tests.integration.treekill_helpers import (
    TreeHost,
    assert_nothing_left,
    assert_runs_once_and_counts_on,
    counter,
    finish,
    make_tree_host,
    names_command,
    settle_time,
)

FIFO = "mark.fifo"
# The marker: "mk" + 32 hex digits from the container's /dev/urandom, held in a shell variable only.
SCRIPT = ("M=mk$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'); echo \"$M\" > /" + FIFO
          + "; rm -f /" + FIFO + "; " + COUNTER)
SHM = Path("/dev/shm")
CHUNK = 1 << 20


def marker_bundle(make_bundle) -> Bundle:
    b = make_bundle(args=["sh", "-c", SCRIPT])
    os.mkfifo(b.rootfs / FIFO)
    return b


def read_marker(b: Bundle) -> bytes:
    """The marker the container's shell writes into the FIFO (the test holds it in memory only, too)."""
    fd = os.open(b.rootfs / FIFO, os.O_RDONLY | os.O_NONBLOCK)
    data = b""
    try:
        deadline = time.monotonic() + 15
        while not data.endswith(b"\n"):
            assert time.monotonic() < deadline, "the container wrote no marker"
            try:
                data += os.read(fd, 100)
            except BlockingIOError:
                pass
            time.sleep(0.02)
    finally:
        os.close(fd)
    marker = data.strip()
    assert marker.startswith(b"mk") and len(marker) == 34, marker
    return marker


def files_holding(marker: bytes, *dirs: Path) -> list[str]:
    """Every regular file below dirs (links not followed) whose bytes contain marker."""
    found = []
    for top in dirs:
        for dirpath, _, filenames in os.walk(top):
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    if not os.path.isfile(path) or os.path.islink(path):
                        continue
                    with open(path, "rb") as f:
                        tail = b""
                        while chunk := f.read(CHUNK):
                            if marker in tail + chunk:
                                found.append(path)
                                break
                            tail = chunk[-len(marker):]
                except OSError:
                    continue
    return found


def ours_on_tmpfs() -> set[str]:
    return {n for n in os.listdir(SHM) if n.startswith("runc-ckpt-images-")}


def test_an_encrypted_checkpoint_leaves_no_plaintext_memory_on_disk(make_bundle, containers, tmp_path,
                                                                   runc_ckpt_bin):
    skopeo_present = require_tool("skopeo")
    assert skopeo_present
    keys = _keys(runc_ckpt_bin, tmp_path / "keys")
    enc = ["--encryption-key", f"jwe:{keys / 'encryption.pub'}"]
    out_dir = tmp_path / "archives"
    out_dir.mkdir()
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = dict(restore_env(tmp_path), TMPDIR=str(tmpdir))
    state = tmp_path / "state"
    b = marker_bundle(make_bundle)
    cid = containers.run(b)
    marker = read_marker(b)
    wait_for(lambda: b.counter() > 2, what="counter to start")
    before = ours_on_tmpfs()
    everywhere = (state, containers.root, out_dir, b.path, tmpdir, SHM)

    def call(*args: str, stdout=subprocess.DEVNULL, fault: str | None = None) -> subprocess.Popen:
        return subprocess.Popen([runc_ckpt_bin, "--root", str(containers.root), "checkpoint", "--leave-running",
                                 *args, cid], stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
                                env=dict(env, RUNC_CKPT_FAULT=fault) if fault else env)

    def done(p: subprocess.Popen) -> None:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()

    # While the sealed archive is being finished, the plaintext is on tmpfs -- and only there.
    p = call("--export", str(out_dir / "sealed.tar.zst"), *enc, fault="tmpfs-wipe:pause")
    try:
        wait_for(lambda: _stopped(p.pid), timeout=120, what="the export to reach tmpfs-wipe")
        on_tmpfs = files_holding(marker, SHM)
        on_disk = files_holding(marker, *everywhere[:-1])
    finally:
        os.kill(p.pid, signal.SIGCONT)
    done(p)
    assert on_tmpfs and all(f.startswith("/dev/shm/runc-ckpt-images-") for f in on_tmpfs), on_tmpfs
    assert on_disk == []
    assert files_holding(marker, *everywhere) == []

    done(call("--create-image", f"oci:{out_dir / 'img'}:1", *enc))
    assert files_holding(marker, *everywhere) == []

    with open(out_dir / "stream.bin", "wb") as sink:
        done(call("--export", "-", *enc, stdout=sink))
    assert (out_dir / "stream.bin").read_bytes().startswith(b"runc-ckpt sealed\n")
    assert files_holding(marker, *everywhere) == []
    assert ours_on_tmpfs() <= before
    assert not list(state.rglob(".tmpfs-*")) and not list(state.rglob("checkpoint"))

    # The control: unencrypted, --keep keeps CRIU's images in the state dir, where the grep finds the marker.
    done(call("--export", str(out_dir / "plain.tar.zst"), "--keep"))
    found = files_holding(marker, *everywhere)
    assert found and all(f.startswith(str(state)) for f in found), found
    assert containers.status(cid) == "running"


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0] == b"T"


# Each phase that holds plaintext on tmpfs: the dir made (before runc), the archive half written (the
# container dumped and gone: its only copy), the archive complete but the images not yet wiped.
def _encrypted_marker_container(make_bundle, tmp_path: Path, runc_ckpt_bin: str
                                ) -> tuple[list[str], list[str], TreeHost, Bundle, str]:
    """A fresh key pair's encryption and decryption flags, a tree host, and a marker container running on it."""
    keys = _keys(runc_ckpt_bin, tmp_path / "keys")
    host: TreeHost = make_tree_host(tmp_path, "a", runc_ckpt_bin)
    b = marker_bundle(make_bundle)
    cid = new_id()
    subprocess.run(["runc", "--root", str(host.root), "run", "-d", "--bundle", str(b.path), cid],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return (["--encryption-key", f"jwe:{keys / 'encryption.pub'}"], ["--decryption-key", str(keys / "encryption.key")],
            host, b, cid)


PLAINTEXT_FAULTS = ["tmpfs-made:killtree", "export-write:killtree", "tmpfs-wipe:killtree"]


@pytest.mark.parametrize("fault", PLAINTEXT_FAULTS)
def test_a_tree_killed_while_plaintext_is_on_tmpfs_leaves_none_after_the_next_calls(make_bundle, tmp_path,
                                                                                   runc_ckpt_bin, containers,
                                                                                   fault):
    """The engine's protocol (treekill_helpers): retry; run the one command an error names. The retry
    keeps a complete dump on tmpfs while it is the container's only copy; once the container runs again,
    the next call wipes it. At the end the container runs once and no plaintext is anywhere."""
    enc, dec, host, b, cid = _encrypted_marker_container(make_bundle, tmp_path, runc_ckpt_bin)
    try:
        marker = read_marker(b)
        wait_for(lambda: counter(b) > 2, what="counter")
        seen = counter(b)
        archive = tmp_path / "A.tar.zst"
        out = host.call("checkpoint", "--export", str(archive), *enc, cid, fault=fault)
        assert out.returncode == -9, out.stderr
        settle_time()
        retry = host.call("checkpoint", "--export", str(archive), *enc, cid)
        # Killed before the dump, the container runs on and the retry exports it; killed after, the dump on
        # tmpfs is the container's only copy: kept, linked as the state dir's checkpoint, and the retry's
        # error names the restore (an engine runs it), which restores from tmpfs.
        assert (retry.returncode != 0) == (fault != "tmpfs-made:killtree"), retry.stderr
        if retry.returncode != 0:
            assert names_command(retry.stderr), retry.stderr
            assert os.readlink(host.state / cid / "checkpoint").startswith("/dev/shm/runc-ckpt-images-")
            assert files_holding(marker, host.state, host.root, b.path, tmp_path / "A.tar.zst") == []
            assert host.run_named(retry.stderr).returncode == 0
            assert host.status(cid) == "running"
            again = host.call("checkpoint", "--export", str(archive), *enc, cid)   # this call's sweep wipes it
            assert again.returncode == 0, again.stderr
        assert host.status(cid) is None
        r = host.call("restore", "--import", str(archive), *dec, "--bundle", str(b.path), "-d", cid)
        assert r.returncode == 0, r.stderr
        assert_runs_once_and_counts_on([(host, b)], cid, seen)
        assert files_holding(marker, host.state, host.root, tmp_path / "A.tar.zst", b.path, SHM) == []
        assert not list(host.state.rglob(".tmpfs-*"))
        assert_nothing_left([(host, b)], cid, tmp_path)
    finally:
        host.runc("kill", cid, "KILL")
        host.runc("delete", "--force", cid)


def _node_config(tmp_path: Path, keys: Path, name: str, decrypt: bool = True, policy: Path | None = None) -> dict:
    """An environment whose runc-ckpt.yaml has the node keys: encryption (and decryption) and signing."""
    cfg = tmp_path / f"{name}.yaml"
    lines = [f"state_dir: {tmp_path / 'state'}", f"encryption_key: jwe:{keys / 'encryption.pub'}",
             f"sign_by_sigstore_private_key: {keys / 'signing.key'}", f"sign_passphrase_file: {keys / 'pass'}"]
    if decrypt:
        lines.append(f"decryption_key: [{keys / 'encryption.key'}]")
    if policy is not None:
        lines.append(f"signature_policy: {policy}")
    cfg.write_text("\n".join(lines) + "\n")
    return dict(os.environ, RUNC_CKPT_CONFIG=str(cfg), TMPDIR=str(tmp_path / "tmpdir"))


def test_node_encryption_seals_an_engines_images_dir_and_a_plain_restore_opens_it(make_bundle, containers,
                                                                                  tmp_path, runc_ckpt_bin):
    """With node keys, a plain `runc checkpoint --image-path DIR --work-path W` (as podman, CRI-O and containerd
    call it) leaves DIR with sealed files only, signed; a plain `runc restore --image-path DIR` under a policy
    that requires the signature restores it. Without the decryption key, or with one sealed byte flipped, the
    restore is refused with one error line and nothing is touched."""
    keys = _keys(runc_ckpt_bin, tmp_path / "keys")
    (tmp_path / "tmpdir").mkdir()
    policy = tmp_path / "policy.json"
    policy.write_text('{"default": [{"type": "sigstoreSigned", "keyPath": "%s"}]}' % (keys / "signing.pub"))
    env = _node_config(tmp_path, keys, "node", policy=policy)
    b = marker_bundle(make_bundle)
    cid = containers.run(b)
    marker = read_marker(b)
    wait_for(lambda: b.counter() > 2, what="counter to start")
    images, work = b.path / "checkpoint", b.path / "work-dir"
    before_shm = ours_on_tmpfs()

    def runc_ckpt(*args: str, env=env) -> subprocess.CompletedProcess[str]:
        return subprocess.run([runc_ckpt_bin, "--root", str(containers.root), *args], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, timeout=180,
                              check=False)

    out = runc_ckpt("checkpoint", "--image-path", str(images), "--work-path", str(work), cid)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) is None
    seen = b.counter()
    names = sorted(os.listdir(images))
    assert "runc-ckpt.sealed.json" in names and "runc-ckpt.images.sig" in names
    assert {n for n in names if not n.startswith("runc-ckpt.")} >= {"pages-1.img.sealed", "inventory.img"}
    assert all(n.endswith(".sealed") for n in names if not n.startswith("runc-ckpt.") and n != "inventory.img")
    assert (images / "pages-1.img.sealed").read_bytes().startswith(b"runc-ckpt sealed\n")
    assert files_holding(marker, tmp_path, SHM) == []
    assert ours_on_tmpfs() <= before_shm

    # Without the decryption key: one line, nothing restored, the dir as it was, nothing left on tmpfs.
    listing = sorted((n, (images / n).stat().st_mtime_ns) for n in os.listdir(images))
    blind = runc_ckpt("restore", "-d", "--image-path", str(images), "--work-path", str(work), "--bundle",
                      str(b.path), cid, env=_node_config(tmp_path, keys, "blind", decrypt=False, policy=policy))
    assert blind.returncode != 0 and len(blind.stderr.strip().splitlines()) == 1, blind.stderr
    assert "is encrypted" in blind.stderr and "no decryption key" in blind.stderr
    assert containers.status(cid) is None
    assert sorted((n, (images / n).stat().st_mtime_ns) for n in os.listdir(images)) == listing
    assert ours_on_tmpfs() <= before_shm

    # A flipped byte in a sealed page file: the signature check refuses it before anything is decrypted.
    page = images / "pages-1.img.sealed"
    data = bytearray(page.read_bytes())
    data[len(data) // 2] ^= 1
    original = page.read_bytes()
    page.write_bytes(bytes(data))
    tampered = runc_ckpt("restore", "-d", "--image-path", str(images), "--work-path", str(work), "--bundle",
                         str(b.path), cid)
    assert tampered.returncode != 0 and "pages-1.img.sealed" in tampered.stderr, tampered.stderr
    assert len(tampered.stderr.strip().splitlines()) == 1
    assert containers.status(cid) is None
    page.write_bytes(original)

    ok = runc_ckpt("restore", "-d", "--image-path", str(images), "--work-path", str(work), "--bundle",
                   str(b.path), cid)
    assert ok.returncode == 0, ok.stderr
    assert containers.status(cid) == "running"
    wait_for(lambda: b.counter() > seen + 2, what="counter to continue after restore")
    assert files_holding(marker, tmp_path, SHM) == []
    assert ours_on_tmpfs() <= before_shm and not list((tmp_path / "state").rglob(".tmpfs-*"))


def _node_with_a_marker(make_bundle, containers, tmp_path, runc_ckpt_bin):
    """A node with its keys in runc-ckpt.yaml (encryption, no policy) and a running container whose memory
    holds a marker: (env, bundle, container ID, marker)."""
    keys = _keys(runc_ckpt_bin, tmp_path / "keys")
    (tmp_path / "tmpdir").mkdir()
    env = _node_config(tmp_path, keys, "node")
    b = marker_bundle(make_bundle)
    cid = containers.run(b)
    marker = read_marker(b)
    wait_for(lambda: b.counter() > 2, what="counter to start")
    return env, b, cid, marker


@pytest.mark.parametrize("fault", ["tmpfs-made:killtree", "runc-restore:killtree"])
def test_a_plain_restore_killed_with_plaintext_on_tmpfs_leaves_none_after_the_retry(make_bundle, containers,
                                                                                   tmp_path, runc_ckpt_bin, fault):
    """Node-level encryption: a plain restore killed (whole tree) once its tmpfs dir exists, or with the
    complete decrypted copy in it just before runc; the retry's sweep wipes the copy -- complete or not: the
    sealed dir is the durable one -- and restores."""
    env, b, cid, marker = _node_with_a_marker(make_bundle, containers, tmp_path, runc_ckpt_bin)
    images, work = b.path / "checkpoint", b.path / "work-dir"
    before_shm = ours_on_tmpfs()
    base = [runc_ckpt_bin, "--root", str(containers.root)]
    out = subprocess.run([*base, "checkpoint", "--image-path", str(images), "--work-path", str(work), cid],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=180, check=False)
    assert out.returncode == 0, out.stderr
    seen = b.counter()
    restore = [*base, "restore", "-d", "--image-path", str(images), "--work-path", str(work), "--bundle",
               str(b.path), cid]
    killed = subprocess.run(restore, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(env, RUNC_CKPT_FAULT=fault), start_new_session=True, timeout=180, check=False)
    assert killed.returncode == -9
    settle_time()
    assert containers.status(cid) is None
    assert len(ours_on_tmpfs() - before_shm) >= 1          # the killed call's copy, left for the sweep
    retry = subprocess.run(restore, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                           timeout=180, check=False)
    assert retry.returncode == 0, retry.stderr
    assert containers.status(cid) == "running"
    wait_for(lambda: b.counter() > seen, what="counter to continue after restore")
    assert files_holding(marker, tmp_path, SHM) == []
    assert ours_on_tmpfs() <= before_shm and not list((tmp_path / "state").rglob(".tmpfs-*"))


@pytest.mark.parametrize("fault", ["tmpfs-made:killtree", "tmpfs-seal:killtree"])
def test_a_node_sealed_checkpoint_killed_with_plaintext_on_tmpfs_leaves_none_after_the_next_calls(
        make_bundle, containers, tmp_path, runc_ckpt_bin, fault):
    """An engine's plain checkpoint under node encryption, killed (whole tree) before runc, or after the dump
    and before the sealing (the container gone: the tmpfs dump is its only copy). The retry checkpoints it,
    or names the restore that brings it back from tmpfs; the next call wipes what is left."""
    env, b, cid, marker = _node_with_a_marker(make_bundle, containers, tmp_path, runc_ckpt_bin)
    seen = b.counter()
    images, work = b.path / "checkpoint", b.path / "work-dir"
    before_shm = ours_on_tmpfs()
    base = [runc_ckpt_bin, "--root", str(containers.root)]
    checkpoint = [*base, "checkpoint", "--image-path", str(images), "--work-path", str(work), cid]

    def run(argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, timeout=180, check=False, **kw)

    killed = run(checkpoint, env=dict(env, RUNC_CKPT_FAULT=fault), start_new_session=True)
    assert killed.returncode == -9, killed.stderr
    settle_time()
    retry = run(checkpoint, env=env)
    assert (retry.returncode != 0) == (fault == "tmpfs-seal:killtree"), retry.stderr
    if retry.returncode != 0:
        assert names_command(retry.stderr), retry.stderr
        assert files_holding(marker, tmp_path) == []                   # on tmpfs only
        named = retry.stderr[retry.stderr.index("`runc-ckpt ") + len("`runc-ckpt "):].split("`")[0].split()
        assert run([runc_ckpt_bin, *named], env=env).returncode == 0
        assert containers.status(cid) == "running"
        retry = run(checkpoint, env=env)                                # its sweep wipes the kept dump
        assert retry.returncode == 0, retry.stderr
    assert containers.status(cid) is None
    ok = run([*base, "restore", "-d", "--image-path", str(images), "--work-path", str(work), "--bundle",
              str(b.path), cid], env=env)
    assert ok.returncode == 0, ok.stderr
    assert containers.status(cid) == "running"
    wait_for(lambda: b.counter() > seen, what="counter to continue after restore")
    assert files_holding(marker, tmp_path, SHM) == []
    assert ours_on_tmpfs() <= before_shm and not list((tmp_path / "state").rglob(".tmpfs-*"))


@pytest.mark.parametrize("fault", ["runc-restore:pause", "runc-restore:killtree"])
def test_an_encrypted_restore_import_keeps_the_decrypted_images_off_the_disk(make_bundle, tmp_path, runc_ckpt_bin,
                                                                            containers, fault):
    """restore --import of an encrypted archive: while runc restores (our call paused there), the marker is on
    tmpfs -- CRIU's decrypted images -- and in no file anywhere else; after the restore, or after the whole
    tree is killed there and the engine's retry, it is nowhere, and the container runs once."""
    enc, dec, host, b, cid = _encrypted_marker_container(make_bundle, tmp_path, runc_ckpt_bin)
    (tmp_path / "tmpdir").mkdir()
    host.env["TMPDIR"] = str(tmp_path / "tmpdir")
    try:
        marker = read_marker(b)
        wait_for(lambda: counter(b) > 2, what="counter")
        seen = counter(b)
        archive = tmp_path / "A.tar.zst"
        out = host.call("checkpoint", "--export", str(archive), *enc, cid)
        assert out.returncode == 0, out.stderr
        before = ours_on_tmpfs()
        restore = ("restore", "--import", str(archive), *dec, "--bundle", str(b.path), "-d", cid)
        p = host.spawn(*restore, fault=fault, stdout=subprocess.DEVNULL)
        if fault.endswith(":pause"):
            try:
                wait_for(lambda: _stopped(p.pid), timeout=120, what="the restore to reach runc-restore")
                on_tmpfs = files_holding(marker, SHM)
                on_disk = files_holding(marker, tmp_path)
            finally:
                os.kill(p.pid, signal.SIGCONT)
            r = finish(p)
            assert r.returncode == 0, r.stderr
            assert on_tmpfs and all(f.startswith("/dev/shm/runc-ckpt-images-") for f in on_tmpfs), on_tmpfs
            assert on_disk == []
        else:
            r = finish(p)
            assert r.returncode == -9, r.stderr
            settle_time()
            assert files_holding(marker, tmp_path) == []
            # The engine's retry: restored already (runc finished), or it restores now, or it names the call.
            retry = host.call(*restore)
            if retry.returncode != 0 and host.status(cid) != "running":
                assert names_command(retry.stderr), retry.stderr
                assert host.run_named(retry.stderr).returncode == 0
        assert_runs_once_and_counts_on([(host, b)], cid, seen)
        # The next call on the bundle resolves what a killed restore left (its tmpfs copy included).
        out = host.call("checkpoint", "--leave-running", "--export", str(tmp_path / "B.tar.zst"), *enc, cid)
        assert out.returncode == 0, out.stderr
        assert files_holding(marker, tmp_path, SHM) == []
        assert ours_on_tmpfs() <= before
        assert_nothing_left([(host, b)], cid, tmp_path)
    finally:
        host.runc("kill", cid, "KILL")
        host.runc("delete", "--force", cid)
