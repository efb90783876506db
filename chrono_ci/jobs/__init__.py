"""What a command runs: a backup, the status of backups, the heartbeat, the demo."""
