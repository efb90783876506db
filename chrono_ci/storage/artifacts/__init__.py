"""GitHub Actions workflow artifacts behind the storage protocol (the artifact v4 service)."""
