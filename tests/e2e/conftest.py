"""End-to-end tests: real podman 4.3.1 driving runc-ckpt through a private containers.conf."""

from tests.podman_env import podman_env  # noqa: F401
