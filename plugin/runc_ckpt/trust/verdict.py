"""What the trust policy decides about one checkpoint, before CRIU reads a byte of it.

The checkpoint's manifest lists every member's SHA-256 (verified against
the bytes read before this runs), and its signature member signs the
manifest: so one ECDSA check here covers the CRIU images, the spec and
everything packaged. The verdict says which policy scope applied, who
signed (a key the policy trusts), and why the restore may or may not go on;
inspect prints it, restore enforces it.
"""

from __future__ import annotations

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.record import Record
from runc_ckpt.trust import keys, signature
from runc_ckpt.trust.policy import ACCEPT, REJECT, Policy, Requirement


class Verdict(Record):
    scope: str                # the policy scope that applied ("default", "archive:/path", ...)
    accepted: bool
    reason: str               # one line: why
    signer: str | None = None    # fingerprint of the trusted key whose signature verified
    claimed: str | None = None   # the key a signature names (verified or not)
    policy: str | None = None    # the policy file; None: no policy file (everything accepted)


def decide(pol: Policy, transport: str, scope: str, manifest: bytes | None, sig: bytes | None,
           what: str) -> Verdict:
    """Apply the policy's requirements for (transport, scope) to a checkpoint's manifest and signature."""
    scope_name, requirements = pol.requirements(transport, scope)
    parsed = signature.parse(sig, f"{what}: signature") if sig is not None else None
    claimed = parsed.key if parsed is not None else None
    if pol.path is None:
        how = f"signed by {claimed} (not verified: no signature policy)" if claimed else "unsigned"
        return Verdict("none", True, f"{how}; no signature policy, so any checkpoint is accepted",
                       claimed=claimed)
    signer: str | None = None
    for req in requirements:
        if req.type == ACCEPT:
            continue
        if req.type == REJECT:
            return Verdict(scope_name, False, f"the signature policy {pol.path} rejects everything from "
                           f"{scope_name}", claimed=claimed, policy=pol.path)
        problem, signer = _signed(req, manifest, parsed, what, scope_name, pol.path)
        if problem is not None:
            return Verdict(scope_name, False, problem, claimed=claimed, policy=pol.path)
    how = f"signed by {signer}, which the policy trusts" if signer else "accepted without a signature check"
    return Verdict(scope_name, True, f"{how} ({scope_name} in {pol.path})", signer, claimed, pol.path)


def _signed(req: Requirement, manifest: bytes | None, sig: signature.Signature | None, what: str,
            scope: str, policy_path: str) -> tuple[str | None, str | None]:
    """(why not, None) or (None, the signer's fingerprint)."""
    trusted = [keys.load_public_key(pem, source) for pem, source in zip(req.keys, req.key_sources, strict=True)]
    names = ", ".join(keys.fingerprint_of(k) for k in trusted)
    if sig is None or manifest is None:
        return (f"{what} is not signed, but the signature policy {policy_path} requires a signature by "
                f"{names} for {scope}"), None
    signer = signature.verify(sig, manifest, trusted)
    if signer is not None:
        return None, signer
    if sig.key in {keys.fingerprint_of(k) for k in trusted}:
        return f"{what}: the signature by {sig.key} does not match the manifest (the checkpoint was modified)", None
    return (f"{what} is signed by {sig.key}, a key the signature policy {policy_path} does not trust for "
            f"{scope} (trusted: {names})"), None


def replayed(verdict: Verdict, signed_for: object, container_id: str | None, what: str) -> str | None:
    """Why a signed stream may not be restored as container_id (it is bound to the container it was
    signed for: a recorded stream replayed at another is refused), or None."""
    if verdict.signer and container_id is not None and signed_for != container_id:
        return f"{what} is signed for container {signed_for!r}, not {container_id!r} (a replayed stream?)"
    return None


def enforce(verdict: Verdict) -> None:
    """Refuse the restore unless the policy accepted it: one runc-format error line, nothing touched."""
    if not verdict.accepted:
        raise RuncCkptError(f"restore refused by the signature policy: {verdict.reason}")
