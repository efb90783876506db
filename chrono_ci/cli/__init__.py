"""The chrono-ci command: parse, resolve settings, call one job, print its result."""
