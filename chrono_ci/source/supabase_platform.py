"""What a Supabase project owns: the schemas whose structure (or rows) belong to the platform, its migration
history tables and its reserved roles. A dump leaves them out, a restore never drops them.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

# Supabase CLI (apps/cli-go/pkg/migration/dump.go): schemas whose structure belongs to the platform.
SCHEMA_DUMP_EXCLUDED = (
    "information_schema", "pg_*", "_analytics", "_realtime", "_supavisor", "auth", "etl", "extensions",
    "pgbouncer", "realtime", "storage", "supabase_functions", "supabase_migrations", "cron", "dbdev", "graphql",
    "graphql_public", "net", "pgmq", "pgsodium", "pgsodium_masks", "pgtle", "repack", "tiger", "tiger_data",
    "timescaledb_*", "_timescaledb_*", "topology", "vault",
)  # fmt: skip
# The data dump leaves out fewer: the rows of auth, storage, cron, net, pgmq and supabase_functions travel.
DATA_DUMP_EXCLUDED = (
    "information_schema", "pg_*", "graphql", "graphql_public", "pgsodium", "pgsodium_masks", "pgtle", "repack",
    "tiger", "tiger_data", "timescaledb_*", "_timescaledb_*", "topology", "vault", "etl", "extensions",
    "pgbouncer", "realtime", "supabase_migrations", "_analytics", "_realtime", "_supavisor",
)  # fmt: skip
# The platform's own migration history: a new project has its own, which must not be overwritten.
EXCLUDED_TABLES = ("auth.schema_migrations", "storage.migrations", "supabase_functions.migrations")
RESERVED_ROLE = re.compile(
    r"anon|authenticated|authenticator|cli_login_.*|dashboard_user|pgbouncer|postgres|service_role|supabase_.*"
    r"|pgsodium_key.*|pgtle_admin"
)


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def is_managed_schema(name: str) -> bool:
    """A schema whose structure Supabase owns: never dumped as schema, never dropped by a restore."""
    return matches_any(name, SCHEMA_DUMP_EXCLUDED)


def data_is_dumped(schema: str, table: str) -> bool:
    return not matches_any(schema, DATA_DUMP_EXCLUDED) and f"{schema}.{table}" not in EXCLUDED_TABLES
