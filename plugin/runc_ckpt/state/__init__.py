"""State a checkpoint and a restore share: pre-dump chains in the state dir, the restore journal and its recovery."""
