"""Shared test fixtures: where the installed runc-ckpt is, and real tools.

A test that needs a tool that is missing FAILS (never skips): CI must
prove the real stack, and a silent skip would hide a missing install step.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from runc_ckpt.rootfs import mountinfo
from runc_ckpt.state import tmpfsimages

REPO = Path(__file__).resolve().parent.parent


def require_tool(name: str) -> str:
    """Path of a tool the test needs; a missing one fails the test."""
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin")
    if path is None:
        pytest.fail(f"{name} is not installed: run contrib/install-deps.sh", pytrace=False)
    return path


@pytest.fixture(scope="session")
def runc_ckpt_bin() -> str:
    """The installed sh front end: $RUNC_CKPT_BIN, else beside this Python."""
    path = os.environ.get("RUNC_CKPT_BIN") or os.path.join(os.path.dirname(sys.executable), "runc-ckpt")
    if not os.access(path, os.X_OK):
        pytest.fail(f"runc-ckpt is not installed at {path}: run `make test`", pytrace=False)
    return path


@pytest.fixture(scope="session")
def real_runc() -> str:
    return require_tool("runc")


@pytest.fixture(scope="session", autouse=True)
def private_default_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Keep every test off the host's /etc/containers/runc-ckpt.yaml and /var/lib/runc-ckpt.

    Tests that exercise the config lookup itself set or unset RUNC_CKPT_CONFIG
    explicitly; everything else (including runc-ckpt run as a subprocess)
    inherits this private config, whose state_dir is a session temp dir.
    """
    d = tmp_path_factory.mktemp("runc-ckpt-config")
    path = d / "runc-ckpt.yaml"
    path.write_text(f"state_dir: {d / 'state'}\n")
    old = os.environ.get("RUNC_CKPT_CONFIG")
    os.environ["RUNC_CKPT_CONFIG"] = str(path)
    yield str(path)
    if old is None:
        os.environ.pop("RUNC_CKPT_CONFIG", None)
    else:
        os.environ["RUNC_CKPT_CONFIG"] = old


@pytest.fixture(scope="session", autouse=True)
def no_images_in_the_checkout() -> Iterator[None]:
    """runc's default image dir is ./checkpoint: a test that checkpoints without --image-path from
    the checkout would leave CRIU images there (and in a commit). Fail the session if one does."""
    stray = REPO / "checkpoint"
    existed = stray.exists()
    yield
    if not existed and stray.exists():
        pytest.fail(f"a test wrote {stray} (runc's default image dir): run runc-ckpt from a temp dir")


@pytest.fixture
def criu(tmp_path: Path) -> str:
    """A criu binary that does nothing: its real path is what pytest-subprocess's fakes of `criu check` match."""
    path = tmp_path / "criu"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture(scope="session")
def seal_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """Encryption key pairs as `key generate` and openssl write them: kind -> (private PEM, public PEM).

    "rsa" (2048 bits: the minimum, and quick to make), "ec" (P-256) and
    "other" (a second RSA pair, for a wrong key).
    """
    d = tmp_path_factory.mktemp("seal-keys")
    pairs = {}
    for kind, key in (("rsa", rsa.generate_private_key(65537, 2048)), ("ec", ec.generate_private_key(ec.SECP256R1())),
                      ("other", rsa.generate_private_key(65537, 2048))):
        priv, pub = d / f"{kind}.pem", d / f"{kind}.pub"
        priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        priv.chmod(0o600)
        pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
        pairs[kind] = (str(priv), str(pub))
    return pairs


@dataclass(frozen=True)
class FakeTmpfs:
    """A directory standing for /dev/shm (state.tmpfsimages), so unit tests leave the host's tmpfs alone."""

    root: Path        # stands for /dev/shm
    directory: str    # the tmpfs dir the next encrypted export makes
    images: str       # CRIU's --image-path inside it


@pytest.fixture
def fake_tmpfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTmpfs:
    root = tmp_path / "shm"
    root.mkdir()
    monkeypatch.setattr(tmpfsimages, "TMPFS", str(root))
    monkeypatch.setattr(mountinfo, "find_mount",
                        lambda path, mountinfo_path=None: mountinfo.Mount(str(path), "tmpfs", "shm"))
    monkeypatch.setattr(tmpfsimages, "token", lambda: "unit")
    directory = str(root / f"{tmpfsimages.PREFIX}unit")
    return FakeTmpfs(root, directory, tmpfsimages.images_of(directory))
