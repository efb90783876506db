"""The kinds of database chrono-ci backs up, each a profile that owns its dump, its record's fields and its
restore plan: `profile_for(kind)` for a backup, `profile_of_archive(archive)` for a restore."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chrono_ci.archive.locate import ArchiveFile
from chrono_ci.profiles.base import Profile
from chrono_ci.profiles.postgres import PostgresProfile

if TYPE_CHECKING:
    from chrono_ci.profiles.supabase import SupabaseProfile

_MADE: dict[str, Profile] = {}


def _supabase() -> SupabaseProfile:
    # Imported on demand: the Supabase dump (its SQL, header and checks) is a tenth of a second of imports on a
    # busy runner, which a plain PostgreSQL backup would pay before pg_dump starts.
    from chrono_ci.profiles.supabase import SupabaseProfile

    profile = _MADE.setdefault("supabase", SupabaseProfile())
    assert isinstance(profile, SupabaseProfile)
    return profile


def profile_for(kind: str) -> Profile:
    if kind == "supabase":
        return _supabase()
    if kind != "postgres":
        raise KeyError(kind)
    return _MADE.setdefault("postgres", PostgresProfile())


def profile_of_archive(archive: ArchiveFile) -> Profile:
    """The profile that restores `archive`: what its record says it holds, else what its header does."""
    supabase = _supabase()
    return supabase if supabase.holds(archive) else profile_for("postgres")
