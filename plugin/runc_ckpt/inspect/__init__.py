"""`runc-ckpt inspect`: what an archive or image holds, verified, and how this host compares."""
