"""Member names of a checkpoint archive: podman's export layout plus our manifest.

Podman 4.x and checkpointctl read these names; keep them byte-identical.
"""

CHECKPOINT_DIR = "checkpoint"          # CRIU images; must hold inventory.img
PRE_CHECKPOINT_DIR = "pre-checkpoint"  # CRIU pre-dump images
# ours, streams only: memory pre-copy round N >= 1 (migrate.memory), pre-checkpoint.N/parent -> the round before
PRE_COPY_ROUNDS = 4                    # the most rounds a stream may carry after pre-checkpoint/


def pre_copy_round(n: int) -> str:
    """The member dir of memory pre-copy round n: round 0 is pre-checkpoint/, round n >= 1 pre-checkpoint.n/."""
    return PRE_CHECKPOINT_DIR if n == 0 else f"{PRE_CHECKPOINT_DIR}.{n}"


INVENTORY = "inventory.img"
SPEC_DUMP = "spec.dump"                # the bundle's OCI config.json
CONFIG_DUMP = "config.dump"            # engine metadata: id, name, runtime, times
NETWORK_STATUS = "network.status"
STATS_DUMP = "stats-dump"              # CRIU's stats image of the dump
STATS_RESTORE = "stats-restore"
DUMP_LOG = "dump.log"                  # CRIU's log of the dump (podman and CRI-O keep it too)
ROOTFS_DIFF = "rootfs-diff.tar"        # uncompressed tar rooted at the container root
DELETED_FILES = "deleted.files"        # JSON array of container paths
VOLUMES_DIR = "volumes"                # volumes/<name>.tar: a named volume, or bind-<path> (volumes.py)
DEVSHM = "devshm-checkpoint.tar"
CTR_LOG = "ctr.log"
MANIFEST = "runc-ckpt.manifest.json"   # ours: written last, lists every other member
MANIFEST_SIG = "runc-ckpt.manifest.sig"  # ours: the manifest's signature (trust.signature), right after it
PARENT = "runc-ckpt.parent.json"       # ours: an incremental archive's parent (archive.chain), after the images
# Stream-only members (checkpoint --export -; the order is in runc_ckpt.migrate.sender).
MIGRATE_DIR = "migrate"
HELLO = "migrate/hello.json"           # first member of a stream: who sends, for the receiver's pre-flight
PHASE1_END = "migrate/phase1-end.json"  # pre-copy: all of phase 1 is before this member
ROOTFS_REMOVED = "migrate/rootfs-removed.json"  # pre-copy: paths of rootfs-diff.tar gone by the freeze
ROOTFS_DELTA = "migrate/rootfs-delta.tar"       # pre-copy: what changed in the rootfs after phase 1
# Not a member: the staging dir an import extracts the rootfs into, beside it (archive.reader makes it;
# state.transaction sweeps what killed runs left, on every checkpoint, without loading the reader).
ROOTFS_STAGING_PREFIX = ".runc-ckpt-staging-"
STDIO = "-"                            # --export -/--import -: the archive is stdout/stdin

FORMAT = "runc-ckpt"
FORMAT_VERSION = 1


def volume_member(name: str) -> str:
    return f"{VOLUMES_DIR}/{name}.tar"


def volume_removed(name: str) -> str:
    return f"{MIGRATE_DIR}/{VOLUMES_DIR}/{name}.removed.json"


def volume_delta(name: str) -> str:
    return f"{MIGRATE_DIR}/{VOLUMES_DIR}/{name}.tar"
