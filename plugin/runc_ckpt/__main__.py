"""`python -m runc_ckpt` runs the same entry point as the runc-ckpt-py script."""

import sys

from runc_ckpt.cli import main

sys.exit(main())
