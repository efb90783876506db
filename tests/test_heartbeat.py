"""Heartbeats against a small HTTP server on loopback, with bodies built from real backups of a real PostgreSQL.

The ping service is the only fake: healthchecks.io and its kin are not reachable from a test, and what matters
is what chrono-ci sends (method, path, headers, body) and how it behaves when nobody answers.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import chrono_ci
import chrono_ci.jobs.heartbeat as heartbeat
from chrono_ci import __version__
from chrono_ci.errors import ChronoError, ConfigError, ExitCode
from chrono_ci.jobs.heartbeat import MAX_BODY_BYTES, backup_body, encode_body, heartbeat_config, send_heartbeat
from tests.fixtures.postgres import TEST_PASSWORD, CliResult, PgServer

Run = Callable[..., CliResult]
SMALL_SQL = "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2), (3);"
TOKEN = "0f6e4c1e-7d2a-4b8f-9a51-secret-ping-token"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class PingServer:
    """A healthchecks-style endpoint: records every request; answers from `statuses` (then 200), after `delay`."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    redirect_to: str | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def ping() -> Iterator[PingServer]:
    state = PingServer()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state.requests.append(Received(self.command, self.path, dict(self.headers.items()), body))
            if state.delay:
                time.sleep(state.delay)
            if state.redirect_to is not None:
                self.send_response(302)
                self.send_header("Location", state.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def quick_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heartbeat, "RETRY_DELAY_SECONDS", 0.05)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def backed_up(run_cli: Run, url: str, tmp_path: Path) -> dict[str, Any]:
    """A real backup through the command; its --json document."""
    result = run_cli("--json", "backup", "postgres", env={"DATABASE_URL": url, "BACKUP_DIR": str(tmp_path / "b")})
    assert result.code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def failed_backup(run_cli: Run, url: str, tmp_path: Path) -> ChronoError:
    """A real failed backup through the command, as the ChronoError it reported."""
    result = run_cli("--json", "backup", "postgres", env={"DATABASE_URL": url, "BACKUP_DIR": str(tmp_path / "b")})
    assert result.code != 0, result.output
    error = json.loads(result.stdout)["error"]
    return ChronoError(error["message"], error["hint"], ExitCode(error["exit_code"]))


# ------------------------------------------------------------------------------------------ the two pings


def test_success_ping_after_a_real_backup(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], ping: PingServer, tmp_path: Path
) -> None:
    url = make_database(pg18, SMALL_SQL)
    document = backed_up(run_cli, url, tmp_path)
    body = backup_body("backup postgres", document["backups"], [], 2.345, secrets=[TEST_PASSWORD])
    warnings: list[str] = []

    assert send_heartbeat(True, body, {"HEARTBEAT_URL": ping.url(f"/ping/{TOKEN}")}, warnings.append, timeout=5)
    assert warnings == []
    (request,) = ping.requests
    assert request.method == "POST" and request.path == f"/ping/{TOKEN}"
    assert request.headers["User-Agent"] == f"chrono-ci/{__version__}"
    assert request.headers["Content-Type"] == "application/json"
    sent = request.json()
    entry = document["backups"][0]
    assert sent["ok"] is True and sent["command"] == "backup postgres" and sent["duration_seconds"] == 2.3
    assert sent["failed"] == []
    (made,) = sent["backups"]
    assert made["database"] == url.rsplit("/", 1)[-1] and made["kind"] == "postgres"
    assert made["file"] == entry["file"] and made["size_bytes"] == entry["size_bytes"]
    assert made["tables"] == 1 and made["rows"] == 3 and made["verified"] == "check ok"
    assert "local" in made["stored"]
    assert "host" not in made and entry["host"] not in request.body.decode()
    assert len(request.body) < 2000


def test_failure_ping_after_a_real_failed_backup(
    run_cli: Run, pg18: PgServer, ping: PingServer, tmp_path: Path
) -> None:
    error = failed_backup(run_cli, pg18.url("no_such_database"), tmp_path)
    assert error.exit_code == ExitCode.CONNECTION
    body = backup_body("backup postgres", [], [("postgres", error)], 0.4)
    warnings: list[str] = []

    # healthchecks-style: the success URL with /fail, before the query string.
    assert send_heartbeat(False, body, {"HEARTBEAT_URL": ping.url(f"/ping/{TOKEN}/?rid=7")}, warnings.append)
    # An explicit failure URL wins.
    env = {"HEARTBEAT_URL": ping.url(f"/ping/{TOKEN}"), "HEARTBEAT_FAIL_URL": ping.url("/hooks/backup-failed")}
    assert send_heartbeat(False, body, env, warnings.append)
    assert warnings == []
    assert [r.path for r in ping.requests] == [f"/ping/{TOKEN}/fail?rid=7", "/hooks/backup-failed"]
    sent = ping.requests[0].json()
    assert sent["ok"] is False and sent["backups"] == []
    (failure,) = sent["failed"]
    assert failure["kind"] == "postgres" and failure["exit_code"] == 3
    assert failure["error"] == error.message.splitlines()[0]


def test_only_a_failure_url_pings_only_failures(ping: PingServer) -> None:
    warnings: list[str] = []
    env = {"HEARTBEAT_FAIL_URL": ping.url("/fail-only")}
    assert send_heartbeat(True, {"ok": True}, env, warnings.append) is False
    assert send_heartbeat(False, {"ok": False}, env, warnings.append) is True
    assert [r.path for r in ping.requests] == ["/fail-only"] and warnings == []
    assert send_heartbeat(True, {"ok": True}, {}, warnings.append) is False
    assert heartbeat_config({"HEARTBEAT_URL": "  "}) is None


def test_body_carries_no_secret(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], ping: PingServer, tmp_path: Path
) -> None:
    url = make_database(pg18, SMALL_SQL)
    assert quote(TEST_PASSWORD, safe="") in url  # the backup ran with the password in its URL
    document = backed_up(run_cli, url, tmp_path)
    ping_url = ping.url(f"/ping/{TOKEN}").replace("http://", "http://monitor:hc%40pass@")
    # A careless caller's error text: the database URL, a libpq keyword string, and the ping URL itself.
    careless = ChronoError(f"could not reach {url} (password={TEST_PASSWORD} host=x) while pinging {ping_url}")
    body = backup_body("backup all", document["backups"], [("supabase", careless)], 1.0, secrets=[TEST_PASSWORD])
    body["extra"] = {"note": f"dsn postgresql://u:{quote(TEST_PASSWORD, safe='')}@h/db"}
    warnings: list[str] = []

    assert send_heartbeat(False, body, {"HEARTBEAT_URL": ping_url}, warnings.append)
    (request,) = ping.requests
    raw = request.body.decode()
    for secret in (TEST_PASSWORD, quote(TEST_PASSWORD, safe=""), "hc@pass", "hc%40pass", TOKEN):
        assert secret not in raw, secret
    assert json.loads(raw)["failed"][0]["error"].startswith("could not reach postgresql://***@")
    # user:password@ in the ping URL becomes HTTP basic authentication, not part of the request line.
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"monitor:hc@pass").decode()
    assert request.path == f"/ping/{TOKEN}/fail"
    assert warnings == []


def test_body_stays_short() -> None:
    huge = backup_body(
        "backup all",
        [{"kind": "postgres", "database": "d" * 5000, "tables": {f"t{i}": i for i in range(10_000)}}] * 200,
        [("postgres", ChronoError("x" * 100_000))],
        1.0,
    )
    data = encode_body(huge)
    assert len(data) <= MAX_BODY_BYTES
    decoded = json.loads(data)
    assert decoded["ok"] is False and decoded["truncated"] is True and decoded["command"] == "backup all"


# ---------------------------------------------------------------------------------------- delivery problems


def test_unreachable_url_is_a_warning_not_an_error(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    document = backed_up(run_cli, make_database(pg18, SMALL_SQL), tmp_path)
    body = backup_body("backup postgres", document["backups"], [], 1.0)
    warnings: list[str] = []
    port = closed_port()
    started = time.monotonic()

    env = {"HEARTBEAT_URL": f"http://127.0.0.1:{port}/ping/{TOKEN}"}
    assert send_heartbeat(True, body, env, warnings.append, timeout=2) is False
    assert time.monotonic() - started < 5
    (warning,) = warnings
    assert warning.startswith(f"heartbeat (success) not delivered to http://127.0.0.1:{port} after a retry: ")
    assert "Connection refused" in warning and "The backup itself is not affected" in warning
    assert TOKEN not in warning


def test_one_retry_on_server_errors_none_on_client_errors(ping: PingServer) -> None:
    env = {"HEARTBEAT_URL": ping.url(f"/ping/{TOKEN}")}
    warnings: list[str] = []

    ping.statuses = [503]
    assert send_heartbeat(True, {"ok": True}, env, warnings.append) is True
    assert len(ping.requests) == 2 and warnings == []

    ping.requests.clear()
    ping.statuses = [502, 500, 200]
    assert send_heartbeat(True, {"ok": True}, env, warnings.append) is False
    assert len(ping.requests) == 2
    assert "after a retry: HTTP 500" in warnings[-1]

    ping.requests.clear()
    ping.statuses = [404]
    assert send_heartbeat(True, {"ok": True}, env, warnings.append) is False
    assert len(ping.requests) == 1
    assert "without retrying: HTTP 404" in warnings[-1] and TOKEN not in warnings[-1]


def test_a_service_that_does_not_answer_times_out(ping: PingServer) -> None:
    ping.delay = 1.5
    warnings: list[str] = []
    started = time.monotonic()
    assert send_heartbeat(True, {"ok": True}, {"HEARTBEAT_URL": ping.url("/slow")}, warnings.append, 0.3) is False
    assert time.monotonic() - started < 3
    assert len(ping.requests) == 2
    assert "no answer within 0.3 s" in warnings[0]


def test_a_redirect_away_from_http_is_not_followed(ping: PingServer) -> None:
    ping.redirect_to = "ftp://127.0.0.1/elsewhere"
    warnings: list[str] = []
    assert send_heartbeat(True, {"ok": True}, {"HEARTBEAT_URL": ping.url("/moved")}, warnings.append) is False
    assert "redirect to a non-HTTP URL refused" in warnings[0]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"ftp://hc-ping.com/{TOKEN}", "is not an http:// or https:// URL: it does not start with either"),
        (f"hc-ping.com/{TOKEN}", "is not an http:// or https:// URL: it does not start with either"),
        (f"file:///tmp/{TOKEN}", "is not an http:// or https:// URL: it does not start with either"),
        (f"https:///{TOKEN}", "is not a valid URL"),
        (f"https://hc-ping.com:99999/{TOKEN}", "is not a valid URL"),
        (f"https://hc-ping.com/{TOKEN}\nX-Injected: 1", "is not a valid URL"),
    ],
)
def test_a_malformed_url_is_a_config_error_that_hides_the_url(value: str, message: str) -> None:
    for name in ("HEARTBEAT_URL", "HEARTBEAT_FAIL_URL"):
        with pytest.raises(ConfigError) as caught:
            heartbeat_config({name: value})
        assert caught.value.message.startswith(f"{name} ") and message in caught.value.message
        assert TOKEN not in caught.value.message + caught.value.hint
        with pytest.raises(ConfigError):
            send_heartbeat(False, {}, {name: value}, print)
    # Whitespace around a pasted secret is forgiven.
    config = heartbeat_config({"HEARTBEAT_URL": f" https://hc-ping.com/{TOKEN}\n"})
    assert config is not None and config.success is not None
    assert config.success.url == f"https://hc-ping.com/{TOKEN}"


def test_config_masks_the_urls(ping: PingServer) -> None:
    config = heartbeat_config({"HEARTBEAT_URL": ping.url(f"/ping/{TOKEN}")})
    assert config is not None and config.success is not None and config.failure is not None
    assert TOKEN not in repr(config)
    assert config.failure.url == ping.url(f"/ping/{TOKEN}/fail")
    assert all(TOKEN in secret for secret in config.secrets())


# ------------------------------------------------------------------------- wired into the backup commands


def _wired() -> bool:
    package = Path(chrono_ci.__file__).parent
    return any("send_heartbeat(" in path.read_text() for path in package.rglob("*.py") if path.name != "heartbeat.py")


needs_wiring = pytest.mark.skipif(not _wired(), reason="send_heartbeat is not wired into the backup commands yet")


@needs_wiring
def test_backup_command_pings_on_success(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], ping: PingServer, tmp_path: Path
) -> None:
    url = make_database(pg18, SMALL_SQL)
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(tmp_path / "b"), "HEARTBEAT_URL": ping.url(f"/ping/{TOKEN}")}
    result = run_cli("backup", "postgres", env=env)
    assert result.code == 0, result.output
    (request,) = ping.requests
    assert request.path == f"/ping/{TOKEN}" and request.json()["ok"] is True
    assert TEST_PASSWORD not in request.body.decode() and TOKEN not in result.output


@needs_wiring
def test_backup_command_pings_the_failure_url(run_cli: Run, pg18: PgServer, ping: PingServer, tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": pg18.url("no_such_database"),
        "BACKUP_DIR": str(tmp_path / "b"),
        "HEARTBEAT_URL": ping.url(f"/ping/{TOKEN}"),
    }
    result = run_cli("backup", "postgres", env=env)
    assert result.code == 3, result.output
    (request,) = ping.requests
    assert request.path == f"/ping/{TOKEN}/fail"
    sent = request.json()
    assert sent["ok"] is False and sent["failed"][0]["exit_code"] == 3


@needs_wiring
def test_backup_succeeds_when_the_heartbeat_cannot_be_delivered(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    url = make_database(pg18, SMALL_SQL)
    ping_url = f"http://127.0.0.1:{closed_port()}/ping/{TOKEN}"
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(tmp_path / "b"), "HEARTBEAT_URL": ping_url}
    result = run_cli("backup", "postgres", env=env)
    assert result.code == 0, result.output
    assert "warn heartbeat (success) not delivered" in result.output and TOKEN not in result.output
    assert len(list((tmp_path / "b").glob("postgres_backup_*"))) == 1


@needs_wiring
def test_a_malformed_heartbeat_url_stops_the_backup_before_it_starts(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": make_database(pg18, SMALL_SQL),
        "BACKUP_DIR": str(tmp_path / "b"),
        "HEARTBEAT_URL": f"hc-ping.com/{TOKEN}",
    }
    result = run_cli("backup", "postgres", env=env)
    assert result.code == 2 and "HEARTBEAT_URL is not an http:// or https:// URL" in result.output
    assert not list((tmp_path / "b").glob("postgres_backup_*")) and TOKEN not in result.output
