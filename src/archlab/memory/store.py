"""DuckDB experience memory.

DuckDB lets one process hold a database file open for writing, and then no other process
can open it. Every operation therefore opens a short-lived connection and retries while
another process holds the lock, so runs, the CLI and the UI can share one file.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from archlab.errors import ArchlabError, MemoryCorruptError

MEMORY_FILE = "memory.duckdb"
_LOCK_RETRY_S = 30.0
_JSON_COLUMNS = {"config", "parents", "plan", "genome", "metrics", "budget", "curve", "loss_curve"}
_JSON_COLUMNS |= {"request", "response", "answer"}  # llm_calls
_JSON_COLUMNS |= {"details", "fitness", "seeds", "summary"}  # the verification ladder


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


def _is_lock_error(e: duckdb.Error) -> bool:
    return "lock" in str(e).lower()


def _row_dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    columns = [d[0] for d in cursor.description or []]
    rows = []
    for values in cursor.fetchall():
        row = dict(zip(columns, values, strict=True))
        for key in _JSON_COLUMNS & row.keys():
            if isinstance(row[key], str):
                row[key] = json.loads(row[key])
        rows.append(row)
    return rows


class Memory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._held = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    @classmethod
    def open_existing(cls, path: Path) -> Memory:
        """For readers: a missing memory is an error, not a reason to create one."""
        if not path.exists():
            raise ArchlabError(f"no memory at {path}: nothing has run with this home yet")
        return cls(path)

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one operation. Nested uses in the same thread share the outer
        one, so a caller can batch several queries under one open (`with memory.connect():`)
        and pay the file's open and lock once."""
        held = getattr(self._held, "con", None)
        if held is not None and not read_only:
            yield held
            return
        con = self._open(read_only)
        if not read_only:
            self._held.con = con
        try:
            yield con
        finally:
            if not read_only:
                self._held.con = None
            con.close()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + _LOCK_RETRY_S
        delay = 0.01
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.Error as e:
                if _is_lock_error(e) and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
                if _is_lock_error(e):
                    raise ArchlabError(
                        f"memory {self.path} stayed locked by another process"
                    ) from e
                raise MemoryCorruptError(
                    f"cannot open memory {self.path}: {e}. It is corrupt or not a DuckDB "
                    "database; move it aside to start a fresh memory."
                ) from None

    def _migrate(self) -> None:
        with self.connect() as con:
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
                raise MemoryCorruptError(f"cannot migrate memory {self.path}: {e}") from None

    def schema_version(self) -> int:
        with self.connect() as con:
            row = con.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        with self.connect() as con:
            return _row_dicts(con.execute(sql, params or []))

    def _upsert(self, table: str, key: str, row: dict[str, Any]) -> None:
        values = {
            k: json.dumps(v) if k in _JSON_COLUMNS and v is not None else v for k, v in row.items()
        }
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        keys = {k.strip() for k in key.split(",")}  # one key column, or several
        updates = ", ".join(f"{c} = excluded.{c}" for c in values if c not in keys)
        with self.connect() as con:
            con.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({marks}) "
                f"ON CONFLICT ({key}) DO UPDATE SET {updates}",
                list(values.values()),
            )

    def _update(self, table: str, key: str, key_value: str, fields: dict[str, Any]) -> None:
        values = {
            k: json.dumps(v) if k in _JSON_COLUMNS and v is not None else v
            for k, v in fields.items()
        }
        sets = ", ".join(f"{c} = ?" for c in values)
        with self.connect() as con:
            con.execute(f"UPDATE {table} SET {sets} WHERE {key} = ?", [*values.values(), key_value])

    # --- runs -----------------------------------------------------------------
    def start_run(self, **run: Any) -> None:
        self._upsert("runs", "run_id", {**run, "status": "running", "started_at": now()})

    def resume_run(self, run_id: str) -> None:
        self._update("runs", "run_id", run_id, {"status": "running", "message": None})

    def finish_run(self, run_id: str, status: str, message: str | None = None) -> None:
        self._update(
            "runs", "run_id", run_id, {"status": status, "message": message, "finished_at": now()}
        )

    def runs(self) -> list[dict[str, Any]]:
        return self._query(
            "SELECT r.*, count(c.candidate_id) AS n_candidates, max(c.score) AS best_score "
            "FROM runs r LEFT JOIN candidates c USING (run_id) "
            "GROUP BY ALL ORDER BY r.started_at DESC"
        )

    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run by id or unique id prefix."""
        rows = self._query("SELECT * FROM runs WHERE starts_with(run_id, ?)", [run_id])
        if len(rows) != 1:
            what = "no run" if not rows else f"{len(rows)} runs"
            raise ArchlabError(f"{what} match '{run_id}' (see `archlab runs`)")
        return rows[0]

    # --- candidates -----------------------------------------------------------
    def save_candidate(self, **candidate: Any) -> None:
        stamp = now()
        self._upsert(
            "candidates", "candidate_id", {**candidate, "created_at": stamp, "updated_at": stamp}
        )

    def set_outcome(self, candidate_id: str, **outcome: Any) -> None:
        self._update("candidates", "candidate_id", candidate_id, {**outcome, "updated_at": now()})

    def get_candidate(self, candidate_id: str) -> dict[str, Any]:
        rows = self._query(
            "SELECT * FROM candidates WHERE starts_with(candidate_id, ?)", [candidate_id]
        )
        if len(rows) != 1:
            what = "no candidate" if not rows else f"{len(rows)} candidates"
            raise ArchlabError(f"{what} match '{candidate_id}'")
        return rows[0]

    def candidates(self, run_id: str) -> list[dict[str, Any]]:
        return self._query(
            "SELECT * FROM candidates WHERE run_id = ? ORDER BY score DESC NULLS LAST, created_at",
            [run_id],
        )

    def find_duplicate(
        self, task_fingerprint: str, source_hash: str, ast_hash: str | None
    ) -> dict[str, Any] | None:
        rows = self._query(
            "SELECT * FROM candidates WHERE task_fingerprint = ? "
            "AND status NOT IN ('pending', 'duplicate') "
            "AND (source_hash = ? OR (ast_hash IS NOT NULL AND ast_hash = ?)) "
            "ORDER BY created_at LIMIT 1",
            [task_fingerprint, source_hash, ast_hash],
        )
        return rows[0] if rows else None

    def parent_pool(self, task_fingerprint: str, limit: int = 50) -> list[dict[str, Any]]:
        """The best scored candidates of this exact task, across every run."""
        return self._query(
            "SELECT candidate_id, score, genome FROM candidates "
            "WHERE task_fingerprint = ? AND status = 'ok' AND score IS NOT NULL "
            "ORDER BY score DESC LIMIT ?",
            [task_fingerprint, limit],
        )

    def baseline(self, task_fingerprint: str) -> dict[str, Any] | None:
        rows = self._query(
            "SELECT * FROM candidates WHERE task_fingerprint = ? AND origin = 'baseline' "
            "AND status NOT IN ('pending', 'duplicate') ORDER BY created_at LIMIT 1",
            [task_fingerprint],
        )
        return rows[0] if rows else None

    # --- trials and verdicts --------------------------------------------------
    def save_trial(self, **trial: Any) -> None:
        self._upsert("trials", "trial_id", {**trial, "finished_at": now()})

    def trials(self, candidate_id: str) -> list[dict[str, Any]]:
        return self._query(
            "SELECT * FROM trials WHERE candidate_id = ? ORDER BY finished_at", [candidate_id]
        )

    def save_verdict(self, **verdict: Any) -> None:
        self._upsert("verdicts", "candidate_id", {**verdict, "created_at": now()})

    def verdict(self, candidate_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM verdicts WHERE candidate_id = ?", [candidate_id])
        return rows[0] if rows else None

    # --- the verification ladder ------------------------------------------------
    def save_check(
        self,
        candidate_id: str,
        stage: str,
        status: str,
        error_class: str | None = None,
        message: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Record one ladder stage's outcome (passed, failed or skipped), replacing any earlier."""
        self._upsert(
            "checks",
            "candidate_id, stage",
            {
                "candidate_id": candidate_id,
                "stage": stage,
                "status": status,
                "error_class": error_class,
                "message": message,
                "details": details,
                "checked_at": now(),
            },
        )

    def checks(self, candidate_id: str) -> list[dict[str, Any]]:
        return self._query(
            "SELECT * FROM checks WHERE candidate_id = ? ORDER BY checked_at", [candidate_id]
        )

    def seed_scores(self, candidate_id: str) -> list[float]:
        """Scores of the candidate's proxy-budget trials, one per seed (proxy and confirm)."""
        rows = self._query(
            "SELECT score FROM trials WHERE candidate_id = ? AND stage IN ('proxy', 'confirm') "
            "AND status = 'ok' AND score IS NOT NULL ORDER BY seed",
            [candidate_id],
        )
        return [float(r["score"]) for r in rows]

    def random_sample_scores(self, task_fingerprint: str) -> list[float]:
        """Proxy scores of randomly sampled architectures: the search's honest baseline."""
        rows = self._query(
            "SELECT score FROM candidates WHERE task_fingerprint = ? AND status = 'ok' "
            "AND score IS NOT NULL AND plan->>'operator' = 'random' ORDER BY created_at",
            [task_fingerprint],
        )
        return [float(r["score"]) for r in rows]

    def set_run_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        self._update("runs", "run_id", run_id, {"summary": summary})

    # --- LLM calls and read-only queries ---------------------------------------
    def save_llm_call(self, **call: Any) -> None:
        self._upsert("llm_calls", "call_id", {**call, "created_at": now()})

    def llm_calls(self, run_id: str) -> list[dict[str, Any]]:
        return self._query(
            "SELECT * FROM llm_calls WHERE run_id = ? ORDER BY created_at, attempt, retry",
            [run_id],
        )

    def llm_usage(self, run_id: str) -> tuple[int, float]:
        """Tokens and dollars the run's LLM calls have used so far."""
        rows = self._query(
            "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) AS tokens, "
            "coalesce(sum(cost_usd), 0) AS usd FROM llm_calls WHERE run_id = ?",
            [run_id],
        )
        return int(rows[0]["tokens"]), float(rows[0]["usd"])

    def accepted_answers(self, run_id: str) -> dict[tuple[str, int, int], Any]:
        """The answers a run's roles acted on, by (role, step, repair): what replay re-plays."""
        rows = self._query(
            "SELECT role, step, repair, answer FROM llm_calls "
            "WHERE run_id = ? AND status = 'ok' ORDER BY created_at",
            [run_id],
        )
        return {(r["role"], r["step"], r["repair"]): r["answer"] for r in rows}

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """A read-only query for callers that own their SQL (memory.queries)."""
        return self._query(sql, params)

    # --- spans and ad-hoc SQL ---------------------------------------------------
    def save_span(self, **span: Any) -> None:
        self._upsert("spans", "span_id", span)

    def spans(self, run_id: str) -> list[dict[str, Any]]:
        """The run's graph-node spans (memory.spans derives the LLM and trial spans)."""
        return self._query("SELECT * FROM spans WHERE run_id = ? ORDER BY started_at", [run_id])

    def read_only_sql(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Anyone's SQL, on a read-only connection: DuckDB itself refuses writes."""
        with self.connect(read_only=True) as con:
            try:
                cursor = con.execute(sql)
            except duckdb.Error as e:
                raise ArchlabError(f"query failed: {e}") from None
            columns = [d[0] for d in cursor.description or []]
            return columns, cursor.fetchall()
