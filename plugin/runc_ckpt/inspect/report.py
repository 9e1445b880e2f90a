"""`inspect` of an archive or a checkpoint image: the summary, who can restore it, and whether this host fits.

Reads the checkpoint exactly as restore would (image fetch, layer digest,
annotation checks, manifest) but writes nothing but scratch copies of
remote images, so what inspect calls good is what restore accepts.
"""

from __future__ import annotations

import contextlib
import tempfile

from runc_ckpt.archive import chain, reader, summary
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import GlobalFlags
from runc_ckpt.image import annotations as image_annotations
from runc_ckpt.image import source as importsource
from runc_ckpt.metadata import configdump, preflight
from runc_ckpt.trust import policy as trustpolicy
from runc_ckpt.trust import verdict

PODMAN_NOTE = ("config.dump names no image podman's storage knows (and spec.dump lacks what CRI-O needs): "
               "only runc-ckpt can restore it (see runc-ckpt-checkpoint(1), PODMAN)")


def inspect(text: str, runc: str, criu: str, flags: GlobalFlags, decryption_keys: tuple[str, ...] = (),
            policy_path: str | None = None) -> tuple[dict, str | None, bytes | None]:
    """(description, problem or None, CRIU's dump.log if the checkpoint keeps it).

    An encrypted archive opens with one of decryption_keys; without one, the error says for which
    key fingerprints it is encrypted, and nothing else is read. The trust policy (policy_path, else
    the default file) judges it as restore would; a refusal is the problem."""
    trust = trustpolicy.load(policy_path)
    with contextlib.ExitStack() as stack:
        src = importsource.open_source(text, tempfile.gettempdir(), flags, stack, decryption_keys)
        staged, problem = summary.read(src.path, src.sha256, decryption_keys)
        if problem is None:
            try:
                importsource.verify(src, staged.members, staged.config_dump)
            except RuncCkptError as e:
                problem = str(e)
        judged = None
        if problem is None:
            transport, scope = src.trust_scope()
            judged = verdict.decide(trust, transport, scope, staged.manifest_raw, staged.manifest_sig, src.what)
            if not judged.accepted:
                problem = f"restore would be refused by the signature policy: {judged.reason}"
        links, chain_problem = _chain(staged, src, decryption_keys, trust) if problem is None else ([], None)
        problem = problem or chain_problem
        info = summary.describe(staged, src.path, problem)
        info["chain"] = links
        info["trust"] = None if judged is None else {
            "signer": judged.signer, "signature_key": judged.claimed, "policy": judged.policy,
            "scope": judged.scope, "accepted": judged.accepted, "reason": judged.reason}
    if src.reference is not None:
        info["archive"] = src.reference
        info["image"] = {"reference": src.reference, "manifest_digest": src.manifest_digest,
                         "annotations": src.annotations}
    podman = configdump.podman_restorable(staged.config_dump)
    info["restorable_by"] = ((["podman"] if podman else [])
                             + (["CRI-O"] if image_annotations.crio_restorable(staged.spec, staged.config_dump) else [])
                             + ["runc-ckpt"])
    if info["restorable_by"] == ["runc-ckpt"]:
        info["restore_note"] = PODMAN_NOTE
    rows = preflight.compare(preflight.recorded(staged.manifest, src.annotations), configdump.versions(runc, criu))
    info["compatibility"] = [{"what": r.what, "recorded": r.recorded, "here": r.here, "verdict": r.verdict}
                             for r in rows]
    info["dump_log"] = staged.dump_log is not None
    return info, problem, staged.dump_log


def _chain(staged: reader.Staged, src: importsource.Source, decryption_keys: tuple[str, ...],
           trust: trustpolicy.Policy) -> tuple[list[dict], str | None]:
    """An incremental archive's parents, as restore would follow them: one row each, and the problem if any.

    Each row: the recorded name, where it was looked for, the pinned digest, the child's depth, and
    digest "ok", or how the chain breaks there (missing, mismatch, too-deep, bad)."""
    def read(path: str, n: int) -> reader.Staged:
        parent = reader.stage(path, reader.Targets(None, None, None), decryption_keys=decryption_keys)
        parent.verify()
        chain.judge(trust, path, parent)
        return parent

    rows: list[dict] = []
    link: chain.Link | None = None
    path = ""
    try:
        link = chain.parse(staged)
        if link is None:
            return rows, None
        if src.reference is not None:
            raise chain.ChainError(f"{src.what} is an incremental checkpoint on top of {link.archive}: "
                                   "only its archive file restores, beside the archives it builds on", "bad")
        path = chain.locate(link, src.path, None)
        for ancestor in chain.walk(path, link, None, read):
            rows.append(_row(link, ancestor.path, "ok"))
            below = chain.parse(ancestor.staged)
            if below is not None:       # walk() goes on to it
                link, path = below, chain.locate(below, ancestor.path, None)
    except chain.ChainError as e:
        rows.append(_row(link, path, e.status) if link is not None else {"digest": e.status})
        return rows, str(e)
    except RuncCkptError as e:      # a parent that does not read or verify
        rows.append(_row(link, path, "bad") if link is not None else {"digest": "bad"})
        return rows, str(e)
    return rows, None


def _row(link: chain.Link, path: str, status: str) -> dict:
    return {"archive": link.archive, "path": path, "manifest_sha256": link.manifest_sha256,
            "depth": link.depth, "digest": status}


def render_text(info: dict) -> str:
    """summary's rows, then the image, restorability and the host comparison."""
    rows = []
    trust = info.get("trust")
    if trust is not None:
        signed = trust["signer"] or (f"{trust['signature_key']} (not trusted)" if trust["signature_key"] else "unsigned")
        rows.append(("Signed by", signed))
        rows.append(("Trust policy", f"{'accept' if trust['accepted'] else 'REFUSE'}: {trust['reason']}"))
    if "image" in info:
        rows.append(("Image manifest", info["image"]["manifest_digest"]))
    for link in info["chain"]:
        where = f"{link.get('path', '-')} (depth {link.get('depth', '-')}, digest {link['digest']})"
        rows.append(("Incremental on", where))
    rows.append(("Restorable by", ", ".join(info["restorable_by"])
                 + ("" if "restore_note" not in info else f" ({info['restore_note']})")))
    for r in info["compatibility"]:
        here = r["here"].splitlines()[0] if r["here"] else "-"
        rows.append((f"Host {r['what']}", f"{r['recorded']} -> here {here} ({r['verdict']})"))
    rows.append(("CRIU dump log", "kept (inspect --log)" if info["dump_log"] else "not in the checkpoint"))
    width = max(len(k) for k, _ in rows) + 2
    return summary.render_text(info) + "".join(f"{k + ':':<{width}}{v}\n" for k, v in rows)
