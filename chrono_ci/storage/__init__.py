"""Where archives live: one protocol, several backends."""
