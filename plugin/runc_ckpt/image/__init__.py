"""OCI checkpoint images: the references, the layout, the annotations, and skopeo as transport.

A checkpoint image is podman's: one layer holding the archive's members
(checkpoint/, config.dump, spec.dump, rootfs-diff.tar, ...), annotated for
podman, CRI-O and checkpointctl at once. The layer is the very tar stream an
archive holds, so restore reads it with the archive reader and its checks.
"""
