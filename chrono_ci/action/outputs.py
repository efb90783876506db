"""The step's outputs (the same list as action.yml), from the runs' JSON results, written to GITHUB_OUTPUT."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chrono_ci.action.plan import Plan
from chrono_ci.action.runs import Run
from chrono_ci.action.workspace import display_path
from chrono_ci.archive.manifest import Manifest
from chrono_ci.archive.names import ArchiveName
from chrono_ci.archive.record import ArchiveRecord
from chrono_ci.errors import ChronoError
from chrono_ci.report.results import BackupDocument, ListDocument, PruneDocument, RestoreDocument, TestDocument

# Outputs, in the order they are written. The same list as action.yml.
OUTPUTS: tuple[str, ...] = (
    "ok",
    "exit-code",
    "command",
    "backup-dir",
    "files",
    "paths",
    "sizes",
    "sha256s",
    "verified",
    "postgres-file",
    "postgres-path",
    "postgres-size",
    "postgres-sha256",
    "supabase-file",
    "supabase-path",
    "supabase-size",
    "supabase-sha256",
    "removed",
    "artifact-name",
    "artifact-id",
    "artifact-url",
    "s3-uris",
    "result-json",
)
# Outputs count against a 1 MB per-job limit: a result with thousands of row counts must not use it up.
RESULT_JSON_LIMIT = 256 * 1024


@dataclass(frozen=True)
class Shown:
    """An archive a run made, tested, listed or restored, as the outputs and the summary show it."""

    file: str
    kind: str
    path: str  # of its local copy; "" when none was kept
    size: int | None
    sha256: str | None
    verified: bool | None  # None: the command does not verify (list)
    uploads: tuple[Mapping[str, Any], ...] = ()
    record: ArchiveRecord | None = None  # what backup_metadata.json (or the backup's result) says of it


def archives_of(runs: Sequence[Run], plan: Plan) -> list[Shown]:
    """The archives of the runs' result documents; sizes and hashes from backup_metadata.json where the command's
    own result does not carry them (a test reports checks, a restore a file name)."""
    found: list[Shown] = []
    listed: dict[str, ArchiveRecord] | None = None

    def recorded(name: str) -> ArchiveRecord | None:
        nonlocal listed
        if listed is None:
            try:
                listed = {record.file: record for record in Manifest(plan.backup_dir).records()}
            except ChronoError:
                listed = {}
        return listed.get(name)

    def shown(name: str, file_arg: str | None, verified: bool | None) -> Shown:
        record = recorded(name)
        # chrono-ci's rule: FILE is a path when it has a '/', else a name in the backup folder.
        path = plan.workspace / Path(file_arg).expanduser() if file_arg and "/" in file_arg else plan.backup_dir / name
        size = record.size_bytes if record is not None else None
        sha256 = record.sha256 if record is not None else None
        return Shown(name, kind_of_name(name), str(path), size, sha256, verified, (), record)

    for run in runs:
        result = run.result
        if isinstance(result, BackupDocument):
            found += [
                Shown(
                    made.record.file,
                    made.record.kind or kind_of_name(made.record.file),
                    made.path,
                    made.record.size_bytes,
                    made.record.sha256,
                    made.record.verified_ok,
                    made.record.uploads,
                    made.record,
                )
                for made in result.backups
            ]
        elif isinstance(result, TestDocument):
            found += [shown(Path(tested.file).name, run.file_arg, tested.ok) for tested in result.results]
        elif isinstance(result, ListDocument):
            for row in result.archives:
                name = str(row.get("file", ""))
                size, sha256 = row.get("size_bytes"), row.get("sha256")
                found.append(
                    Shown(
                        name,
                        kind_of_name(name),
                        str(plan.backup_dir / name),
                        size if isinstance(size, int) else None,
                        sha256 if isinstance(sha256, str) else None,
                        None,
                    )
                )
        elif isinstance(result, RestoreDocument) and result.file:
            found.append(shown(result.file, run.file_arg, result.ok))
    return found


def kind_of_name(name: str) -> str:
    parsed = ArchiveName.parse(Path(name).name)
    return parsed.kind if parsed else ""


def shown_path(archive: Shown, plan: Plan) -> str:
    return display_path(Path(archive.path), plan.workspace) if archive.path else ""


def build_outputs(plan: Plan, runs: Sequence[Run], code: int, result: Any) -> dict[str, str]:
    archives = archives_of(runs, plan)
    verdicts = [archive.verified for archive in archives]
    uploads = [upload for archive in archives for upload in archive.uploads]
    removed = [
        name for run in runs if isinstance(run.result, BackupDocument | PruneDocument) for name in run.result.removed
    ]
    outputs = {name: "" for name in OUTPUTS}
    outputs.update(
        {
            "ok": "true" if code == 0 else "false",
            "exit-code": str(code),
            "command": plan.command,
            "backup-dir": display_path(plan.backup_dir, plan.workspace),
            "files": "\n".join(archive.file for archive in archives),
            "paths": "\n".join(shown_path(archive, plan) for archive in archives),
            "sizes": "\n".join("" if a.size is None else str(a.size) for a in archives),
            "sha256s": "\n".join(a.sha256 or "" for a in archives),
            "verified": ""
            if plan.command == "list" or not archives or None in verdicts
            else "true"
            if all(verdicts)
            else "false",
            "removed": "\n".join(removed),
            "artifact-name": "\n".join(
                str(u["name"]) for u in uploads if u.get("target") == "artifact" and u.get("name")
            ),
            "artifact-id": "\n".join(
                str(u["artifact_id"]) for u in uploads if u.get("target") == "artifact" and u.get("artifact_id")
            ),
            "artifact-url": "\n".join(
                str(u["artifact_url"]) for u in uploads if u.get("target") == "artifact" and u.get("artifact_url")
            ),
            "s3-uris": "\n".join(str(u["uri"]) for u in uploads if u.get("target") == "s3" and u.get("uri")),
            "result-json": _result_json(result),
        }
    )
    if plan.command != "list":
        for archive in archives:
            if archive.kind in ("postgres", "supabase"):
                outputs[f"{archive.kind}-file"] = archive.file
                outputs[f"{archive.kind}-path"] = shown_path(archive, plan)
                outputs[f"{archive.kind}-size"] = "" if archive.size is None else str(archive.size)
                outputs[f"{archive.kind}-sha256"] = archive.sha256 or ""
    return outputs


def _result_json(result: Any) -> str:
    text = json.dumps(result, ensure_ascii=False, default=str)
    if len(text.encode()) <= RESULT_JSON_LIMIT:
        return text
    # Row counts are what grows without bound; everything else is a few lines per archive.
    slim = json.loads(text)
    for entry in _all_dicts(slim):
        if isinstance(entry.get("tables"), dict) and "file" in entry:
            entry["tables_omitted"] = len(entry["tables"])
            entry["tables"] = {}
    text = json.dumps(slim, ensure_ascii=False, default=str)
    if len(text.encode()) <= RESULT_JSON_LIMIT:
        return text
    ok = result.get("ok") if isinstance(result, dict) else None
    return json.dumps({"ok": ok, "truncated": True, "note": "result too large for an output; see the step summary"})


def _all_dicts(value: Any) -> Iterable[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _all_dicts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _all_dicts(item)


def write_outputs(path: str, outputs: Mapping[str, str]) -> None:
    """Append to GITHUB_OUTPUT: `name=value` for one line, the heredoc form with a random delimiter otherwise."""
    with open(path, "a", encoding="utf-8", newline="\n") as handle:
        for name, value in outputs.items():
            if name not in OUTPUTS:
                raise ValueError(f"output {name} is not declared in action.yml")
            if "\n" not in value and "\r" not in value:
                handle.write(f"{name}={value}\n")
                continue
            delimiter = f"ghadelimiter_{uuid.uuid4()}"
            while delimiter in value:
                delimiter = f"ghadelimiter_{uuid.uuid4()}"
            handle.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
