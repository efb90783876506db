"""Encryption of archives (age)."""
