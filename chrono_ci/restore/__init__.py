"""Restoring an archive: plan, confirmation, safety backup, one transaction proven before COMMIT."""
