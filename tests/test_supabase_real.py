"""Backup, restore and restore-verification of Supabase projects built from Supabase's own SQL (the CLI's roles
dump and initial schema, see tests/fixtures/supabase_sql.py), with an app written the way Supabase's guides
write one: profiles filled by a SECURITY DEFINER handle_new_user() trigger on auth.users, row-level security
with auth.uid(), policies on storage.objects, a grant to an app role on auth.users, a realtime publication.

Everything runs as the project's `postgres` role, which Supabase's roles dump demotes (no superuser, BYPASSRLS,
CREATEROLE); the superuser supabase_admin only builds the projects and looks at them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from tests.fixtures.postgres import CliResult, PgServer
from tests.fixtures.supabase_sql import SupabaseCluster, SupabaseProject

Run = Callable[..., CliResult]
Projects = Callable[[SupabaseCluster, str], SupabaseProject]

ADA = "11111111-1111-1111-1111-111111111111"
BOB = "22222222-2222-2222-2222-222222222222"
APP_ROLE = "app_auditor"
MANAGED = ("auth", "storage", "realtime", "extensions", "graphql_public", "supabase_functions", "pgbouncer")

# The app, as its migrations would make it, run as postgres.
APP_SQL = f"""
CREATE TABLE public.profiles (
    id uuid NOT NULL REFERENCES auth.users ON DELETE CASCADE PRIMARY KEY,
    updated_at timestamptz, username text UNIQUE, full_name text, avatar_url text
);
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Public profiles are viewable by everyone." ON public.profiles FOR SELECT USING (true);
CREATE POLICY "Users can insert their own profile." ON public.profiles FOR INSERT
    WITH CHECK ((SELECT auth.uid()) = id);
CREATE POLICY "Users can update own profile." ON public.profiles FOR UPDATE USING ((SELECT auth.uid()) = id);
GRANT ALL ON public.profiles TO anon, authenticated, service_role;

CREATE FUNCTION public.handle_new_user() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
  INSERT INTO public.profiles (id, full_name, avatar_url)
  VALUES (new.id, new.raw_user_meta_data->>'full_name', new.raw_user_meta_data->>'avatar_url');
  RETURN new;
END;
$$;
CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users FOR EACH ROW EXECUTE PROCEDURE public.handle_new_user();

CREATE FUNCTION public.is_avatar_bucket(bucket text) RETURNS boolean LANGUAGE sql STABLE AS
    $$ SELECT bucket = 'avatars' $$;
INSERT INTO storage.buckets (id, name, public) VALUES ('avatars', 'avatars', true);
CREATE POLICY "Avatar images are publicly accessible." ON storage.objects FOR SELECT USING (bucket_id = 'avatars');
CREATE POLICY "Anyone can upload an avatar." ON storage.objects FOR INSERT WITH CHECK (bucket_id = 'avatars');
CREATE POLICY "Owners update their avatars." ON storage.objects FOR UPDATE TO authenticated
    USING (public.is_avatar_bucket(bucket_id) AND owner = (SELECT auth.uid()));
COMMENT ON POLICY "Anyone can upload an avatar." ON storage.objects IS 'from the app''s first migration';
CREATE FUNCTION storage.owns(object_owner uuid) RETURNS boolean LANGUAGE sql STABLE AS
    $$ SELECT object_owner = (SELECT auth.uid()) $$;
REVOKE EXECUTE ON FUNCTION storage.owns(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION storage.owns(uuid) TO authenticated;
CREATE POLICY "Owners delete their avatars." ON storage.objects FOR DELETE TO authenticated USING (storage.owns(owner));

DO $$ BEGIN CREATE ROLE {APP_ROLE} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT USAGE ON SCHEMA auth TO {APP_ROLE};
GRANT SELECT ON auth.users TO {APP_ROLE};

ALTER PUBLICATION supabase_realtime ADD TABLE public.profiles;
"""

# Two sign-ups through the trigger, as GoTrue writes them, an identity, a session, and an avatar.
DATA_SQL = f"""
INSERT INTO auth.users (instance_id, id, aud, role, email, raw_user_meta_data, created_at, updated_at)
VALUES ('00000000-0000-0000-0000-000000000000', '{ADA}', 'authenticated', 'authenticated', 'ada@example.com',
        '{{"full_name": "Ada Lovelace", "avatar_url": "ada.png"}}', now(), now()),
       ('00000000-0000-0000-0000-000000000000', '{BOB}', 'authenticated', 'authenticated', 'bob@example.com',
        '{{"full_name": "Bob"}}', now(), now());
INSERT INTO auth.identities (provider_id, user_id, identity_data, provider, created_at)
VALUES ('{ADA}', '{ADA}', '{{"sub": "{ADA}", "email": "ada@example.com"}}', 'email', now());
INSERT INTO auth.sessions (id, user_id, created_at, aal) VALUES (gen_random_uuid(), '{ADA}', now(), 'aal1');
INSERT INTO storage.objects (bucket_id, name, owner, metadata)
VALUES ('avatars', 'ada/avatar.png', '{ADA}', '{{"size": 1234, "mimetype": "image/png"}}');
UPDATE public.profiles SET username = 'ada' WHERE id = '{ADA}';
"""

APP_POLICIES = {
    "Avatar images are publicly accessible.",
    "Anyone can upload an avatar.",
    "Owners update their avatars.",
    "Owners delete their avatars.",
}


def _rows(url: str, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        conn.execute("SET search_path = ''")  # names come out schema-qualified, whoever looks
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def _app(project: SupabaseProject) -> None:
    with psycopg.connect(project.url, autocommit=True) as conn:
        conn.execute(APP_SQL)  # type: ignore[arg-type]
        conn.execute(DATA_SQL)  # type: ignore[arg-type]


def _contents(project: SupabaseProject, tables: list[str]) -> dict[str, str]:
    """Every row of every table the backup holds, as one digest per table (read by the superuser)."""
    found = {}
    for table in tables:
        schema, _, name = table.partition(".")
        ident = f'"{schema}"."{name}"'
        (digest,) = _rows(
            project.admin_url, f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {ident} t"
        )[0]
        found[table] = str(digest)
    return found


def _platform(project: SupabaseProject) -> dict[str, str]:
    """Supabase's own objects in its schemas: functions, triggers, columns, table grants and policies."""
    rows = _rows(
        project.admin_url,
        "SELECT 'function ' || p.oid::regprocedure::text, "
        "md5(pg_get_functiondef(p.oid)) || pg_get_userbyid(p.proowner) FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY(%(s)s) AND p.prokind = 'f' "
        "UNION ALL SELECT 'trigger ' || t.tgrelid::regclass::text || ' ' || t.tgname, pg_get_triggerdef(t.oid) "
        "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%(s)s) AND NOT t.tgisinternal "
        "UNION ALL SELECT 'column ' || table_schema || '.' || table_name || '.' || column_name, "
        "data_type || coalesce(column_default, '') FROM information_schema.columns WHERE table_schema = ANY(%(s)s) "
        "UNION ALL SELECT 'acl ' || c.oid::regclass::text, coalesce(c.relacl::text, '') FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%(s)s) "
        "UNION ALL SELECT 'policy ' || schemaname || '.' || tablename || ' ' || policyname, coalesce(qual, '') "
        "FROM pg_policies WHERE schemaname = ANY(%(s)s) "
        "UNION ALL SELECT 'owner ' || c.oid::regclass::text, pg_get_userbyid(c.relowner) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%(s)s)",
        {"s": list(MANAGED)},
    )
    return {str(key): str(value) for key, value in rows}


def _policies(project: SupabaseProject, schema: str) -> list[tuple[Any, ...]]:
    return _rows(
        project.admin_url,
        "SELECT tablename, policyname, permissive, roles::text, cmd, qual, with_check FROM pg_policies "
        "WHERE schemaname = %s ORDER BY 1, 2",
        (schema,),
    )


def _backup(run_cli: Run, project: SupabaseProject, folder: Path) -> dict[str, Any]:
    result = run_cli("backup", "supabase", env={"SUPABASE_DB_URL": project.url, "BACKUP_DIR": str(folder)})
    assert result.code == 0, result.output
    entry: dict[str, Any] = json.loads((folder / "backup_metadata.json").read_text())["backups"][-1]
    return entry


def _restore(run_cli: Run, source: SupabaseProject, target: SupabaseProject, folder: Path, name: str) -> CliResult:
    env = {"SUPABASE_DB_URL": source.url, "RESTORE_TARGET_URL": target.url, "BACKUP_DIR": str(folder)}
    return run_cli("recovery", "restore", name, "--yes", env=env)


def test_the_app_works_in_a_new_project_after_a_restore(
    run_cli: Run, supabase_cluster: SupabaseCluster, supabase_projects: Projects, tmp_path: Path
) -> None:
    source = supabase_projects(supabase_cluster, "source")
    _app(source)
    folder = tmp_path / "backups"
    entry = _backup(run_cli, source, folder)
    tables = sorted(entry["tables"])
    # Current Auth and Storage tables travel (GoTrue's and Storage's migrations made them).
    for table in ("auth.users", "auth.identities", "auth.sessions", "storage.objects", "storage.buckets"):
        assert table in tables
    assert entry["tables"]["auth.users"] == 2 and entry["tables"]["storage.objects"] == 1

    target = supabase_projects(supabase_cluster, "target")
    platform = _platform(target)
    result = _restore(run_cli, source, target, folder, entry["file"])
    assert result.code == 0, result.output
    assert "object(s) of yours on Supabase's tables are in place" in result.output

    # Every row is back.
    assert _contents(target, tables) == _contents(source, tables)
    # The storage policies are the source's; profiles' too.
    assert _policies(target, "storage") == _policies(source, "storage")
    assert {row[1] for row in _policies(target, "storage")} == APP_POLICIES
    assert _policies(target, "public") == _policies(source, "public")
    assert _rows(target.admin_url, "SELECT obj_description(oid, 'pg_policy') FROM pg_policy WHERE polname = %s", (
        "Anyone can upload an avatar.",
    )) == [("from the app's first migration",)]  # fmt: skip
    assert _rows(target.admin_url, f"SELECT has_table_privilege('{APP_ROLE}', 'auth.users', 'SELECT')") == [(True,)]
    assert _rows(
        target.admin_url, "SELECT tablename FROM pg_publication_tables WHERE pubname = 'supabase_realtime'"
    ) == [("profiles",)]
    # Supabase's own objects are untouched: nothing of theirs is altered, duplicated or gone; what is new is the
    # app's.
    after = _platform(target)
    changed = {key for key in platform if after.get(key) != platform[key]}
    assert changed == {"acl auth.users"}  # the app's grant to app_auditor
    assert after["acl auth.users"] == platform["acl auth.users"].rstrip("}") + f",{APP_ROLE}=r/supabase_auth_admin}}"
    added = {key for key in after if key not in platform}
    assert added == {"trigger auth.users on_auth_user_created", "function storage.owns(uuid)"} | {
        f"policy storage.objects {name}" for name in APP_POLICIES
    }
    # The app's function in storage is the restoring role's, with the source's privileges exactly (PUBLIC may
    # not execute it, as the app revoked; Supabase's default privileges granted the API roles).
    function_acl = (
        "SELECT pg_get_userbyid(p.proowner), array_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
        "ELSE pg_get_userbyid(a.grantee) END || ':' || a.privilege_type ORDER BY a.grantee) FROM pg_proc p "
        "CROSS JOIN LATERAL aclexplode(p.proacl) a WHERE p.oid = 'storage.owns(uuid)'::regprocedure GROUP BY 1"
    )
    ((owner, granted),) = _rows(target.admin_url, function_acl)
    assert owner == "postgres" and sorted(granted) == sorted(_rows(source.admin_url, function_acl)[0][1])
    assert "authenticated:EXECUTE" in granted and "PUBLIC:EXECUTE" not in granted
    # The trigger fires on a new sign-up, in the new project, as the app's users do it.
    _sign_up_makes_a_profile(target)

    # A second restore over it: the same result, nothing doubled.
    second = _restore(run_cli, source, target, folder, entry["file"])
    assert second.code == 0, second.output
    assert _contents(target, tables) == _contents(source, tables)
    assert _policies(target, "storage") == _policies(source, "storage")
    assert set(_platform(target)) == set(after) and _platform(target)["acl auth.users"] == after["acl auth.users"]
    _sign_up_makes_a_profile(target)


def _sign_up_makes_a_profile(project: SupabaseProject) -> None:
    with psycopg.connect(project.url, autocommit=True) as conn:
        (user,) = conn.execute(
            "INSERT INTO auth.users (instance_id, id, aud, role, email, raw_user_meta_data) VALUES "
            "('00000000-0000-0000-0000-000000000000', gen_random_uuid(), 'authenticated', 'authenticated', "
            "'new@example.com', '{\"full_name\": \"New\"}') RETURNING id"
        ).fetchone()  # type: ignore[misc]
        assert conn.execute("SELECT full_name FROM public.profiles WHERE id = %s", (user,)).fetchall() == [("New",)]
        conn.execute("DELETE FROM auth.users WHERE id = %s", (user,))
    # Row-level security with auth.uid(): Ada sees her own avatar's row through the policy, as authenticated.
    with psycopg.connect(project.url) as conn:
        conn.execute("SET ROLE authenticated")
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps({"sub": ADA}),))
        assert conn.execute("SELECT name FROM storage.objects").fetchall() == [("ada/avatar.png",)]


def test_recovery_test_restore_passes_on_a_scratch_server_with_the_extensions(
    run_cli: Run, supabase_pg15: SupabaseCluster, supabase_projects: Projects, pg15: PgServer, tmp_path: Path
) -> None:
    """storage.objects defaults to extensions.uuid_generate_v4(): the skeleton creates uuid-ossp first."""
    source = supabase_projects(supabase_pg15, "verify")
    _app(source)
    folder = tmp_path / "backups"
    entry = _backup(run_cli, source, folder)
    # A plain PostgreSQL 15 with uuid-ossp and pgcrypto, without anything of Supabase's.
    result = run_cli(
        "--json", "recovery", "test", entry["file"], "--restore",
        env={"BACKUP_DIR": str(folder), "SCRATCH_DATABASE_URL": pg15.url()},
    )  # fmt: skip
    assert result.code == 0, result.output
    proof = json.loads(result.stdout)["results"][0]["restore"]
    assert proof["ok"] is True and proof["tables_compared"] == len(entry["tables"])


def test_recovery_test_restore_names_what_the_default_scratch_lacks(
    run_cli: Run, supabase_pg15: SupabaseCluster, supabase_projects: Projects, tmp_path: Path
) -> None:
    """The embedded PostgreSQL 18 has neither uuid-ossp nor pgcrypto: the report names them, as not damage."""
    source = supabase_projects(supabase_pg15, "noext")
    _app(source)
    folder = tmp_path / "backups"
    entry = _backup(run_cli, source, folder)
    result = run_cli("recovery", "test", entry["file"], "--restore", env={"BACKUP_DIR": str(folder)})
    assert result.code == 7, result.output
    assert "the scratch server lacks extension(s) pgcrypto, uuid-ossp (not archive damage)" in result.output


def test_a_policy_the_role_cannot_create_stops_the_restore_before_anything_is_touched(
    run_cli: Run, supabase_pg15: SupabaseCluster, supabase_projects: Projects, tmp_path: Path
) -> None:
    """Current Supabase took postgres out of supabase_storage_admin (supautils lets it create policies instead);
    on a server without supautils, such a postgres may not create policies on storage.objects."""
    source = supabase_projects(supabase_pg15, "policy")
    _app(source)
    folder = tmp_path / "backups"
    entry = _backup(run_cli, source, folder)
    target = supabase_projects(supabase_pg15, "nopolicy")
    before = _platform(target)
    supabase_pg15_admin = supabase_pg15.admin_url()
    with psycopg.connect(supabase_pg15_admin, autocommit=True) as conn:
        conn.execute("REVOKE supabase_storage_admin FROM postgres")
    try:
        result = _restore(run_cli, source, target, folder, entry["file"])
    finally:
        with psycopg.connect(supabase_pg15_admin, autocommit=True) as conn:
            conn.execute("GRANT supabase_storage_admin TO postgres")
    assert result.code == 8, result.output
    for name in APP_POLICIES:
        assert f"policy {name} on storage.objects (yours, on a Supabase table) cannot be recreated" in result.output
    assert "only the owner of storage.objects may create policies on it" in result.output
    assert "its comment can be set only by the owner of storage.objects, and the role is not" in result.output
    assert "Nothing was touched" in result.output
    assert _platform(target) == before
    assert _rows(target.admin_url, "SELECT count(*) FROM auth.users") == [(0,)]


def test_the_projects_are_built_from_supabases_sql_and_say_what_was_skipped(
    supabase_pg15: SupabaseCluster, supabase_projects: Projects
) -> None:
    """What vanilla PostgreSQL 15 cannot run of Supabase's initial schema: the extensions that are not in
    PostgreSQL's contrib, and what uses them; nothing of auth or storage."""
    project = supabase_projects(supabase_pg15, "skips")
    missing = {line.split(":", 2)[1].split(";")[0].strip() for line in project.skipped if "Type: EXTENSION;" in line}
    assert missing == {"pg_net", "pgsodium", "pg_graphql", "pgjwt"}
    assert not [line for line in project.skipped if "Schema: auth;" in line or "Schema: storage;" in line]
    tables = _rows(
        project.admin_url,
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_schema IN ('auth', 'storage') ORDER BY 1",
    )
    assert {"auth.mfa_factors", "auth.sessions", "auth.flow_state", "storage.objects"} <= {t for (t,) in tables}
    assert _rows(project.url, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user") == [
        (False, True)
    ]
