"""A damaged memory's readable rows, copied into a fresh memory that takes its place; the
damaged file stays beside it (memory.duckdb.corrupt), so nothing is lost that a better
tool could still recover."""

from __future__ import annotations

from pathlib import Path

import duckdb

from archlab.errors import ArchlabError
from archlab.memory.database import Database
from archlab.memory.shared_file import CORRUPT_SUFFIX, is_lock_error

#: DuckDB's rows per row group: a damaged block costs the groups stored in it, not the table
_ROW_GROUP = 122_880


def salvage(path: Path) -> dict[str, tuple[int, int | None]]:
    """Copy what DuckDB can read of the memory at `path` into a fresh one at `path`, keep
    the damaged file as `path.corrupt`, and return {table: (rows kept, rows lost or None
    where the table's size cannot be read)}."""
    damaged = path.with_name(path.name + CORRUPT_SUFFIX)
    if not path.exists():
        raise ArchlabError(f"no memory at {path}: nothing to salvage")
    if damaged.exists():
        raise ArchlabError(f"{damaged} exists already (an earlier salvage): move it away first")
    fresh = path.with_name(path.name + ".salvaging")
    fresh.unlink(missing_ok=True)  # a salvage that was cut short
    database = Database(fresh)
    try:
        with database.connect() as con:
            try:
                quoted = str(path).replace("'", "''")
                con.execute(f"ATTACH '{quoted}' AS damaged (READ_ONLY)")
            except duckdb.Error as e:
                if is_lock_error(e):
                    raise ArchlabError(
                        f"memory {path} is in use by another process ({e})"
                    ) from None
                raise ArchlabError(
                    f"nothing in {path} can be read ({e}): restore it from a backup, or move "
                    "it aside to start a fresh memory"
                ) from None
            try:
                kept = {table: _copy(con, table) for table in _tables(con)}
            finally:
                con.execute("DETACH damaged")
    except BaseException:
        database.close()
        fresh.unlink(missing_ok=True)
        raise
    database.close()
    path.rename(damaged)
    wal = Path(f"{path}.wal")
    if wal.exists():
        wal.rename(f"{damaged}.wal")
    fresh.rename(path)
    return kept


def _tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The damaged memory's tables that this version's schema has (the migrations' own
    record is the fresh memory's)."""
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'damaged' "
        "AND table_name != 'schema_migrations' AND table_name IN "
        "(SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()) "
        "ORDER BY table_name"
    ).fetchall()
    return [name for (name,) in rows]


def _copy(con: duckdb.DuckDBPyConnection, table: str) -> tuple[int, int | None]:
    """Copy the table whole, or else row group by row group, skipping the damaged ones."""
    columns = ", ".join(
        f'"{name}"'
        for (name,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = 'damaged' "
            "AND table_name = ? AND column_name IN (SELECT column_name FROM duckdb_columns() "
            "WHERE database_name = current_database() AND table_name = ?) ORDER BY column_index",
            [table, table],
        ).fetchall()
    )
    insert = f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM damaged.{table}"
    try:
        (total,) = con.execute(f"SELECT count(*) FROM damaged.{table}").fetchone() or (0,)
    except duckdb.Error:
        total = None
    try:
        con.execute(insert)
        return _count(con, table), 0
    except duckdb.Error:
        pass
    for start in range(0, total or 0, _ROW_GROUP):
        try:  # a failed statement inserts nothing
            con.execute(f"{insert} WHERE rowid >= ? AND rowid < ?", [start, start + _ROW_GROUP])
        except duckdb.Error:
            continue
    kept = _count(con, table)
    return kept, None if total is None else total - kept


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM main.{table}").fetchone()
    return int(row[0]) if row else 0
