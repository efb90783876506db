"""The bytes on their way: SQL scanning and the dump's rules, compression and hashing, reading archives back."""
