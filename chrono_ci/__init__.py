"""chrono-ci: verified, streaming PostgreSQL and Supabase backups for CI."""

__version__ = "0.2.0"
