"""`backup supabase` and the restore of a Supabase archive, against a Supabase-shaped database built here on a
real PostgreSQL: managed schemas, reserved roles, objects owned by supabase_admin, an event trigger, the
supabase_realtime publication, auth and storage rows, and user tables whose policies call auth.uid().

Backups and restores run as `supa_owner`, a non-superuser with what Supabase gives its `postgres` role
(CREATEROLE, BYPASSRLS, the database's owner, and SET on session_replication_role, which supautils allows).
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import psycopg
import pytest

from chrono_ci.dump import supabase_header, supabase_sql
from chrono_ci.errors import ConfigError
from chrono_ci.source import supabase_checks
from chrono_ci.source.embedded import embedded_bin_dir
from chrono_ci.source.target import parse_database_url
from tests.fixtures.postgres import TEST_PASSWORD, CliResult, PgServer

Run = Callable[..., CliResult]

OWNER = "supa_owner"
RESERVED = [
    "anon",
    "authenticated",
    "service_role",
    "authenticator",
    "dashboard_user",
    "supabase_admin",
    "supabase_auth_admin",
    "supabase_storage_admin",
    "pgbouncer",
]
MANAGED = ["auth", "storage", "realtime", "extensions", "graphql_public", "vault", "supabase_migrations"]
USER_1 = "11111111-1111-1111-1111-111111111111"
USER_2 = "22222222-2222-2222-2222-222222222222"

# Cluster-wide, created once and never dropped: other tests may run on the same server meanwhile.
CLUSTER_SQL = (
    "DO $$ DECLARE r text; BEGIN\n"
    f"  FOREACH r IN ARRAY ARRAY{RESERVED!r} LOOP\n"
    "    BEGIN EXECUTE format('CREATE ROLE %I NOLOGIN', r); EXCEPTION WHEN duplicate_object THEN NULL; END;\n"
    "  END LOOP;\n"
    f"  BEGIN CREATE ROLE {OWNER} LOGIN CREATEROLE BYPASSRLS; EXCEPTION WHEN duplicate_object THEN NULL; END;\n"
    "END $$;\n"
    f"ALTER ROLE {OWNER} PASSWORD {{password}};\n"
    f"GRANT anon, authenticated, service_role TO {OWNER} WITH ADMIN OPTION;\n"
    f"GRANT supabase_storage_admin TO {OWNER};\n"
    f"GRANT SET ON PARAMETER session_replication_role TO {OWNER};\n"
)

# What the platform makes in every project (as a superuser); `{migration}` differs between projects.
PLATFORM_SQL = """
CREATE SCHEMA auth AUTHORIZATION supabase_admin;
CREATE SCHEMA storage AUTHORIZATION supabase_admin;
CREATE SCHEMA realtime AUTHORIZATION supabase_admin;
CREATE SCHEMA extensions AUTHORIZATION supabase_admin;
CREATE SCHEMA graphql_public AUTHORIZATION supabase_admin;
CREATE SCHEMA vault AUTHORIZATION supabase_admin;
CREATE SCHEMA supabase_migrations AUTHORIZATION supabase_admin;
GRANT USAGE ON SCHEMA auth, storage, extensions, graphql_public TO supa_owner, anon, authenticated, service_role;
GRANT ALL ON SCHEMA auth TO supabase_auth_admin;
GRANT ALL ON SCHEMA storage TO supabase_storage_admin;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
CREATE EXTENSION citext WITH SCHEMA extensions;

CREATE TABLE auth.users (instance_id uuid, id uuid PRIMARY KEY, email text, raw_user_meta_data jsonb,
                         created_at timestamptz DEFAULT now());
CREATE TABLE auth.identities (id text PRIMARY KEY, user_id uuid NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,
                              provider text NOT NULL);
CREATE TABLE auth.schema_migrations (version varchar(255) PRIMARY KEY);
ALTER TABLE auth.users ENABLE ROW LEVEL SECURITY;
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid
$$;
ALTER TABLE auth.users OWNER TO supabase_auth_admin;
ALTER TABLE auth.identities OWNER TO supabase_auth_admin;
ALTER TABLE auth.schema_migrations OWNER TO supabase_auth_admin;
ALTER FUNCTION auth.uid() OWNER TO supabase_auth_admin;
GRANT ALL ON ALL TABLES IN SCHEMA auth TO supa_owner;

CREATE TABLE storage.buckets (id text PRIMARY KEY, name text NOT NULL, public boolean DEFAULT false);
CREATE TABLE storage.objects (id uuid PRIMARY KEY, bucket_id text REFERENCES storage.buckets(id), name text,
                              owner uuid, metadata jsonb);
CREATE TABLE storage.migrations (id integer PRIMARY KEY, name varchar(100) NOT NULL);
ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY;
ALTER TABLE storage.buckets OWNER TO supabase_storage_admin;
ALTER TABLE storage.objects OWNER TO supabase_storage_admin;
ALTER TABLE storage.migrations OWNER TO supabase_storage_admin;
GRANT ALL ON ALL TABLES IN SCHEMA storage TO supa_owner;

CREATE TABLE realtime.subscription (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, entity regclass);
CREATE TABLE vault.secrets (id uuid PRIMARY KEY, secret text);
CREATE TABLE supabase_migrations.schema_migrations (version text PRIMARY KEY, statements text[]);
INSERT INTO auth.schema_migrations VALUES ('{migration}');
INSERT INTO storage.migrations VALUES (0, 'create-migrations-table-{migration}');
INSERT INTO supabase_migrations.schema_migrations VALUES ('{migration}', ARRAY['create table x']);
INSERT INTO vault.secrets VALUES (gen_random_uuid(), 'secret-{migration}');

CREATE FUNCTION extensions.chrono_ddl_watch() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN NULL; END $$;
CREATE EVENT TRIGGER chrono_ddl_watch ON ddl_command_end EXECUTE FUNCTION extensions.chrono_ddl_watch();
ALTER FUNCTION extensions.chrono_ddl_watch() OWNER TO supabase_admin;
CREATE PUBLICATION supabase_realtime;
ALTER PUBLICATION supabase_realtime OWNER TO supa_owner;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated;
CREATE FUNCTION public.admin_helper() RETURNS integer LANGUAGE sql AS 'SELECT 1';
ALTER FUNCTION public.admin_helper() OWNER TO supabase_admin;
"""

# What a user makes, as the project's postgres role.
USER_SQL = f"""
CREATE TABLE public.profiles (id uuid PRIMARY KEY REFERENCES auth.users(id) ON DELETE CASCADE, username text,
                              email extensions.citext);
CREATE TABLE public.todos (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                           user_id uuid NOT NULL REFERENCES auth.users(id), task text,
                           is_complete boolean DEFAULT false);
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.todos ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Profiles are public" ON public.profiles FOR SELECT USING (true);
CREATE POLICY "Users update their profile" ON public.profiles FOR UPDATE TO authenticated USING (auth.uid() = id);
CREATE POLICY "Own todos" ON public.todos FOR ALL TO authenticated
    USING (auth.uid() = user_id) WITH CHECK (auth.uid() = user_id);
GRANT ALL ON public.profiles, public.todos TO anon, authenticated, service_role;
CREATE FUNCTION public.handle_new_user() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  INSERT INTO public.profiles (id, email) VALUES (NEW.id, NEW.email);
  RETURN NEW;
END $$;
CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users FOR EACH ROW EXECUTE FUNCTION public.handle_new_user();
CREATE FUNCTION public.is_public_bucket(bucket text) RETURNS boolean LANGUAGE sql STABLE AS
    'SELECT coalesce((SELECT public FROM storage.buckets WHERE id = bucket), false)';
CREATE POLICY "Public buckets are readable" ON storage.objects FOR SELECT USING (public.is_public_bucket(bucket_id));
CREATE SCHEMA app;
CREATE TABLE app.notes (id serial PRIMARY KEY, body text NOT NULL);
ALTER PUBLICATION supabase_realtime ADD TABLE public.todos;

INSERT INTO auth.users (id, email, raw_user_meta_data) VALUES
    ('{USER_1}', 'ada@example.com', '{{"name": "Ada"}}'), ('{USER_2}', 'bob@example.com', '{{"name": "Bob"}}');
INSERT INTO auth.identities VALUES ('ada', '{USER_1}', 'email'), ('bob', '{USER_2}', 'github');
UPDATE public.profiles SET username = 'ada' WHERE id = '{USER_1}';
INSERT INTO storage.buckets VALUES ('avatars', 'avatars', true);
INSERT INTO storage.objects VALUES ('33333333-3333-3333-3333-333333333333', 'avatars', 'ada/avatar.png', '{USER_1}',
                                   '{{"size": 1234, "mimetype": "image/png"}}');
INSERT INTO public.todos (user_id, task) SELECT '{USER_1}', 'task ' || g FROM generate_series(1, 250) g;
INSERT INTO public.todos (user_id, task, is_complete) VALUES ('{USER_2}', E'line\\nbreak \\\\. and tab\\t', true);
INSERT INTO app.notes (body) SELECT 'note ' || g FROM generate_series(1, 40) g;
"""


def _owner_url(server: PgServer, dbname: str) -> str:
    url = urlsplit(server.url(dbname))
    return f"postgresql://{OWNER}:{quote(TEST_PASSWORD, safe='')}@{url.hostname}:{url.port}/{dbname}"


@pytest.fixture
def supabase_db(pg18: PgServer, make_database: Callable[..., str]) -> Iterator[Callable[..., str]]:
    """supabase_db(migration, user=True) -> the supa_owner URL of a fresh Supabase-shaped database."""
    literal = "'" + TEST_PASSWORD.replace("'", "''") + "'"
    pg18.execute(CLUSTER_SQL.replace("{password}", literal))

    def make(migration: str, user: bool = True) -> str:
        admin_url = make_database(pg18, PLATFORM_SQL.replace("{migration}", migration))
        dbname = unquote(admin_url.rsplit("/", 1)[1])
        pg18.execute(f'ALTER DATABASE "{dbname}" OWNER TO {OWNER}')
        url = _owner_url(pg18, dbname)
        if user:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(USER_SQL)  # type: ignore[arg-type]
        return url

    yield make


def entries(folder: Path) -> list[dict[str, Any]]:
    return json.loads((folder / "backup_metadata.json").read_text())["backups"]  # type: ignore[no-any-return]


def admin(pg18: PgServer, url: str) -> str:
    """The superuser's URL for the database of `url`, for looking without row-level security in the way."""
    return pg18.url(url.rsplit("/", 1)[1])


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def user_state(url: str) -> dict[str, Any]:
    """Everything of the user's that a restore must bring back, and the rows of auth and storage."""
    state: dict[str, Any] = {}
    for table in ("public.profiles", "public.todos", "app.notes", "auth.users", "auth.identities", "storage.objects"):
        state[table] = rows(url, f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t")
    state["policies"] = rows(
        url,
        "SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check FROM pg_policies "
        "WHERE schemaname IN ('public', 'app') ORDER BY 1, 2, 3",
    )
    state["grants"] = rows(
        url,
        "SELECT table_schema, table_name, grantee, privilege_type FROM information_schema.role_table_grants "
        "WHERE table_schema IN ('public', 'app') AND grantee IN ('anon', 'authenticated', 'service_role') "
        "ORDER BY 1, 2, 3, 4",
    )
    state["realtime"] = rows(url, "SELECT schemaname, tablename FROM pg_publication_tables ORDER BY 1, 2")
    state["managed"] = rows(
        url,
        "SELECT 'policy', schemaname || '.' || tablename, policyname, qual FROM pg_policies "
        "WHERE schemaname IN ('auth', 'storage') UNION ALL SELECT 'trigger', tgrelid::regclass::text, tgname, "
        "pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal AND tgrelid::regclass::text "
        "LIKE ANY (ARRAY['auth.%', 'storage.%']) ORDER BY 1, 2, 3",
    )
    return state


def managed_structure(url: str) -> str:
    """pg_dump --schema-only of the managed schemas: what a restore must leave exactly as it was."""
    folder = embedded_bin_dir()
    assert folder is not None
    out = subprocess.run(
        [str(folder / "pg_dump"), "--schema-only", "--no-password", *(f"--schema={s}" for s in MANAGED)],
        env=parse_database_url(url).libpq_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def backup(run_cli: Run, url: str, folder: Path, *args: str) -> CliResult:
    return run_cli("backup", "supabase", *args, env={"SUPABASE_DB_URL": url, "BACKUP_DIR": str(folder)})


# ---------------------------------------------------------------------------------------------------------------
# Backup and restore, end to end


def test_backup_holds_roles_schema_and_data_and_says_so(
    run_cli: Run, supabase_db: Callable[..., str], tmp_path: Path
) -> None:
    source = supabase_db("20240101")
    folder = tmp_path / "backups"
    result = backup(run_cli, source, folder)
    assert result.code == 0, result.output
    assert "Storage files are not in a database dump" in result.output
    (entry,) = entries(folder)
    assert entry["profile"] == "supabase"
    assert entry["parts"] == ["roles", "scratch-skeleton", "schema", "managed-additions", "data"]
    tables = entry["tables"]
    assert tables["auth.users"] == 2 and tables["storage.objects"] == 1 and tables["public.todos"] == 251
    # Migration history and the platform's own schemas are not taken.
    assert not {"auth.schema_migrations", "storage.migrations", "supabase_migrations.schema_migrations"} & set(tables)
    assert "vault.secrets" not in tables and "realtime.subscription" not in tables
    sql = _archive_sql(folder / entry["file"])
    assert sql.startswith(supabase_header.HEADER_MARK)
    assert TEST_PASSWORD not in sql
    # The statements a Supabase project rejects are there, commented out.
    for statement in (
        "CREATE EVENT TRIGGER",
        'CREATE PUBLICATION "supabase_realtime"',
        'ALTER DEFAULT PRIVILEGES FOR ROLE "supabase_admin"',
        'OWNER TO "supabase_admin";',
        "SET transaction_timeout = 0;",
        "\\restrict ",
        "\\unrestrict ",
    ):
        found = [line for line in sql.splitlines() if statement in line]
        assert found and all(line.startswith(supabase_sql.NEUTRALISED) for line in found), statement
    assert 'ALTER PUBLICATION "supabase_realtime" ADD TABLE ONLY "public"."todos";' in sql
    # Reserved roles are left to the platform; the roles section never creates them.
    roles = sql.split("-- chrono-ci: roles")[1].split("-- chrono-ci: schema")[0].splitlines()
    assert not [line for line in roles if 'ROLE "anon"' in line and not line.startswith(supabase_sql.NEUTRALISED)]
    # Schema before the replica setting, data after it, and pg_dump's own closing line at the very end.
    assert sql.index('CREATE TABLE "public"."todos"') < sql.index("SET session_replication_role = replica;")
    assert sql.index("SET session_replication_role = replica;") < sql.index('COPY "public"."todos"')
    # The app's trigger on auth.users and its policy on storage.objects travel, after the schema, before the data;
    # Supabase's own objects there do not.
    additions = sql.split("-- chrono-ci: managed-additions")[1].split("SET session_replication_role = replica;")[0]
    assert "CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users" in additions
    assert 'CREATE POLICY "Public buckets are readable" ON storage.objects' in additions
    assert "auth.uid" not in additions.replace("auth.uid()", "")
    header = supabase_header.read_header(folder / entry["file"], "zstd")
    assert header is not None and header["format"] == 2
    assert {(a["kind"], a["name"], a["on"]) for a in header["managed_additions"]} == {
        ("trigger", "on_auth_user_created", "auth.users"),
        ("policy", "Public buckets are readable", "storage.objects"),
    }
    assert "-- PostgreSQL database dump complete" in sql[-4096:]
    assert sql.count("-- PostgreSQL database dump complete") == 1


def _archive_sql(path: Path) -> str:
    import zstandard

    with path.open("rb") as handle:
        return zstandard.ZstdDecompressor().stream_reader(handle).read().decode()


def test_restore_into_a_fresh_project_as_a_non_superuser(
    run_cli: Run, pg18: PgServer, supabase_db: Callable[..., str], tmp_path: Path
) -> None:
    source = supabase_db("20240101")
    target = supabase_db("20990101", user=False)
    with psycopg.connect(admin(pg18, target), autocommit=True) as conn:
        conn.execute(f"INSERT INTO auth.users (id, email) VALUES ('{USER_2}', 'stale@example.com')")  # type: ignore[arg-type]
    folder = tmp_path / "backups"
    assert backup(run_cli, source, folder).code == 0
    name = str(entries(folder)[-1]["file"])
    structure_before = managed_structure(admin(pg18, target))
    env = {"SUPABASE_DB_URL": source, "RESTORE_TARGET_URL": target, "BACKUP_DIR": str(folder)}

    dry = run_cli("recovery", "restore", name, "--dry-run", env=env)
    assert dry.code == 0, dry.output
    assert "auth" not in dry.stdout.split("will be replaced:")[1].splitlines()[0]

    result = run_cli("recovery", "restore", name, "--yes", env=env)
    assert result.code == 0, result.output
    assert "every count matches" in result.output
    assert user_state(admin(pg18, target)) == user_state(admin(pg18, source))
    # Supabase's objects are as they were, and the app's trigger and policy on them came back: the managed
    # schemas now look exactly like the source's (the two projects were built alike).
    assert structure_before != managed_structure(admin(pg18, source))
    assert managed_structure(admin(pg18, target)) == managed_structure(admin(pg18, source))
    # The platform's migration history stays the target's own.
    assert rows(admin(pg18, target), "SELECT version FROM auth.schema_migrations") == [("20990101",)]
    assert rows(admin(pg18, target), "SELECT name FROM storage.migrations") == [("create-migrations-table-20990101",)]
    # The app's trigger on auth.users and its policy on storage.objects came back with it, and work.
    assert user_state(admin(pg18, target))["managed"] == user_state(admin(pg18, source))["managed"]
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), 'signup@example.com')")
        assert conn.execute("SELECT count(*) FROM public.profiles WHERE email = 'signup@example.com'").fetchone() == (
            1,
        )
    # Policies work against the restored auth.uid().
    with psycopg.connect(target) as conn:
        conn.execute("SET ROLE authenticated")
        conn.execute(f"SELECT set_config('request.jwt.claim.sub', '{USER_2}', true)")  # type: ignore[arg-type]
        assert conn.execute("SELECT count(*) FROM public.todos").fetchone() == (1,)
    safety = [e for e in entries(folder) if e["series"] == "safety"]
    assert len(safety) == 1 and safety[0]["profile"] == "supabase"
    assert safety[0]["tables"]["auth.users"] == 1


def test_restore_into_the_same_project_keeps_triggers_and_policies_on_managed_tables(
    run_cli: Run, pg18: PgServer, supabase_db: Callable[..., str], tmp_path: Path
) -> None:
    url = supabase_db("20240101")
    folder = tmp_path / "backups"
    assert backup(run_cli, url, folder).code == 0
    name = str(entries(folder)[-1]["file"])
    expected = user_state(admin(pg18, url))
    structure = managed_structure(admin(pg18, url))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM public.todos WHERE id > 10")
        conn.execute("INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), 'late@example.com')")
        conn.execute("CREATE TABLE public.made_after (x int)")
    result = run_cli("recovery", "restore", name, "--yes", env={"SUPABASE_DB_URL": url, "BACKUP_DIR": str(folder)})
    assert result.code == 0, result.output
    assert user_state(admin(pg18, url)) == expected
    # The trigger on auth.users and the policy on storage.objects use public functions the restore replaced:
    # they are back, exactly as they were, and they work.
    assert managed_structure(admin(pg18, url)) == structure
    assert rows(admin(pg18, url), "SELECT to_regclass('public.made_after')") == [(None,)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), 'new@example.com')")
        assert conn.execute("SELECT count(*) FROM public.profiles WHERE email = 'new@example.com'").fetchone() == (1,)


def test_recovery_test_restore_proves_a_supabase_archive_on_a_plain_scratch_server(
    run_cli: Run, supabase_db: Callable[..., str], tmp_path: Path
) -> None:
    source = supabase_db("20240101")
    folder = tmp_path / "backups"
    assert backup(run_cli, source, folder).code == 0
    entry = entries(folder)[-1]
    # The default scratch is a throwaway embedded PostgreSQL without Supabase's roles and schemas: the archive's
    # skeleton builds the managed tables the data fills, there and only there.
    result = run_cli("--json", "recovery", "test", str(entry["file"]), "--restore", env={"BACKUP_DIR": str(folder)})
    assert result.code == 0, result.output
    (document,) = json.loads(result.stdout)["results"]
    assert document["restore"]["ok"] is True
    assert document["restore"]["tables_compared"] == len(entry["tables"])


def test_restore_refuses_a_database_that_is_not_supabase_shaped(
    run_cli: Run, pg18: PgServer, supabase_db: Callable[..., str], make_database: Callable[..., str], tmp_path: Path
) -> None:
    source = supabase_db("20240101")
    folder = tmp_path / "backups"
    assert backup(run_cli, source, folder).code == 0
    plain = make_database(pg18, "CREATE TABLE keep (x int); INSERT INTO keep VALUES (1);")
    name = str(entries(folder)[-1]["file"])
    env = {"SUPABASE_DB_URL": source, "RESTORE_TARGET_URL": plain, "BACKUP_DIR": str(folder)}
    result = run_cli("recovery", "restore", name, "--yes", env=env)
    assert result.code == 8, result.output
    assert "is not a Supabase database" in result.output and "auth.users" in result.output
    assert rows(plain, "SELECT x FROM keep") == [(1,)]


# ---------------------------------------------------------------------------------------------------------------
# Diagnostics


def test_transaction_pooler_port_is_refused_before_any_connection(run_cli: Run, tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", supabase_checks.TRANSACTION_POOLER_PORT))
    except OSError:
        listener.close()
        pytest.skip("port 6543 is taken on this machine")
    listener.listen(5)
    listener.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept())
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        url = "postgresql://postgres.abcdefghijklmnopqrst:pw@127.0.0.1:6543/postgres"
        result = backup(run_cli, url, tmp_path / "backups")
    finally:
        stop.set()
        thread.join(2)
        listener.close()
    assert result.code == 2, result.output
    assert "6543" in result.output and "transaction pooler" in result.output
    assert "postgresql://postgres.abcdefghijklmnopqrst:PASSWORD@aws-0-<region>.pooler.supabase.com:5432/" in (
        result.output
    )
    assert accepted == []


def test_direct_host_that_cannot_be_reached_gets_the_ipv6_explanation(run_cli: Run, tmp_path: Path) -> None:
    url = "postgresql://postgres:pw@db.abcdefghijklmnopqrst.supabase.co:5432/postgres?connect_timeout=5"
    result = backup(run_cli, url, tmp_path / "backups")
    assert result.code == 3, result.output
    assert "IPv6" in result.output and "GitHub-hosted runners" in result.output
    assert "session pooler" in result.output and "IPv4 add-on" in result.output
    assert "postgres.abcdefghijklmnopqrst:PASSWORD@aws-0-<region>.pooler.supabase.com:5432/postgres" in result.output


def test_role_without_bypassrls_is_told_what_it_lacks(
    run_cli: Run, pg18: PgServer, supabase_db: Callable[..., str], tmp_path: Path
) -> None:
    url = supabase_db("20240101")
    role = f"supa_weak_{secrets.token_hex(3)}"
    dbname = url.rsplit("/", 1)[1]
    pg18.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'weak-pw'")
    try:
        pg18.execute(f"GRANT pg_read_all_data TO {role}")
        weak = url.replace(f"{OWNER}:{quote(TEST_PASSWORD, safe='')}", f"{role}:weak-pw")
        result = backup(run_cli, weak, tmp_path / "backups")
        assert result.code == 6, result.output
        assert "BYPASSRLS" in result.output and "row-level security" in result.output
        for table in ("public.todos", "public.profiles", "auth.users", "storage.objects"):
            assert table in result.output
        assert "pg_read_all_data" in result.output and "default_transaction_read_only" in result.output
        assert not (tmp_path / "backups").exists() or not list((tmp_path / "backups").glob("supabase_*"))
    finally:
        pg18.execute(f'REVOKE ALL ON DATABASE "{dbname}" FROM {role}')
        pg18.execute(f"DROP ROLE {role}")


def test_a_failed_roles_part_fails_the_whole_backup(
    run_cli: Run, supabase_db: Callable[..., str], tmp_path: Path
) -> None:
    url = supabase_db("20240101")
    real = embedded_bin_dir()
    assert real is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("pg_dump", "psql"):
        (bin_dir / tool).write_text(f'#!/bin/sh\nexec "{real / tool}" "$@"\n')
        (bin_dir / tool).chmod(0o755)
    (bin_dir / "pg_dumpall").write_text(
        '#!/bin/sh\necho "pg_dumpall: error: query failed: permission denied for table pg_authid" >&2\nexit 1\n'
    )
    (bin_dir / "pg_dumpall").chmod(0o755)
    folder = tmp_path / "backups"
    result = run_cli(
        "backup", "supabase", env={"SUPABASE_DB_URL": url, "BACKUP_DIR": str(folder), "PG_BIN_DIR": str(bin_dir)}
    )
    assert result.code == 6, result.output
    assert "pg_dumpall failed on the roles part" in result.output and "permission denied" in result.output
    assert not list(folder.glob("supabase_*"))


def test_transaction_pooling_is_detected_from_the_backend_changing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real PgBouncer is not available here: two fake clients share one backend, as transaction pooling does."""

    class Cursor:
        def __init__(self, row: tuple[object, ...]) -> None:
            self.row = row

        def fetchone(self) -> tuple[object, ...]:
            return self.row

    class Conn:
        def __init__(self, pids: list[int]) -> None:
            self.pids = pids
            self.probe = "kept"

        def __enter__(self) -> Conn:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def transaction(self) -> Conn:
            return self

        def execute(self, sql: str) -> Cursor:
            if "current_setting" in sql:
                return Cursor((self.probe, self.pids.pop(0)))
            if "pg_backend_pid" in sql:
                return Cursor((self.pids.pop(0),))
            return Cursor(("",))

    target = parse_database_url("postgresql://app:pw@pooler.example.com:6432/app")
    # The second client gets the backend the first one holds between transactions: transaction pooling.
    monkeypatch.setattr(supabase_checks, "connect", lambda *a, **k: Conn([101]))
    assert supabase_checks._transaction_pooling(target, Conn([101, 101])) is True  # type: ignore[arg-type]
    monkeypatch.setattr(supabase_checks, "connect", lambda *a, **k: Conn([202]))
    assert supabase_checks._transaction_pooling(target, Conn([101, 101])) is False  # type: ignore[arg-type]
    assert supabase_checks._transaction_pooling(target, Conn([101, 303])) is True  # type: ignore[arg-type]
    clients = iter([Conn([101, 101]), Conn([101])])
    monkeypatch.setattr(supabase_checks, "connect", lambda *a, **k: next(clients))
    with pytest.raises(ConfigError, match="transaction mode"):
        supabase_checks.diagnose_url(target)


# ---------------------------------------------------------------------------------------------------------------
# The rewrites, line by line


def test_schema_rewrites_leave_function_bodies_alone() -> None:
    rewriter = supabase_sql.SchemaRewriter("schema")
    lines = [
        'CREATE FUNCTION "public"."f"() RETURNS "text" LANGUAGE "plpgsql" AS $$',
        "BEGIN",
        'ALTER TABLE "public"."t" OWNER TO "supabase_admin";',
        "RETURN 'x';",
        "END $$;",
        'ALTER TABLE "public"."t" OWNER TO "supabase_admin";',
        'ALTER TABLE "public"."t" OWNER TO "postgres";',
        'CREATE EVENT TRIGGER "watch" ON "ddl_command_end"',
        "         WHEN TAG IN ('CREATE TABLE')",
        '   EXECUTE FUNCTION "extensions"."watch"();',
        'GRANT ALL ON FUNCTION "extensions"."f"() TO "anon";',
        'GRANT ALL ON TABLE "public"."t" TO "anon";',
        'CREATE EXTENSION IF NOT EXISTS "pgsodium" WITH SCHEMA "pgsodium";',
        "-- PostgreSQL database dump complete",
    ]
    out = [rewriter.line(line) for line in lines]
    assert out[:5] == lines[:5]
    assert out[5].startswith(supabase_sql.NEUTRALISED) and out[6] == lines[6]
    assert all(line.startswith(supabase_sql.NEUTRALISED) for line in out[7:10])
    assert out[10].startswith(supabase_sql.NEUTRALISED) and out[11] == lines[11]
    assert out[12] == 'CREATE EXTENSION IF NOT EXISTS "pgsodium";'
    assert out[13] != lines[13] and rewriter.trailer_seen


def test_roles_are_created_only_where_missing() -> None:
    dumped = "\n".join(
        [
            'CREATE ROLE "anon";',
            'ALTER ROLE "anon" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;',
            'CREATE ROLE "app_reader";',
            'ALTER ROLE "app_reader" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;',
            'ALTER ROLE "app_reader" SET "statement_timeout" TO \'5s\';',
            'GRANT "anon" TO "app_reader" WITH INHERIT TRUE GRANTED BY "supabase_admin";',
            'GRANT "app_reader" TO "authenticator" GRANTED BY "postgres";',
            'GRANT SET ON PARAMETER "session_replication_role" TO "app_reader";',
            "-- PostgreSQL database cluster dump complete",
        ]
    )
    section = supabase_sql.rewrite_roles(dumped)
    assert section.custom_roles == ["app_reader"] and section.reserved_roles == ["anon"] and section.trailer_seen
    live = [line for line in section.sql.splitlines() if not line.startswith(supabase_sql.NEUTRALISED)]
    assert not [line for line in live if "NOSUPERUSER" in line or "NOREPLICATION" in line or "GRANTED BY" in line]
    assert not [line for line in live if "ON PARAMETER" in line or '"authenticator"' in line]
    assert 'EXECUTE \'GRANT "anon" TO "app_reader" WITH INHERIT TRUE\'' in section.sql
    assert "EXECUTE 'ALTER ROLE \"app_reader\" SET \"statement_timeout\" TO ''5s'''" in section.sql
    assert "lacks CREATEROLE" in section.sql


def test_data_filter_changes_only_the_guard_lines() -> None:
    body = b"".join(b"%d\trow %d\n" % (i, i) for i in range(5000))
    dump = (
        b"--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\nSET statement_timeout = 0;\n"
        b'SET transaction_timeout = 0;\n\nCOPY "public"."t" ("id", "v") FROM stdin;\n' + body + b"\\.\n\n"
        b"--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc123\n\n"
    )
    data_filter = supabase_sql.DataFilter()
    out = b"".join(data_filter.feed(dump[i : i + 777]) for i in range(0, len(dump), 777)) + data_filter.finish()
    expected = (
        dump.replace(b"\\restrict abc123", b"-- [chrono-ci] \\restrict abc123")
        .replace(b"\\unrestrict abc123", b"-- [chrono-ci] \\unrestrict abc123")
        .replace(b"SET transaction_timeout", b"-- [chrono-ci] SET transaction_timeout")
    )
    assert out == expected


def test_missing_custom_roles_are_created_and_a_role_without_createrole_is_told(
    run_cli: Run, pg18: PgServer, supabase_db: Callable[..., str], tmp_path: Path
) -> None:
    role = f"app_reader_{secrets.token_hex(3)}"
    source = supabase_db("20240101")
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} NOLOGIN")  # type: ignore[arg-type]
        conn.execute(f"GRANT USAGE ON SCHEMA app TO {role}")  # type: ignore[arg-type]
        conn.execute(f"GRANT SELECT ON app.notes TO {role}")  # type: ignore[arg-type]
    folder = tmp_path / "backups"
    assert backup(run_cli, source, folder).code == 0
    name = str(entries(folder)[-1]["file"])
    with psycopg.connect(admin(pg18, source), autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {role}")  # type: ignore[arg-type]
        conn.execute(f"DROP ROLE {role}")  # type: ignore[arg-type]
    target = supabase_db("20990101", user=False)
    weak = f"supa_nocreate_{secrets.token_hex(3)}"
    pg18.execute(f"CREATE ROLE {weak} LOGIN BYPASSRLS PASSWORD 'weak-pw'")
    try:
        dbname = target.rsplit("/", 1)[1]
        pg18.execute(f'ALTER DATABASE "{dbname}" OWNER TO {weak}')
        weak_url = target.replace(f"{OWNER}:{quote(TEST_PASSWORD, safe='')}", f"{weak}:weak-pw")
        env = {"SUPABASE_DB_URL": source, "RESTORE_TARGET_URL": weak_url, "BACKUP_DIR": str(folder)}
        refused = run_cli("recovery", "restore", name, "--dry-run", env=env)
        assert refused.code == 8, refused.output
        assert f"lacks CREATEROLE, and the backup's role(s) {role}" in refused.output
        pg18.execute(f'ALTER DATABASE "{dbname}" OWNER TO {OWNER}')
    finally:
        pg18.execute(f'REVOKE ALL ON DATABASE "{target.rsplit("/", 1)[1]}" FROM {weak}')
        pg18.execute(f"DROP ROLE {weak}")
    env = {"SUPABASE_DB_URL": source, "RESTORE_TARGET_URL": target, "BACKUP_DIR": str(folder)}
    result = run_cli("recovery", "restore", name, "--yes", env=env)
    assert result.code == 0, result.output
    try:
        assert rows(admin(pg18, target), f"SELECT has_table_privilege('{role}', 'app.notes', 'SELECT')") == [(True,)]
    finally:
        with psycopg.connect(admin(pg18, target), autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")  # type: ignore[arg-type]
            conn.execute(f"DROP ROLE {role}")  # type: ignore[arg-type]
