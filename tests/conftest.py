"""Fixtures shared by the whole suite live in plugin modules, one concern each."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.seaweedfs",
    "tests.fixtures.github",
    "tests.fixtures.official_client",
    "tests.fixtures.supabase_sql",
]
