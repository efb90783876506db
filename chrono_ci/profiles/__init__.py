"""The kinds of database chrono-ci backs up, each a profile that owns its dump, its record's fields and its
restore plan: `profile_for(kind)` for a backup, `profile_of_archive(archive)` for a restore."""

from __future__ import annotations

from chrono_ci.archive.locate import ArchiveFile
from chrono_ci.profiles.base import Profile
from chrono_ci.profiles.postgres import PostgresProfile
from chrono_ci.profiles.supabase import SupabaseProfile

PROFILES: dict[str, Profile] = {profile.kind: profile for profile in (PostgresProfile(), SupabaseProfile())}


def profile_for(kind: str) -> Profile:
    return PROFILES[kind]


def profile_of_archive(archive: ArchiveFile) -> Profile:
    """The profile that restores `archive`: what its record says it holds, else what its header does."""
    supabase = PROFILES["supabase"]
    assert isinstance(supabase, SupabaseProfile)
    return supabase if supabase.holds(archive) else PROFILES["postgres"]
