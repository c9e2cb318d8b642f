"""The stages in flight of a live run, for readers in other processes (the web UI): each
node writes its rows in one batch at its end (memory.database), so without these a reader
would learn of a trial only once it had finished.

A row is written when a stage starts (verify, review, proxy, confirm, scale) and committed
at once, apart from the node's held writes; it is deleted with those writes when the
stage ends, at no commit of its own. A run that was killed leaves its rows until it
resumes or ends (`forget`), and readers show them only while a process drives the run.
Rows of this table are deleted, never upserted (memory.writes looks up upserts' keys
without a transaction on that ground)."""

from __future__ import annotations

import secrets
from typing import Any

from archlab.memory.store import Memory, now
from archlab.memory.writes import Insert


def mark(memory: Memory, run_id: str, lane: int, candidate_id: str | None, stage: str) -> str:
    """Say that `stage` of `candidate_id` (None: the run's conclusion) started, now; the
    marker's id, for `clear`."""
    marker_id = secrets.token_hex(8)
    row = {
        "marker_id": marker_id,
        "run_id": run_id,
        "lane": lane,
        "candidate_id": candidate_id,
        "stage": stage,
        "started_at": now(),
    }
    memory._write_at_once(Insert("in_flight", row))
    return marker_id


def clear(memory: Memory, marker_id: str) -> None:
    """The stage `mark` said started has ended (committed with the thread's batch, if any)."""
    memory._execute("DELETE FROM in_flight WHERE marker_id = ?", [marker_id])


def forget(memory: Memory, run_id: str) -> None:
    """Drop what a run left in flight (when it resumes or ends: nothing of it runs)."""
    memory._execute("DELETE FROM in_flight WHERE run_id = ?", [run_id])


def of_run(memory: Memory, run_id: str) -> list[dict[str, Any]]:
    """The run's stages in flight (lane, candidate_id, stage, started_at), by lane."""
    return memory._query(
        "SELECT lane, candidate_id, stage, started_at FROM in_flight WHERE run_id = ? "
        "ORDER BY lane, started_at",
        [run_id],
    )
