"""Which database a kind of backup means: DATABASE_URL for postgres, SUPABASE_DB_URL for supabase."""

from __future__ import annotations

from chrono_ci.config.settings import Settings
from chrono_ci.errors import ConfigError
from chrono_ci.source.target import DatabaseTarget

URL_SETTING = {"postgres": "DATABASE_URL", "supabase": "SUPABASE_DB_URL"}


def target_for(settings: Settings, kind: str) -> DatabaseTarget:
    target = settings.database if kind == "postgres" else settings.supabase
    if target is None:
        name = URL_SETTING[kind]
        raise ConfigError(
            f"{name} is not set: there is no {kind} database to back up.",
            hint=f"Set {name}=postgresql://user:password@host:5432/database in the environment "
            "(or a CI secret), then run again.",
        )
    return target
