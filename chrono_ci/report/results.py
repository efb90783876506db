"""The result contract: one typed document per command, printed by --json in one JSON shape each, and read back
the same way by the Action (chrono_ci/action/).

Every document has `command` (backup, test, list, restore, prune or status) and `ok`; a command stopped by an
error has `ok: false` and `error` (message, hint, exit code), and only what it had done by then. The shapes are
documented as JSON Schemas in docs/schemas/ (tests/test_results.py validates real output against them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from chrono_ci.archive.catalog import Vetted
from chrono_ci.archive.record import ArchiveRecord
from chrono_ci.archive.vouching import Provenance

COMMANDS = ("backup", "test", "list", "restore", "prune", "status")


def _text(value: object, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _maybe_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _dicts(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


@dataclass(frozen=True)
class Failure:
    """An error with its hint and exit code: what stopped a command, or one database of `backup all` (`kind`)."""

    message: str
    hint: str
    exit_code: int
    kind: str | None = None

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"kind": self.kind} if self.kind is not None else {}
        return {**found, "message": self.message, "hint": self.hint, "exit_code": self.exit_code}

    @staticmethod
    def from_json(value: Mapping[str, Any]) -> Failure:
        code = value.get("exit_code")
        return Failure(
            _text(value.get("message")),
            _text(value.get("hint")),
            code if isinstance(code, int) and not isinstance(code, bool) else 1,
            _maybe_text(value.get("kind")),
        )


@dataclass(frozen=True)
class Rejection:
    """A record chrono-ci does not believe: neither counted, nor deleted, nor restored without --allow-unlisted."""

    file: str
    location: str
    signature: str
    problem: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "location": self.location,
            "trusted": False,
            "signature": self.signature,
            "problem": self.problem,
        }

    @staticmethod
    def from_json(value: Mapping[str, Any]) -> Rejection:
        return Rejection(
            _text(value.get("file")),
            _text(value.get("location")),
            _text(value.get("signature"), "none"),
            _maybe_text(value.get("problem")),
        )


def provenance_from_json(value: Mapping[str, Any]) -> Provenance:
    return Provenance(
        _maybe_text(value.get("record")),
        value.get("trusted") is True,
        _text(value.get("signature"), "none"),
        _maybe_text(value.get("problem")),
        value.get("allowed_unlisted") is True,
    )


def rejections(vetted: Iterable[Vetted]) -> list[Rejection]:
    """The records in `vetted` that chrono-ci does not believe."""
    return [Rejection(v.file, v.location, v.verdict.signature, v.verdict.problem) for v in vetted if not v.trusted]


@dataclass
class Result:
    """What every document has; each command's document adds its own fields."""

    command: ClassVar[str]
    ok: bool = False
    error: Failure | None = None

    def body(self) -> dict[str, Any]:
        return {}

    @classmethod
    def stopped(cls, failure: Failure) -> dict[str, Any]:
        """The document of a command an error stopped before it had a result."""
        return {"command": cls.command, "ok": False, "error": failure.to_json()}

    @classmethod
    def from_failure(cls, failure: Failure) -> Result:
        return cls(ok=False, error=failure)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"command": self.command, "ok": self.ok, **self.body()}
        if self.error is not None:
            document["error"] = self.error.to_json()
        return document


# --- backup --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Made:
    """A backup made: its record, and the path of its local copy ("" when none was kept)."""

    record: ArchiveRecord
    path: str

    def to_json(self) -> dict[str, Any]:
        return {**self.record.to_entry(), "path": self.path}


@dataclass
class BackupDocument(Result):
    command: ClassVar[str] = "backup"
    backups: list[Made] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # archives retention removed
    rejected: list[Rejection] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)  # the databases of `backup all` that failed

    def body(self) -> dict[str, Any]:
        return {
            "backups": [made.to_json() for made in self.backups],
            "removed": list(self.removed),
            "rejected": [rejection.to_json() for rejection in self.rejected],
            "failed": [failure.to_json() for failure in self.failed],
        }


# --- test (backup test, recovery test) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool | None  # None: not run (nothing to compare with, or no key)
    detail: str


@dataclass(frozen=True)
class Tested:
    """One archive tested: its integrity checks, and with --restore the restore-verification."""

    __test__ = False  # a result, not a pytest test class

    file: str
    ok: bool
    checks: tuple[CheckResult, ...]
    provenance: Provenance | None = None  # recovery test: whether a trusted record vouches for it
    restore: Mapping[str, Any] | None = None  # restore-verification (chrono_ci/verify/scratch.py)

    def failed_checks(self) -> list[str]:
        failed = [check.name for check in self.checks if check.ok is False]
        if self.restore is not None and self.restore.get("ok") is False:
            failed.append("restore-verification")
        return failed

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "ok": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "provenance": self.provenance.to_json() if self.provenance is not None else None,
            "restore": dict(self.restore) if self.restore is not None else None,
        }

    @staticmethod
    def from_json(value: Mapping[str, Any]) -> Tested:
        checks = tuple(
            CheckResult(
                _text(c.get("name")), c.get("ok") if isinstance(c.get("ok"), bool) else None, _text(c.get("detail"))
            )
            for c in _dicts(value.get("checks"))
        )
        provenance = _mapping(value.get("provenance"))
        return Tested(
            _text(value.get("file")),
            value.get("ok") is True,
            checks,
            provenance_from_json(provenance) if provenance is not None else None,
            _mapping(value.get("restore")),
        )


@dataclass
class TestDocument(Result):
    __test__ = False  # a result, not a pytest test class
    command: ClassVar[str] = "test"
    results: list[Tested] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {
            "results": [tested.to_json() for tested in self.results],
            "rejected": [rejection.to_json() for rejection in self.rejected],
        }


# --- list -----------------------------------------------------------------------------------------------------------


@dataclass
class ListDocument(Result):
    command: ClassVar[str] = "list"
    location: str = ""
    archives: Sequence[Mapping[str, Any]] = field(default_factory=list)  # the rows of chrono_ci/archive/listing.py

    def body(self) -> dict[str, Any]:
        return {"location": self.location, "archives": [dict(row) for row in self.archives]}


# --- restore --------------------------------------------------------------------------------------------------------


@dataclass
class RestoreDocument(Result):
    command: ClassVar[str] = "restore"
    file: str = ""
    target: str = ""  # the target database, without its password
    dry_run: bool = False
    source_database: str | None = None
    other_sessions: int = 0
    safety_backup: str | None = None  # the safety backup's archive; None in a dry run
    tables: Mapping[str, int] = field(default_factory=dict)  # the restored row counts; empty in a dry run
    warnings: list[str] = field(default_factory=list)  # the server's warnings during the restore
    provenance: Provenance | None = None

    def body(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "target": self.target,
            "dry_run": self.dry_run,
            "source_database": self.source_database,
            "other_sessions": self.other_sessions,
            "safety_backup": self.safety_backup,
            "tables": dict(self.tables),
            "warnings": list(self.warnings),
            "provenance": self.provenance.to_json() if self.provenance is not None else None,
        }


# --- prune ----------------------------------------------------------------------------------------------------------


@dataclass
class PruneDocument(Result):
    command: ClassVar[str] = "prune"
    dry_run: bool = False
    removed: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "removed": list(self.removed),
            "rejected": [rejection.to_json() for rejection in self.rejected],
        }


# --- status ---------------------------------------------------------------------------------------------------------


@dataclass
class StatusDocument(Result):
    command: ClassVar[str] = "status"
    origin: str = "local"  # `from`: local or s3
    location: str = ""
    report: Mapping[str, Any] = field(default_factory=dict)  # chrono_ci/jobs/status.py's StatusReport.as_dict()

    def body(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.report.items() if k != "ok"}, "from": self.origin, "location": self.location}


# --- reading one back -----------------------------------------------------------------------------------------------

DOCUMENTS: dict[str, type[Result]] = {
    document.command: document
    for document in (BackupDocument, TestDocument, ListDocument, RestoreDocument, PruneDocument, StatusDocument)
}


def read_result(raw: object) -> Result | None:
    """The document chrono-ci printed with --json, typed; None when it is not one (no output, or not ours)."""
    if not isinstance(raw, Mapping) or raw.get("command") not in DOCUMENTS:
        return None
    ok = raw.get("ok") is True
    error = _mapping(raw.get("error"))
    failure = Failure.from_json(error) if error is not None else None
    rejected = [Rejection.from_json(item) for item in _dicts(raw.get("rejected"))]
    command = raw["command"]
    if command == "backup":
        made = [Made(ArchiveRecord.from_entry(item), _text(item.get("path"))) for item in _dicts(raw.get("backups"))]
        return BackupDocument(
            ok,
            failure,
            made,
            [name for name in raw.get("removed") or [] if isinstance(name, str)],
            rejected,
            [Failure.from_json(item) for item in _dicts(raw.get("failed"))],
        )
    if command == "test":
        return TestDocument(ok, failure, [Tested.from_json(item) for item in _dicts(raw.get("results"))], rejected)
    if command == "list":
        return ListDocument(ok, failure, _text(raw.get("location")), _dicts(raw.get("archives")))
    if command == "restore":
        tables = _mapping(raw.get("tables")) or {}
        provenance = _mapping(raw.get("provenance"))
        other = raw.get("other_sessions")
        return RestoreDocument(
            ok,
            failure,
            _text(raw.get("file")),
            _text(raw.get("target")),
            raw.get("dry_run") is True,
            _maybe_text(raw.get("source_database")),
            other if isinstance(other, int) else 0,
            _maybe_text(raw.get("safety_backup")),
            {str(k): v for k, v in tables.items() if isinstance(v, int)},
            [w for w in raw.get("warnings") or [] if isinstance(w, str)],
            provenance_from_json(provenance) if provenance is not None else None,
        )
    if command == "prune":
        removed = [name for name in raw.get("removed") or [] if isinstance(name, str)]
        return PruneDocument(ok, failure, raw.get("dry_run") is True, removed, rejected)
    report = {key: value for key, value in raw.items() if key not in ("command", "ok", "error", "from", "location")}
    return StatusDocument(ok, failure, _text(raw.get("from"), "local"), _text(raw.get("location")), report)


def combined(documents: Sequence[Result]) -> Result | None:
    """Several runs of one command as one document (the Action's verify runs one test per database)."""
    if not documents:
        return None
    if len(documents) == 1:
        return documents[0]
    if all(isinstance(document, TestDocument) for document in documents):
        tests = [document for document in documents if isinstance(document, TestDocument)]
        errors = [document.error for document in tests if document.error is not None]
        return TestDocument(
            all(document.ok for document in tests),
            errors[0] if errors else None,
            [tested for document in tests for tested in document.results],
            [rejection for document in tests for rejection in document.rejected],
        )
    return documents[-1]
