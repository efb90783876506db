"""The result contract: --json before or after any command, one document per kind of command, valid against
docs/schemas/results.schema.json whatever happened, and read back by the Action as the same types.

Every other test that runs chrono-ci with --json validates what it printed against the schema too
(tests/fixtures/postgres.py's run_cli, the Action's result-json in tests/test_action.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from chrono_ci.archive.record import ArchiveRecord
from chrono_ci.archive.vouching import Provenance
from chrono_ci.report.results import (
    DOCUMENTS,
    BackupDocument,
    CheckResult,
    Failure,
    ListDocument,
    Made,
    PruneDocument,
    Rejection,
    RestoreDocument,
    StatusDocument,
    TestDocument,
    Tested,
    combined,
    read_result,
)
from tests.fixtures.postgres import CliResult
from tests.fixtures.results import SCHEMA, contract_errors

Run = Callable[..., CliResult]
SHA = "ab" * 32
RECORD = ArchiveRecord(
    file="postgres_backup_2026-11-25_02-00-00.sql.zst",
    kind="postgres",
    database="app",
    host="db",
    port=5432,
    source="db:5432/app",
    created_at="2026-11-25T02:00:00Z",
    size_bytes=1000,
    sha256=SHA,
    raw_size_bytes=5000,
    compression="zstd",
    compression_level=1,
    profile="postgres",
    parts=("schema", "data"),
    tables={"app.orders": 3},
    verified={"level": "check", "ok": True, "at": "2026-11-25T02:00:05Z"},
    uploads=({"target": "s3", "ok": True, "error": None, "uri": "s3://b/p/x"},),
)
PROVENANCE = Provenance("/b/backup_metadata.json", True, "none", None)
EXAMPLES = [
    BackupDocument(
        ok=False,
        backups=[Made(RECORD, "/b/" + RECORD.file)],
        removed=["postgres_backup_2026-11-01_02-00-00.sql.zst"],
        rejected=[Rejection("x", "/b", "missing", "it is not signed, and BACKUP_SIGNING_KEY is set")],
        failed=[Failure("SUPABASE_DB_URL ...", "Set it.", 3, "supabase")],
    ),
    TestDocument(
        ok=True,
        results=[Tested(RECORD.file, True, (CheckResult("checksum", True, "matches"),), PROVENANCE, {"ok": True})],
    ),
    ListDocument(ok=True, location="/b", archives=[]),
    RestoreDocument(ok=True, file=RECORD.file, target="db:5432/app", dry_run=True, provenance=PROVENANCE),
    PruneDocument(ok=True, dry_run=True, removed=["a"]),
]


def test_the_schema_is_valid_and_names_every_document() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert set(DOCUMENTS) == {"backup", "test", "list", "restore", "prune", "status"}
    assert {ref["$ref"] for ref in schema["oneOf"]} == {f"#/$defs/{name}_document" for name in DOCUMENTS}


@pytest.mark.parametrize("document", EXAMPLES, ids=lambda d: d.command)
def test_each_document_is_valid_and_reads_back_as_itself(document: object) -> None:
    assert isinstance(document, BackupDocument | TestDocument | ListDocument | RestoreDocument | PruneDocument)
    raw = json.loads(json.dumps(document.to_json()))
    assert contract_errors(raw) == []
    back = read_result(raw)
    assert type(back) is type(document) and back is not None and back.to_json() == raw


def test_an_error_document_is_valid_for_every_command() -> None:
    failure = Failure("DATABASE_URL is not set: ...", "Set DATABASE_URL=...", 2)
    for name, document in DOCUMENTS.items():
        raw = document.stopped(failure)
        assert contract_errors(raw) == [] and raw == {"command": name, "ok": False, "error": failure.to_json()}
        back = read_result(raw)
        assert back is not None and back.error == failure and not back.ok


def test_the_schema_refuses_what_breaks_the_contract() -> None:
    good = BackupDocument(ok=True, backups=[Made(RECORD, "")]).to_json()
    assert contract_errors(good) == []
    assert contract_errors({**good, "command": "frobnicate"})
    assert contract_errors({key: value for key, value in good.items() if key != "backups"})  # no error, no backups
    assert contract_errors({**good, "extra": 1})
    assert contract_errors([good])  # a bare list is no longer a document


def test_several_tests_combine_into_one_test_document() -> None:
    one = TestDocument(ok=True, results=[Tested("a", True, ())])
    two = TestDocument(ok=False, results=[Tested("b", False, (CheckResult("checksum", False, "differs"),))])
    merged = combined([one, two])
    assert isinstance(merged, TestDocument) and not merged.ok and [t.file for t in merged.results] == ["a", "b"]
    assert merged.results[1].failed_checks() == ["checksum"]


def test_status_document_keeps_the_report(tmp_path: Path) -> None:
    document = StatusDocument(ok=False, origin="local", location=str(tmp_path), report={"ok": False, "archives": 0})
    assert document.to_json() == {
        "command": "status",
        "ok": False,
        "archives": 0,
        "from": "local",
        "location": str(tmp_path),
    }


# --- as printed --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "command", "code"),
    [
        (["recovery", "list"], "list", 0),
        (["prune", "--dry-run"], "prune", 0),
        (["status"], "status", 7),
        (["backup", "test"], "test", 5),
        (["backup", "postgres"], "backup", 2),
        (["backup", "all"], "backup", 2),
        (["recovery", "test", "postgres_backup_2026-01-01_00-00-00.sql.zst"], "test", 5),
        (["recovery", "restore", "postgres_backup_2026-01-01_00-00-00.sql.zst", "--yes"], "restore", 5),
    ],
)
def test_json_before_or_after_the_command_prints_the_same_document(
    run_cli: Run, tmp_path: Path, args: list[str], command: str, code: int
) -> None:
    """An empty folder and no database: each command says so in its own document, valid whatever happened."""
    env = {"BACKUP_DIR": str(tmp_path / "empty")}
    before = run_cli("--json", *args, env=env)
    after = run_cli(*args, "--json", env=env)
    assert before.code == after.code == code, (before.output, after.output)
    first, second = json.loads(before.stdout), json.loads(after.stdout)
    for document in (first, second):
        document.pop("now", None)  # status's clock
    assert first == second and first["command"] == command
    assert first["ok"] is (code == 0)
    if "error" in first:
        assert first["error"]["exit_code"] == code and first["error"]["hint"]
        assert f"error: {first['error']['message']}" in before.stderr
    assert before.stdout.count("\n") > 0 and "==>" not in before.stdout  # the log went to stderr


def test_an_invalid_setting_is_a_document_too(run_cli: Run, tmp_path: Path) -> None:
    result = run_cli("recovery", "list", "--json", env={"BACKUP_DIR": str(tmp_path), "MAX_BACKUPS": "none"})
    assert result.code == 2
    document = json.loads(result.stdout)
    assert document == {
        "command": "list",
        "ok": False,
        "error": {
            "message": "MAX_BACKUPS='none' is not a whole number of 1 or more.",
            "hint": document["error"]["hint"],
            "exit_code": 2,
        },
    }
