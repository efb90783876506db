"""Dumping: pg_dump as a stream, and the Supabase profile's three dumps rewritten into one archive."""
