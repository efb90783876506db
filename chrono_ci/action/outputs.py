"""The step's outputs (the same list as action.yml), from the runs' JSON results, written to GITHUB_OUTPUT."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from chrono_ci.action.plan import Plan
from chrono_ci.action.runs import Run
from chrono_ci.action.workspace import display_path
from chrono_ci.archive.manifest import Manifest
from chrono_ci.archive.names import ArchiveName
from chrono_ci.errors import ChronoError

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
    "artifact-id",
    "artifact-url",
    "s3-uris",
    "result-json",
)
# Outputs count against a 1 MB per-job limit: a result with thousands of row counts must not use it up.
RESULT_JSON_LIMIT = 256 * 1024


def entries_of(document: Mapping[str, Any], *keys: str) -> list[dict[str, Any]]:
    for key in keys:
        value = document.get(key)
        if isinstance(value, list):
            return [item for item in value if isinstance(item, dict) and "file" in item]
    return []


def kind_of(entry: Mapping[str, Any]) -> str:
    if entry.get("kind"):
        return str(entry["kind"])
    parsed = ArchiveName.parse(Path(str(entry.get("file", ""))).name)
    return parsed.kind if parsed else ""


def archives_of(runs: Sequence[Run], plan: Plan) -> list[dict[str, Any]]:
    """The archives a run made, tested, listed or restored, each with its path (empty when no local copy was
    kept); sizes and hashes from the manifest where the command's own result does not carry them."""
    found: list[tuple[dict[str, Any], str | None]] = []
    for run in runs:
        if run.document is None:
            continue
        found += [(entry, None) for entry in entries_of(run.document, "backups", "results", "archives")]
        if isinstance(run.document.get("file"), str):
            found.append((dict(run.document), run.file_arg))
    if not found:
        return []
    try:
        listed = {entry.get("file"): entry for entry in Manifest(plan.backup_dir).read()}
    except ChronoError:
        listed = {}
    complete = []
    for entry, file_arg in found:
        name = Path(str(entry["file"])).name
        merged = {**listed.get(name, {}), **entry}
        if file_arg and "/" in file_arg:  # chrono-ci's rule: a path when it has a '/', else a name in the folder
            merged["path"] = str(plan.workspace / Path(file_arg).expanduser())
        elif merged.get("local") is False and plan.command == "backup":
            merged["path"] = ""
        merged.setdefault("path", str(plan.backup_dir / name))
        complete.append(merged)
    return complete


def shown_path(entry: Mapping[str, Any], plan: Plan) -> str:
    return display_path(Path(entry["path"]), plan.workspace) if entry.get("path") else ""


def _verified(entry: Mapping[str, Any]) -> bool | None:
    verified = entry.get("verified")
    if isinstance(verified, dict) and "ok" in verified and "checks" not in entry:
        return bool(verified["ok"])
    if "checks" in entry or entry.get("ok") is not None:
        return bool(entry.get("ok"))
    return None


def _uploads(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [upload for entry in entries for upload in entry.get("uploads") or [] if isinstance(upload, dict)]


def build_outputs(plan: Plan, runs: Sequence[Run], code: int, result: Any) -> dict[str, str]:
    archives = archives_of(runs, plan)
    verdicts = [_verified(entry) for entry in archives]
    uploads = _uploads(archives)
    outputs = {name: "" for name in OUTPUTS}
    outputs.update(
        {
            "ok": "true" if code == 0 else "false",
            "exit-code": str(code),
            "command": plan.command,
            "backup-dir": display_path(plan.backup_dir, plan.workspace),
            "files": "\n".join(Path(str(e["file"])).name for e in archives),
            "paths": "\n".join(shown_path(e, plan) for e in archives),
            "sizes": "\n".join(str(e.get("size_bytes", "")) for e in archives),
            "sha256s": "\n".join(str(e.get("sha256", "")) for e in archives),
            "verified": ""
            if plan.command == "list" or not archives or None in verdicts
            else "true"
            if all(verdicts)
            else "false",
            "removed": "\n".join(
                str(name) for run in runs if run.document for name in run.document.get("removed") or []
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
        for entry in archives:
            kind = kind_of(entry)
            if kind in ("postgres", "supabase"):
                outputs[f"{kind}-file"] = Path(str(entry["file"])).name
                outputs[f"{kind}-path"] = shown_path(entry, plan)
                outputs[f"{kind}-size"] = str(entry.get("size_bytes", ""))
                outputs[f"{kind}-sha256"] = str(entry.get("sha256", ""))
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
