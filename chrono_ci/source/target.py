"""PostgreSQL connection targets: URL parsing, the libpq environment, connecting and probing the server.

Passwords reach libpq and the PostgreSQL tools through the environment (PGPASSWORD), never through argv, and
never appear in anything `display()` returns.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from chrono_ci.errors import ConfigError, ConnectionFailed

if TYPE_CHECKING:  # psycopg is imported where a connection is made: starting the command needs none
    import psycopg

# libpq query parameters we pass on as environment variables (https://www.postgresql.org/docs/current/libpq-envars.html)
PARAM_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
    "host": "PGHOST",
    "port": "PGPORT",
    "user": "PGUSER",
    "dbname": "PGDATABASE",
    "passfile": "PGPASSFILE",
}

URL_EXAMPLE = "postgresql://user:password@host:5432/database"


@dataclass(frozen=True)
class DatabaseTarget:
    """A parsed PostgreSQL URL. `password` is kept apart so that nothing else can leak it."""

    host: str
    port: int
    user: str
    dbname: str
    password: str | None = field(default=None, repr=False)
    params: Mapping[str, str] = field(default_factory=dict)
    setting: str = "DATABASE_URL"

    def display(self) -> str:
        """user@host:port/db: what logs, errors and metadata show."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}/{self.dbname}"

    def secrets(self) -> list[str]:
        return [self.password] if self.password else []

    def libpq_env(self, base: Mapping[str, str] | None = None, dbname: str | None = None) -> dict[str, str]:
        """The environment for pg_dump/psql: the connection as PG* variables, the password included."""
        env = dict(os.environ if base is None else base)
        # A PG* variable left in the caller's environment must not redirect the tool somewhere else.
        for name in PARAM_ENV.values():
            env.pop(name, None)
        env.pop("PGSERVICE", None)
        for key, value in self.params.items():
            env[PARAM_ENV[key]] = value
        env["PGHOST"] = self.host
        env["PGPORT"] = str(self.port)
        env["PGUSER"] = self.user
        env["PGDATABASE"] = dbname or self.dbname
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    def conninfo(self, dbname: str | None = None) -> dict[str, str]:
        """Keyword arguments for psycopg.connect."""
        args = {key: value for key, value in self.params.items() if key not in ("host", "port", "user", "dbname")}
        args.update(host=self.host, port=str(self.port), user=self.user, dbname=dbname or self.dbname)
        if self.password is not None:
            args["password"] = self.password
        return args

    def with_database(self, dbname: str) -> DatabaseTarget:
        return DatabaseTarget(self.host, self.port, self.user, dbname, self.password, self.params, self.setting)


def parse_database_url(raw: str, setting: str = "DATABASE_URL") -> DatabaseTarget:
    """Parse and validate a postgres:// or postgresql:// URL, naming `setting` in every error.

    No error repeats any part of the URL: a password with an unencoded # ? / or @ puts pieces of itself where a
    host, port, path or query is expected, and whatever the message quoted would be a piece of the password.
    """
    value = raw.strip()
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme not in ("postgres", "postgresql"):
        raise ConfigError(
            f"{setting} is not a PostgreSQL URL: it does not start with postgresql:// or postgres://.",
            hint=f"Use the form {URL_EXAMPLE} (postgres:// also works).",
        )
    try:
        parts = urlsplit(value)
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise ConfigError(
            f"{setting} is not a valid URL: its host or port cannot be read.",
            hint=f"Check the brackets around an IPv6 host and the port (1-65535). Form: {URL_EXAMPLE}. " + _ENCODE_HINT,
        ) from None
    if parts.fragment or "@" in parts.path or ("@" in parts.query and "@" not in parts.netloc):
        # PostgreSQL URLs have no #fragment, and an @ after the host means the user part was cut short.
        raise ConfigError(
            f"{setting} is not a valid URL: a # ? / or @ in it cuts the user name or password short.",
            hint=_ENCODE_HINT,
        )
    params: dict[str, str] = {}
    for key, val in parse_qsl(parts.query, keep_blank_values=True):
        if key not in PARAM_ENV:
            raise ConfigError(
                f"{setting} has a query parameter (after ?) that is not a libpq connection parameter.",
                hint="Accepted parameters: "
                + ", ".join(sorted(k for k in PARAM_ENV if k not in ("dbname",)))
                + ". A ? in the password starts a query unless it is percent-encoded (%3F).",
            )
        params[key] = val
    host = params.pop("host", None) or host
    dbname = unquote(parts.path.lstrip("/")) or params.pop("dbname", "")
    if not host:
        raise ConfigError(
            f"{setting} has no host.",
            hint=f"Use the form {URL_EXAMPLE}; for a Unix socket add ?host=/path/to/dir.",
        )
    if not dbname:
        raise ConfigError(
            f"{setting} names no database (the part after the last /).",
            hint=f"Add the database name: {URL_EXAMPLE}. " + _ENCODE_HINT,
        )
    if "/" in dbname:
        raise ConfigError(f"{setting} has a database name with '/' in it.", hint=f"Use the form {URL_EXAMPLE}.")
    user = unquote(parts.username) if parts.username else params.pop("user", "") or "postgres"
    password = unquote(parts.password) if parts.password is not None else None
    port_text = params.pop("port", None)
    if port is None and port_text:
        if not port_text.isdigit():
            raise ConfigError(f"{setting} has a port parameter that is not a number.", hint="Use 1 to 65535.")
        port = int(port_text)
    params.pop("user", None)
    params.pop("dbname", None)
    return DatabaseTarget(host, port or 5432, user, dbname, password, params, setting)


_ENCODE_HINT = (
    "Characters such as @ : / # ? % in the user name or password must be percent-encoded (%40 %3A %2F %23 %3F %25)."
)


@dataclass(frozen=True)
class ServerInfo:
    version_num: int  # server_version_num, e.g. 180006
    version: str  # e.g. "18.6"
    database: str
    user: str
    is_superuser: bool
    encoding: str

    @property
    def major(self) -> int:
        return self.version_num // 10000


def connect(
    target: DatabaseTarget, dbname: str | None = None, timeout: int = 10
) -> psycopg.Connection[tuple[object, ...]]:
    """Connect with psycopg, turning libpq's failures into ConnectionFailed with a hint."""
    import psycopg

    args = target.conninfo(dbname)
    args.setdefault("connect_timeout", str(timeout))
    try:
        return psycopg.connect(**args, autocommit=True)  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        raise explain_connection_error(str(exc), target, dbname) from None


def explain_connection_error(text: str, target: DatabaseTarget, dbname: str | None = None) -> ConnectionFailed:
    where = target.with_database(dbname).display() if dbname else target.display()
    # libpq messages never contain the password; strip the URL-ish context anyway.
    first = next((line.strip() for line in text.splitlines() if line.strip()), text).strip()
    lower = text.lower()
    if "password authentication failed" in lower or "authentication failed" in lower:
        return ConnectionFailed(
            f"Wrong password or user for {where} ({target.setting}).",
            hint=f"Check the user and password in {target.setting}. Special characters in the password must be "
            "percent-encoded in a URL (@ -> %40, : -> %3A, / -> %2F, # -> %23).",
        )
    if "no password supplied" in lower:
        return ConnectionFailed(
            f"The server at {where} asks for a password and {target.setting} has none.",
            hint=f"Add the password to {target.setting}, or set PGPASSWORD, or use a ~/.pgpass file.",
        )
    if "does not exist" in lower and "database" in lower:
        return ConnectionFailed(
            f"The database in {target.setting} does not exist on the server: {where}.",
            hint="Check the database name (the part after the last / of the URL); list them with "
            "`psql -l` on that server.",
        )
    if (
        "could not translate host name" in lower
        or "name or service not known" in lower
        or ("nodename nor servname" in lower)
    ):
        return ConnectionFailed(
            f"Unknown host {target.host!r} in {target.setting}: the name does not resolve.",
            hint="Check the host name for typos, and that this machine's DNS can resolve it.",
        )
    if "connection refused" in lower:
        return ConnectionFailed(
            f"Connection refused by {target.host}:{target.port} ({target.setting}).",
            hint="Is the server running and listening on that host and port? Check the port in the URL and the "
            "server's listen_addresses.",
        )
    if "timeout expired" in lower or "timed out" in lower:
        return ConnectionFailed(
            f"Timed out connecting to {target.host}:{target.port} ({target.setting}).",
            hint="A firewall or network rule may drop the connection; check that this machine can reach the host.",
        )
    if "network is unreachable" in lower:
        return ConnectionFailed(
            f"Network unreachable for {target.host}:{target.port} ({target.setting}).",
            hint="This machine has no route to that address (an IPv6-only host on a machine without IPv6 is the "
            "usual cause).",
        )
    return ConnectionFailed(
        f"Could not connect to {where} ({target.setting}): {first}",
        hint="Check the URL, that the server is reachable, and the user's rights to connect.",
    )


def probe_server(target: DatabaseTarget) -> ServerInfo:
    with connect(target) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version'), "
            "current_database(), current_user, "
            "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user), pg_encoding_to_char(encoding) "
            "FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    version_num, version, database, user, superuser, encoding = row
    return ServerInfo(
        version_num=int(str(version_num)),
        version=str(version).split()[0],
        database=str(database),
        user=str(user),
        is_superuser=bool(superuser),
        encoding=str(encoding),
    )
