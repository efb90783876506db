"""Every restored table's row count, from inside the restore's transaction: the proof a restore commits on."""

from __future__ import annotations

from chrono_ci.restore.session import ServerSession


def count_rows(session: ServerSession, tables: list[str]) -> dict[str, int | None]:
    """Every table's row count (None where it does not exist), from inside the restore's transaction.

    A table's own rows, as COPY loaded them: `ONLY`, so that an inheritance parent does not count its children;
    a partitioned table (loaded through its root) counts its partitions'.
    """
    found: dict[str, int | None] = dict.fromkeys(tables)
    for start in range(0, len(tables), 200):
        batch = tables[start : start + 200]
        pairs = [table.partition(".") for table in batch]
        literals = ", ".join(f"({_literal(schema)}, {_literal(name)})" for schema, _, name in pairs)
        kinds = {
            (schema, name): kind
            for schema, name, kind in session.values(
                "SELECT n.nspname, c.relname, c.relkind FROM pg_catalog.pg_class c "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                f"WHERE (n.nspname, c.relname) IN ({literals}) AND c.relkind IN ('r', 'p')"
            )
        }
        present = [(table, (schema, name)) for table, (schema, _, name) in zip(batch, pairs, strict=True)]
        present = [(table, key) for table, key in present if key in kinds]
        if not present:
            continue
        counts = ", ".join(
            f"(SELECT count(*) FROM {'' if kinds[key] == 'p' else 'ONLY '}{_ident(key[0])}.{_ident(key[1])})"
            for _, key in present
        )
        row = session.values(f"SELECT {counts}")[0]
        for (table, _), value in zip(present, row, strict=True):
            found[table] = int(value or 0)
    return found


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
