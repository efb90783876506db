"""Encryption of archives with age, through pyrage (the age project's Rust crate): keys.py reads the keys,
streams.py runs encryption and decryption as streams, failures.py says what a failed decryption means."""
