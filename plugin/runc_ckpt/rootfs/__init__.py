"""The container root filesystem in an export: what changed (overlay) or all of it (plain directory)."""
