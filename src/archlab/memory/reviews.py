"""The human in the loop, as the memory keeps it: reviews a run waits on before training
(`archlab run --review`, `archlab approve|reject`) and notes that steer its planner
(`archlab steer`). Written by one process and read by another, through the memory."""

from __future__ import annotations

import uuid
from typing import Any

from archlab.errors import ArchlabError
from archlab.memory.store import Memory, now


def request_review(memory: Memory, run_id: str, candidate_id: str) -> None:
    """Ask for a decision on `candidate_id`; asking again (a resumed run) changes nothing."""
    memory._execute(
        "INSERT INTO reviews (candidate_id, run_id, requested_at) VALUES (?, ?, ?) "
        "ON CONFLICT (candidate_id) DO NOTHING",
        [candidate_id, run_id, now()],
    )


def review_of(memory: Memory, candidate_id: str) -> dict[str, Any] | None:
    rows = memory._query("SELECT * FROM reviews WHERE candidate_id = ?", [candidate_id])
    return rows[0] if rows else None


def waiting(memory: Memory, run_id: str) -> list[str]:
    """The candidates of the run that wait for a decision, oldest first."""
    rows = memory._query(
        "SELECT candidate_id FROM reviews WHERE run_id = ? AND decision IS NULL "
        "ORDER BY requested_at",
        [run_id],
    )
    return [r["candidate_id"] for r in rows]


def decide(
    memory: Memory, run_id: str, decision: str, candidate_id: str | None, reason: str | None
) -> list[str]:
    """Approve or reject the waiting candidate given (or every waiting one); return them."""
    pending = waiting(memory, run_id)
    if candidate_id is not None:
        chosen = [c for c in pending if c.startswith(candidate_id)]
        if len(chosen) != 1:
            what = "nothing" if not chosen else f"{len(chosen)} candidates"
            raise ArchlabError(
                f"{what} of run {run_id} waiting for review matches '{candidate_id}' "
                f"(waiting: {', '.join(pending) or 'none'})"
            )
    elif not pending:
        raise ArchlabError(f"nothing of run {run_id} waits for review")
    else:
        chosen = pending
    for cid in chosen:
        memory._execute(
            "UPDATE reviews SET decision = ?, reason = ?, decided_at = ? "
            "WHERE candidate_id = ? AND decision IS NULL",
            [decision, reason, now(), cid],
        )
    return chosen


def add_note(memory: Memory, run_id: str, note: str) -> str:
    note = note.strip()
    if not note:
        raise ArchlabError("a steering note needs some text")
    note_id = uuid.uuid4().hex[:12]
    memory._execute("INSERT INTO notes VALUES (?, ?, ?, ?)", [note_id, run_id, note, now()])
    return note_id


def notes(memory: Memory, run_id: str) -> list[str]:
    """The run's steering notes, oldest first (a later note overrides an earlier one)."""
    rows = memory._query(
        "SELECT note FROM notes WHERE run_id = ? ORDER BY created_at, note_id", [run_id]
    )
    return [r["note"] for r in rows]
