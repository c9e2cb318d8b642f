"""Rows in and out of DuckDB: JSON columns encoded and decoded, and writes coalesced into
few statements (a process's writes to the memory, applied in order)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb

_JSON_COLUMNS = {"config", "parents", "plan", "genome", "metrics", "budget", "curve", "loss_curve"}
_JSON_COLUMNS |= {"request", "response", "answer"}  # llm_calls
_JSON_COLUMNS |= {"details", "fitness", "seeds", "summary"}  # the verification ladder
_JSON_COLUMNS |= {"spec"}  # weights
_JSON_COLUMNS |= {"old", "new"}  # run_changes


def encoded(row: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(v) if k in _JSON_COLUMNS and v is not None else v for k, v in row.items()}


def row_dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    columns = [d[0] for d in cursor.description or []]
    rows = []
    for values in cursor.fetchall():
        row = dict(zip(columns, values, strict=True))
        for key in _JSON_COLUMNS & row.keys():
            if isinstance(row[key], str):
                row[key] = json.loads(row[key])
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Insert:
    """Insert `row` (encoded), a row known to be new."""

    table: str
    row: dict[str, Any]


@dataclass(frozen=True)
class Upsert:
    """Insert `row` (encoded), or update the row with its key."""

    table: str
    keys: tuple[str, ...]
    row: dict[str, Any]

    def key(self) -> tuple[Any, ...]:
        return tuple(self.row[k] for k in self.keys)


#: a write: a row to insert or upsert, or any other statement, run on a cursor
Write = Insert | Upsert | Callable[[duckdb.DuckDBPyConnection], Any]


def apply(con: duckdb.DuckDBPyConnection, writes: list[Write], look_up: bool = True) -> None:
    """Run the writes, with the effect of running them in order, in fewer statements
    (DuckDB spends most of a small write planning it):

    - Upserts become plain INSERTs or UPDATEs: one query finds which of their keys exist,
      where INSERT ... ON CONFLICT DO UPDATE costs several times an INSERT. The look-up
      needs no transaction around it: a process's writes take turns (the write lock), no
      other process has the file open meanwhile, no row is ever deleted. Without
      `look_up`, every upserted row is taken as new (an existing one fails the INSERT).
    - New rows of a table go in together, one INSERT with many rows, when nothing but
      inserts into other tables comes between them (those commute)."""
    upserts = [w for w in writes if isinstance(w, Upsert)] if look_up else []
    existing = existing_keys(con, upserts)
    rows: dict[tuple[str, tuple[str, ...]], list[list[Any]]] = {}  # by table and columns

    def insert_rows() -> None:
        for (table, columns), values in rows.items():
            row_marks = "(" + ", ".join("?" for _ in columns) + ")"
            con.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES {', '.join(row_marks for _ in values)}",
                [value for row in values for value in row],
            )
        rows.clear()

    for write in writes:
        if isinstance(write, Upsert) and (write.table, write.key()) not in existing:
            existing.add((write.table, write.key()))
            write = Insert(write.table, write.row)
        if isinstance(write, Insert):
            rows.setdefault((write.table, tuple(write.row)), []).append(list(write.row.values()))
            continue
        insert_rows()  # the rows written before an update go in before it
        if isinstance(write, Upsert):
            columns = [c for c in write.row if c not in write.keys]
            sets = ", ".join(f"{c} = ?" for c in columns)
            where = " AND ".join(f"{k} = ?" for k in write.keys)
            con.execute(
                f"UPDATE {write.table} SET {sets} WHERE {where}",
                [write.row[c] for c in columns] + list(write.key()),
            )
        else:
            write(con)
    insert_rows()


def existing_keys(
    con: duckdb.DuckDBPyConnection, upserts: list[Upsert]
) -> set[tuple[str, tuple[Any, ...]]]:
    """(table, key) of the rows that exist among the upserts' keys, in one query."""
    by_table: dict[tuple[str, tuple[str, ...]], set[Any]] = {}
    for upsert in upserts:
        by_table.setdefault((upsert.table, upsert.keys), set()).add(upsert.row[upsert.keys[0]])
    if not by_table:
        return set()
    width = max(len(keys) for _, keys in by_table)
    selects, params = [], []
    for (table, keys), firsts in by_table.items():
        columns = ", ".join([*keys] + ["NULL"] * (width - len(keys)))
        marks = ", ".join("?" for _ in firsts)
        selects.append(f"SELECT '{table}', {columns} FROM {table} WHERE {keys[0]} IN ({marks})")
        params += list(firsts)
    arity = {table: len(keys) for table, keys in by_table}
    rows = con.execute(" UNION ALL ".join(selects), params).fetchall()
    return {(row[0], tuple(row[1 : 1 + arity[row[0]]])) for row in rows}
