"""The step summary (GITHUB_STEP_SUMMARY): a Markdown report of the runs, at the most detail that fits under
GitHub's 1 MiB limit, every value from a database or an archive escaped for a table cell."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chrono_ci.action.outputs import kind_of_name
from chrono_ci.action.plan import Plan
from chrono_ci.action.runs import Run
from chrono_ci.action.workspace import display_path
from chrono_ci.archive.record import ArchiveRecord
from chrono_ci.report.console import human_size
from chrono_ci.report.results import BackupDocument, ListDocument, RestoreDocument, TestDocument, Tested

# The runner refuses a step summary over 1 MiB (and drops it whole); stay clear of it.
SUMMARY_LIMIT = 1024 * 1024
SUMMARY_BUDGET = 900 * 1024
ROW_COUNT_LIMITS = (200, 25, 0)


def mapping_of(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def cell(value: Any) -> str:
    """Text safe inside a Markdown table cell: database names and table names are not ours to trust."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("`", "'")


def literal(value: Any) -> str:
    return f"`{cell(value)}`" if str(value) else ""


def _stored(record: ArchiveRecord, path: str, workspace: Path) -> str:
    places = [f"local {literal(display_path(Path(path), workspace))}"] if path else []
    for upload in record.uploads:
        mark = "" if upload.get("ok", True) else " (FAILED)"
        if upload.get("target") == "s3":
            places.append(f"{literal(upload.get('uri', 's3'))}{mark}")
        elif upload.get("target") == "artifact":
            label = f"artifact {upload.get('artifact_id', '')}".strip()
            url = str(upload.get("artifact_url") or "")
            places.append((f"[{cell(label)}]({cell(url)})" if url.startswith("https://") else cell(label)) + mark)
        else:
            places.append(cell(upload.get("target", "?")) + mark)
    return "<br>".join(places) or "nowhere"


def _backup_section(record: ArchiveRecord, path: str, removed: list[str], workspace: Path, row_limit: int) -> list[str]:
    size = record.size_bytes or 0
    raw = record.raw_size_bytes or 0
    ratio = f"{raw / size:.1f}x" if size and raw else ""
    verified = mapping_of(record.verified)
    verdict = "passed" if verified.get("ok") else "FAILED" if verified else "not verified"
    tables = dict(record.tables or {})
    rows = sum(tables.values())
    where = f"{record.database or ''} on {record.host or ''}:{record.port or ''}"
    lines = [
        f"### {'✅' if verified.get('ok') else '⚠️'} {cell(record.kind)}: {cell(where)}",
        "",
        "| | |",
        "|---|---|",
        f"| file | {literal(record.file)} |",
        f"| size | {human_size(size)} ({size} bytes){f', from {human_size(raw)} of SQL' if raw else ''} |",
        f"| ratio | {ratio} |",
        f"| compression | {cell(record.compression)} {cell(record.compression_level or '')} |",
        f"| duration | {cell(record.duration_seconds if record.duration_seconds is not None else '')} s |",
        f"| sha256 | {literal(record.sha256 or '')} |",
        f"| verification | {cell(verified.get('level', ''))}: {verdict} |",
        f"| row counts | {len(tables)} tables, {rows} rows |",
        f"| stored | {_stored(record, path, workspace)} |",
        f"| retention removed | {'<br>'.join(literal(name) for name in removed) or 'nothing'} |",
        "",
    ]
    if tables and row_limit:
        shown = sorted(tables.items())[:row_limit]
        lines += [
            f"<details><summary>Row counts of {cell(record.file)}</summary>",
            "",
            "| table | rows |",
            "|---|--:|",
            *(f"| {cell(name)} | {cell(count)} |" for name, count in shown),
        ]
        if len(tables) > len(shown):
            lines.append(f"| … {len(tables) - len(shown)} more tables (see `result-json` output) | |")
        lines += ["", "</details>", ""]
    elif tables:
        lines += [f"Row counts of {len(tables)} tables left out to keep the summary under 1 MiB.", ""]
    return lines


def _test_section(results: Sequence[Tested]) -> list[str]:
    lines = ["| archive | result | checks | restore-verification |", "|---|---|---|---|"]
    for result in results:
        failed = [c for c in result.checks if c.ok is False]
        detail = ", ".join(cell(c.name) for c in failed or result.checks)
        verdict = "✅ valid" if result.ok else "❌ FAILED"
        proof = mapping_of(result.restore)
        restored = ""
        if proof:
            restored = f"{'✅' if proof.get('ok') else '❌'} {cell(proof.get('tables_compared', ''))} tables compared"
            restored += f"; {cell(proof['error'])}" if proof.get("error") else ""
        lines.append(f"| {literal(result.file)} | {verdict} | {detail} | {restored} |")
    return [*lines, ""]


def _listing_section(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["| archive | kind | database | created (UTC) | size | checksum |", "|---|---|---|---|--:|---|"]
    for entry in entries:
        size = entry.get("size_bytes")
        newest = " (newest)" if entry.get("newest") else ""
        lines.append(
            f"| {literal(entry.get('file', ''))}{newest} | {cell(entry.get('kind', ''))} "
            f"| {cell(entry.get('database') or '')} | {cell(str(entry.get('created_at', ''))[:19])} "
            f"| {human_size(size) if isinstance(size, int) else ''} | {cell(entry.get('checksum', ''))} |"
        )
    return [*lines, ""]


def _restore_section(result: RestoreDocument) -> list[str]:
    tables = result.tables
    rows = sum(tables.values())
    done = "dry run: valid, nothing changed" if result.dry_run else "restored, row counts match"
    return [
        "| | |",
        "|---|---|",
        f"| archive | {literal(result.file)} |",
        f"| target | {literal(result.target)} |",
        f"| result | {done if result.ok else 'FAILED'} |",
        f"| safety backup | {literal(result.safety_backup or '')} |",
        f"| row counts | {f'{len(tables)} tables, {rows} rows' if tables else ''} |",
        "",
    ]


def _problems(run: Run) -> list[str]:
    result = run.result
    lines: list[str] = []
    failed = result.failed if isinstance(result, BackupDocument) else []
    for failure in failed:
        lines += [
            f"> **❌ {cell(failure.kind or '')} failed:** {cell(failure.message)}  ",
            f"> hint: {cell(failure.hint)}",
            "",
        ]
    if result is not None and result.error is not None:
        lines += [f"> **❌ {cell(result.error.message)}**  ", f"> hint: {cell(result.error.hint)}", ""]
    if result is None and run.code != 0:
        lines += [f"> **❌ chrono-ci exited {run.code} without a result;** see the step's log.", ""]
    return lines


def build_summary(plan: Plan, runs: Sequence[Run], code_: int, row_limit: int = ROW_COUNT_LIMITS[0]) -> str:
    verdict = "succeeded" if code_ == 0 else f"FAILED (exit code {code_})"
    lines = [f"## chrono-ci {cell(plan.command)}: {verdict}", ""]
    for run in runs:
        result = run.result
        if len(runs) > 1:
            lines += [f"#### `chrono-ci {cell(' '.join(Path(a).name for a in run.args))}`", ""]
        if isinstance(result, BackupDocument):
            for made in result.backups:
                mine = [name for name in result.removed if kind_of_name(name) == made.record.kind]
                lines += _backup_section(made.record, made.path, mine, plan.workspace, row_limit)
        elif isinstance(result, TestDocument) and result.results:
            lines += _test_section(result.results)
        elif isinstance(result, ListDocument):
            lines += _listing_section(result.archives)
        elif isinstance(result, RestoreDocument) and result.file:
            lines += _restore_section(result)
        lines += _problems(run)
    lines.append(f"Backup folder: {literal(display_path(plan.backup_dir, plan.workspace))}")
    return "\n".join(lines) + "\n"


def fit_summary(plan: Plan, runs: Sequence[Run], code_: int, budget: int = SUMMARY_BUDGET) -> str:
    """The summary at the most detail that fits: fewer row counts first, then a plain cut with a note."""
    text = ""
    for limit in ROW_COUNT_LIMITS:
        text = build_summary(plan, runs, code_, limit)
        if len(text.encode()) <= budget:
            return text
    note = "\n\n… summary cut to stay under GitHub's 1 MiB limit; the whole result is in the result-json output.\n"
    cut = text.encode()[: max(0, budget - len(note.encode()))].decode("utf-8", errors="ignore")
    return cut + note


def write_summary(path: str, text: str) -> None:
    try:
        used = os.path.getsize(path)
    except OSError:
        used = 0
    if used + len(text.encode()) > SUMMARY_LIMIT:
        return  # the runner would drop the whole summary, earlier steps' part included
    with open(path, "a", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
