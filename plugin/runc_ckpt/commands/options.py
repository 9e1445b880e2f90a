"""The flags of runc-ckpt's own commands, in man-page order (byte-wise by long name).

One list per command drives parsing, `--help` and the man-page check, so the
three cannot drift apart. Options marked runc=True are runc 1.1.5's own and
are forwarded to `runc checkpoint`/`runc restore` as the caller spelled them.
"""

from __future__ import annotations

from runc_ckpt.commands.cmdflags import Option

B, V, L = "bool", "value", "list"

CHECKPOINT: list[Option] = [
    Option(("all", "a"), B, "checkpoint every running container under --root"),
    Option(("auto-dedup",), B, "enable auto deduplication of memory images", runc=True),
    Option(("compress", "c"), V, "compression of the --export archive: zstd, gzip or none; "
           "runc-ckpt.yaml's compress changes the default", default="zstd", choices=("zstd", "gzip", "none")),
    Option(("create-image",), V, "write the checkpoint as an OCI image to this reference: oci:DIR[:TAG], "
           "oci-archive:FILE[:TAG], docker://HOST/REPO:TAG, containers-storage:NAME or a bare NAME "
           "(one container only)"),
    Option(("decryption-key",), L, "with --incremental-from: a private key (PEM) that opens an encrypted "
           "parent archive (repeatable; runc-ckpt.yaml's decryption_key adds to them)"),
    Option(("empty-ns",), L, "create a namespace, but don't restore its properties", runc=True),
    Option(("encryption-key",), L, "with --export FILE or - or --create-image: encrypt the archive, stream or "
           "image layer (ocicrypt, through skopeo) for this public key, "
           "jwe:PUBKEY.pem (repeatable: each key can open it); runc-ckpt.yaml's encryption_key is the default"),
    Option(("export", "e"), V, "write the checkpoint, rootfs diff and volumes to this archive "
           "(one container only; - streams it to stdout)"),
    Option(("ext-unix-sk",), B, "allow external unix sockets", runc=True),
    Option(("file-locks",), B, "handle file locks, for safety", runc=True),
    Option(("handshake",), B, "with --export -: read the receiver's replies on stdin (a go/no-go before "
           "the freeze, then whether it restored)"),
    Option(("ignore-rootfs",), B, "with --export/--create-image: leave the rootfs diff out of the archive"),
    Option(("ignore-volumes",), B, "with --export/--create-image: leave named volumes out of the archive"),
    Option(("image-path",), V, "path for saving criu image files (default: ./checkpoint, as runc; "
           "<state_dir>/<container-id>/checkpoint with --export, --create-image, --pre-checkpoint or "
           "--with-previous)", runc=True),
    Option(("incremental-from",), V, "with --export FILE: store only the memory pages changed since this "
           "earlier archive of the container (compared by content); restore finds it beside the new archive"),
    Option(("keep", "k"), B, "keep CRIU's logs, stats-dump and the state-dir images after --export"),
    Option(("latest", "l"), B, "checkpoint the most recently created container under --root"),
    Option(("lazy-pages",), B, "use userfaultfd to lazily restore memory pages", runc=True),
    Option(("leave-running", "R"), B, "leave the process running after checkpointing", runc=True,
           own_aliases=("R",)),
    Option(("manage-cgroups-mode",), V, "cgroups mode: 'soft' (default), 'full' and 'strict'", runc=True),
    Option(("page-server",), V, "ADDRESS:PORT of the page server", runc=True),
    Option(("parent-path",), V, "path for previous criu image files in pre-dump, relative to --image-path",
           runc=True),
    Option(("pre-checkpoint", "P"), B, "dump memory only, leaving the container running; "
           "repeat to chain pre-dumps (needs CRIU memory tracking)"),
    Option(("pre-copy",), B, "with --export -: send the rootfs diff, volumes and memory while the container runs, "
           "then freeze and send only what changed since"),
    Option(("pre-copy-max-pause",), V, "with --pre-copy: the longest phase-0 pause (seconds) the memory pre-copy "
           "may freeze the container for; skip it when the estimate exceeds this (0: never; runc-ckpt.yaml: "
           "pre_copy_max_pause; default: no bound)"),
    Option(("pre-dump",), B, "dump container's memory information only, leave the container running after this",
           runc=True),
    Option(("print-stats",), B, "print checkpoint statistics as JSON on stdout (microseconds)"),
    Option(("shell-job",), B, "allow shell jobs", runc=True),
    Option(("sign-by-sigstore-private-key",), V, "with --export/--create-image: sign the checkpoint's manifest "
           "with this sigstore private key, as skopeo's flag of that name (runc-ckpt.yaml: "
           "sign_by_sigstore_private_key)"),
    Option(("sign-passphrase-file",), V, "the passphrase of --sign-by-sigstore-private-key: the file's first "
           "line (default: an empty passphrase)"),
    Option(("status-fd",), V, "criu writes \\0 to this FD once lazy-pages is ready (-1: none, runc's default)",
           runc=True, integer=True),
    Option(("stream-timeout",), V, "with --export -: seconds the receiver may read nothing before the "
           "stream fails", default="60"),
    Option(("tcp-established",), B, "allow open tcp connections", runc=True),
    Option(("with-previous",), B, "dump on top of the latest --pre-checkpoint, writing only changed pages"),
    Option(("work-path",), V, "path for saving work files and logs (default: the image path, as runc; "
           "<state_dir>/<container-id>/work when the images are in the state dir)", runc=True),
]

RESTORE: list[Option] = [
    Option(("auto-dedup",), B, "enable auto deduplication of memory images", runc=True),
    Option(("bundle", "b"), V, "path to the root of the bundle directory", runc=True),
    Option(("check",), B, "run the pre-flight only: print a pass/fail table of what the checkpoint needs "
           "against this host, change nothing, exit 1 on a failure"),
    Option(("console-socket",), V, "path to an AF_UNIX socket which will receive the console's master fd",
           runc=True),
    Option(("decryption-key",), L, "with --import: a private key (PEM) that opens an encrypted archive "
           "(repeatable; runc-ckpt.yaml's decryption_key adds to them)"),
    Option(("detach", "d"), B, "detach from the container's process", runc=True),
    Option(("empty-ns",), L, "create a namespace, but don't restore its properties", runc=True),
    Option(("ext-unix-sk",), B, "allow external unix sockets", runc=True),
    Option(("file-locks",), B, "handle file locks, for safety", runc=True),
    Option(("handshake",), B, "with --import -: reply on stdout to the sender (a go/no-go after the "
           "pre-flight check, then whether the restore worked)"),
    Option(("ignore-rootfs",), B, "with --import: do not apply the archive's rootfs diff"),
    Option(("ignore-volumes",), B, "with --import: do not restore the archive's volumes"),
    Option(("image-path",), V, "path to criu image files for restoring", runc=True),
    Option(("import", "i"), V, "restore from this checkpoint archive (runc-ckpt's, podman's, CRI-O's), "
           "checkpoint image (oci:DIR[:TAG], oci-archive:FILE[:TAG], docker://REF, containers-storage:NAME), "
           "or - for a stream on stdin"),
    Option(("import-previous",), V, "lay this pre-checkpoint archive in place first"),
    Option(("incremental-dir",), V, "with --import of an incremental archive: find the archives it builds on "
           "in this directory (default: where the archive that names each one lies)"),
    Option(("keep", "k"), B, "keep the staging directory and CRIU's logs"),
    Option(("lazy-pages",), B, "use userfaultfd to lazily restore memory pages", runc=True),
    Option(("lsm-mount-context",), V, "Specify an LSM mount context to be used during restore.", runc=True),
    Option(("lsm-profile",), V, "Specify an LSM profile to be used during restore in the form of TYPE:NAME.",
           runc=True),
    Option(("manage-cgroups-mode",), V, "cgroups mode: 'soft' (default), 'full' and 'strict'", runc=True),
    Option(("name", "n"), V, "with --import: the restored container's ID (default: the archive's)"),
    Option(("no-new-keyring",), B, "accepted for conmon; runc 1.1.5 has no such flag, so it is dropped"),
    Option(("no-pivot",), B, "do not use pivot root to jail process inside rootfs", runc=True),
    Option(("no-subreaper",), B, "disable the use of the subreaper used to reap reparented processes",
           runc=True),
    Option(("parent-path",), V, "accepted for containerd; restore finds the parent through the images"),
    Option(("pid-file",), V, "specify the file to write the process id to", runc=True),
    Option(("print-stats",), B, "print restore statistics as JSON on stdout"),
    Option(("shell-job",), B, "allow shell jobs", runc=True),
    Option(("signature-policy",), V, "the trust policy (containers-policy.json vocabulary), checked before "
           "CRIU runs on an --import's archive, image or stream and on a plain restore's signed images dir, "
           "that decides whose checkpoints may be restored (default: runc-ckpt.yaml's signature_policy, "
           "else /etc/containers/runc-ckpt-policy.json if it exists)"),
    Option(("skip-preflight",), B, "restore even when the pre-flight finds that the checkpoint does not fit "
           "this host (architecture, CRIU, CPU, files, bind sources, flags)"),
    Option(("tcp-close",), B, "close established TCP connections on restore (through a CRIU config file)"),
    Option(("tcp-established",), B, "allow open tcp connections", runc=True),
    Option(("trust-archive-spec",), B, "with --import: run the archive's spec.dump as it is "
           "(host binds, hooks, devices, capabilities)"),
    Option(("work-path",), V, "path for saving work files and logs", runc=True),
]

INSPECT: list[Option] = [
    Option(("decryption-key",), L, "a private key (PEM) that opens an encrypted archive (repeatable; "
           "runc-ckpt.yaml's decryption_key adds to them)"),
    Option(("format", "f"), V, "output format: text or json", default="text", choices=("text", "json")),
    Option(("log",), B, "print CRIU's dump.log kept in the checkpoint, instead of the summary"),
    Option(("signature-policy",), V, "the trust policy whose verdict to show (default: as restore)"),
]

IMAGE_BUILD: list[Option] = [
    Option(("compress", "c"), V, "compression of the image layer: zstd, gzip or none (default: as the archive)",
           choices=("zstd", "gzip", "none")),
]

KEY_GENERATE: list[Option] = [
    Option(("output-dir", "o"), V, "directory for signing.key, signing.pub, encryption.key and encryption.pub",
           default="."),
    Option(("passphrase-file",), V, "seal signing.key with the first line of this file (as skopeo's "
           "--sign-passphrase-file reads it; default: an empty passphrase)"),
]
