"""The memory's database: its file (shared by the process's Memory objects, handed over
to other processes: memory.shared_file), its schema (migrations/), and the one way memory
code reaches DuckDB: `_query` for reads, `_write` and its helpers for writes, which hold
back in a batch or commit at once, under the process's write lock."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Self

import duckdb

from archlab.errors import ArchlabError, MemoryCorruptError
from archlab.memory.shared_file import attach, detach, is_corruption
from archlab.memory.writes import Insert, Upsert, Write, apply, encoded, row_dicts


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("archlab.memory.migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, name = entry.name.removesuffix(".sql").partition("_")
            found.append((int(number), name, entry.read_text()))
    return sorted(found)


class Database:
    """A memory file opened for this process: Memory's connection, batching and schema."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = attach(path)
        self._finalizer = weakref.finalize(self, detach, self._file)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open_existing(cls, path: Path) -> Self:
        """For readers: a missing memory is an error, not a reason to create one."""
        if not path.exists():
            raise ArchlabError(f"no memory at {path}: nothing has run with this home yet")
        return cls(path)

    def close(self) -> None:
        """Let go of the file (the last Memory on it in this process closes the connection).
        Garbage collection and the process's exit do the same."""
        self._finalizer()

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor for one operation, on the process's connection to the file. Nested uses
        in the same thread share it, so a caller can batch several queries
        (`with memory.connect():`); other threads get their own. The thread's held writes
        (see `batch`) are committed first, so that it reads what it wrote. The memory stays
        open while the cursor is in use (`with Memory(path).connect() as con:` too)."""
        self.flush()
        with self._file.connection(read_only) as con:
            yield con

    def release(self) -> None:
        """Close the connection now if no operation is running (the next one reopens it):
        for a process about to idle long while a client that cannot ask wants the file."""
        self._file.release()

    def connection_stats(self) -> dict[str, float]:
        """What the connection has cost this process: opens, handovers to other processes,
        seconds spent opening (waiting included) and closing."""
        return dict(self._file.stats)

    def _migrate(self) -> None:
        with self._file.connection(False) as con, self._file.write_lock:
            try:
                con.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    "version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP)"
                )
                applied = {
                    v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()
                }
                for version, name, sql in _migrations():
                    if version in applied:
                        continue
                    con.execute("BEGIN TRANSACTION")
                    con.execute(sql)
                    con.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, name, now()]
                    )
                    con.execute("COMMIT")
            except duckdb.Error as e:
                if is_corruption(e):
                    raise  # the connection says what to do
                raise MemoryCorruptError(f"cannot migrate memory {self.path}: {e}") from None

    def schema_version(self) -> int:
        with self.connect() as con:
            row = con.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        with self.connect() as con:  # commits the thread's held writes first
            return row_dicts(con.execute(sql, params or []))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The writes inside commit together or not at all (inside a batch, after the
        writes it holds)."""
        self.flush()
        batches = self._file.batches
        held, batches.writes = getattr(batches, "writes", None), None  # straight in
        try:
            with self._file.connection(False) as con, self._file.write_lock:
                con.begin()
                try:
                    yield
                except BaseException:
                    con.rollback()
                    raise
                con.commit()
        finally:
            batches.writes = held

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold this thread's writes and commit them together (one transaction, one log
        flush) when the batch ends, or earlier when the thread reads the memory (it sees
        what it wrote) or calls `flush()`. The writes held when the body raises are
        dropped: what a batch writes between two commits is all or nothing. A graph node
        is one batch: its writes commit before LangGraph checkpoints it, so a kill leaves
        the memory at or ahead of the checkpoint, never behind; the node in flight runs
        again on resume and rewrites its rows (upserts). Other threads and processes see
        the writes once committed. A batch in a batch is part of it."""
        batches = self._file.batches
        if getattr(batches, "writes", None) is not None:
            yield
            return
        batches.writes = []
        try:
            yield
            self.flush()
        finally:
            batches.writes = None

    def flush(self) -> None:
        """Commit the writes this thread's batch holds, if any, in one transaction."""
        batches = self._file.batches
        writes = getattr(batches, "writes", None)
        if not writes:
            return
        batches.writes = []
        try:  # the rows a batch upserts are new, but for a node re-run after a crash
            with self.transaction(), self._file.connection(False) as con:
                apply(con, writes, look_up=False)
        except duckdb.ConstraintException:  # one exists: the same writes, keys looked up
            with self.transaction(), self._file.connection(False) as con:
                apply(con, writes)

    def _write(self, write: Write) -> None:
        """Apply `write` now, or hold it for the thread's batch."""
        held = getattr(self._file.batches, "writes", None)
        if held is not None:
            held.append(write)
            return
        with self._file.connection(False) as con, self._file.write_lock:
            apply(con, [write])

    def _write_at_once(self, write: Write) -> None:
        """Apply `write` and commit it now, even inside a batch, whose held writes stay
        held: what readers must see while the batch's work goes on (memory.in_flight)."""
        with self._file.connection(False) as con, self._file.write_lock:
            apply(con, [write])

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        """A row that is always new: a plain INSERT costs a fraction of an upsert."""
        self._write(Insert(table, encoded(row)))

    def _upsert(self, table: str, key: str, row: dict[str, Any]) -> None:
        keys = tuple(k.strip() for k in key.split(","))  # one key column, or several
        self._write(Upsert(table, keys, encoded(row)))

    def _update(self, table: str, key: str, key_value: str, fields: dict[str, Any]) -> None:
        values = encoded(fields)
        sets = ", ".join(f"{c} = ?" for c in values)
        sql = f"UPDATE {table} SET {sets} WHERE {key} = ?"
        self._write(lambda con: con.execute(sql, [*values.values(), key_value]))

    def _execute(self, sql: str, params: list[Any] | None = None) -> None:
        """A write of SQL that no helper above writes (memory.reviews)."""
        self._write(lambda con: con.execute(sql, params or []))

    def read_only_sql(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Anyone's SQL, on a read-only connection: DuckDB itself refuses writes."""
        with self.connect(read_only=True) as con:
            try:
                cursor = con.execute(sql)
            except duckdb.Error as e:
                if is_corruption(e):
                    raise  # the connection says what to do
                raise ArchlabError(f"query failed: {e}") from None
            columns = [d[0] for d in cursor.description or []]
            return columns, cursor.fetchall()
