"""What a checkpoint records about its container and host (config.dump, host facts) and the restore's check of it."""
