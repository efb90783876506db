"""The database being backed up: its URL and connection, the PostgreSQL client tools, checks before a dump."""
