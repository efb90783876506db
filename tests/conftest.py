"""Fixtures shared by the whole suite live in plugin modules, one concern each."""

from __future__ import annotations

import os
import tempfile

import pytest

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.seaweedfs",
    "tests.fixtures.github",
    "tests.fixtures.official_client",
    "tests.fixtures.supabase_sql",
]


def pytest_configure(config: pytest.Config) -> None:
    """chrono-ci remembers pg_dump versions in the user's cache folder: the suite's runs (and every chrono-ci they
    start) use a folder of their own, so that the developer's cache is neither read nor written by the tests."""
    if not hasattr(config, "workerinput"):
        os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="chrono-ci-test-cache-")
