"""`python -m runc_ckpt` runs the same entry point as the runc-ckpt-py script."""

from runc_ckpt.cli import entry

entry()
