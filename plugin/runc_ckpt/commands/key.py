"""`runc-ckpt key generate`: a node's signing and encryption key pairs (trust.keygen)."""

from __future__ import annotations

import os

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import Invocation
from runc_ckpt.commands import cmdflags, options
from runc_ckpt.trust import keygen, keys

NAME = "runc-ckpt key generate - write a signing key pair and an encryption key pair"
USAGE = "runc-ckpt [global options] key generate [command options]"
DESCRIPTION = ("Write signing.key (a sigstore private key, 0600) and signing.pub, which "
               "--sign-by-sigstore-private-key and a policy's sigstoreSigned keyPath take, as skopeo's; "
               "and encryption.key (RSA 4096 PKCS#8, 0600) and encryption.pub, which --decryption-key and "
               "--encryption-key jwe: take. Existing files are never overwritten.")


def run(inv: Invocation) -> int:
    args = cmdflags.sub_command(inv.args, "generate", NAME, USAGE, DESCRIPTION, "key generate")
    if args is None:
        return 0
    p = cmdflags.parse_or_help(options.KEY_GENERATE, args, "key generate", NAME, USAGE, DESCRIPTION,
                               runc_command=False)
    if p is None:
        return 0
    if p.positionals:
        raise RuncCkptError(f"key generate: takes no arguments, got {' '.join(p.positionals)!r}")
    directory = os.path.abspath(p.text("output_dir") or ".")
    fingerprint = keygen.generate(directory, keys.read_passphrase_file(p.text("passphrase_file")))
    pub = os.path.join(directory, keygen.SIGNING_PUB)
    print(f"signing key {fingerprint}; trust it in the policy with: "
          f'{{"type": "sigstoreSigned", "keyPath": "{pub}"}}')
    return 0
