"""Action mode: chrono-ci as a GitHub Docker container action."""
