"""One container to checkpoint, as the checkpoint flow settles it before anything is touched.

Apart from the flow so that what runs after the dump (checkpoint.packaging) and the
migration sender can name it without loading the flow, and the flow without them.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag, without importing typing (base/record.py says why)
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from runc_ckpt.checkpoint.incremental_export import Base
    from runc_ckpt.rootfs import diff
    from runc_ckpt.runtime.containerstate import ContainerState
    from runc_ckpt.settings import hooks, policy
    from runc_ckpt.state import predump
    from runc_ckpt.trust.sealkeys import SealKey


class Target:
    """One container to checkpoint, fully checked before anything is touched.

    Mutable: the flow adds what it learns on the way (rootfs_source before the dump, base, a
    migration's next plan). A plain slotted class, not a dataclass: its ~0.5 ms of generated
    methods and the dataclasses/inspect imports are start-up every checkpoint would pay.
    """

    __slots__ = ("base", "plan", "policy", "post_hooks", "pre_hooks", "raw_input", "rootfs_source", "seal_for",
                 "sign_key", "spec", "state")

    def __init__(self, raw_input: str, state: ContainerState, spec: dict, plan: predump.Plan, pol: policy.Policy,
                 pre_hooks: list[hooks.Hook], post_hooks: list[hooks.Hook], seal_for: tuple[SealKey, ...] = (),
                 sign_key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.raw_input = raw_input
        self.state = state
        self.spec = spec
        self.plan = plan
        self.policy = pol
        self.pre_hooks = pre_hooks
        self.post_hooks = post_hooks
        self.rootfs_source: diff.RootfsSource | None = None  # found before the dump when an archive needs the rootfs
        self.seal_for = seal_for      # the archive's recipients (--encryption-key, else the node key)
        self.sign_key = sign_key      # signs the manifest (--sign-by-..., else the node key)
        self.base: Base | None = None  # --incremental-from: the parent chain, indexed before the dump
