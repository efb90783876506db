"""What a person reads: console lines, secrets scrubbed, and the JSON document in --json mode."""
