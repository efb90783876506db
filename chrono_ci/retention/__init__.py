"""Retention: the pure policy that decides what to keep, and applying it to a folder or a bucket."""
