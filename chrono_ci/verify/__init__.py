"""Proving an archive: its integrity as it streams, and a restore into a scratch database."""
