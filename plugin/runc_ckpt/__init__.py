"""runc-ckpt: a runc-compatible OCI runtime with podman-style checkpoint archives."""

__version__ = "0.1.0"
