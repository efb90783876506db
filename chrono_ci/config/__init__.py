"""Configuration: the settings in force, resolved once from options, the environment and defaults."""
