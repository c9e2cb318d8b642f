"""`archlab rm RUN`: delete a run and everything that is only its own, in one transaction,
then its files. A candidate another run builds on (a parent, directly or further up, the
original of a duplicate, or the task's baseline or random samples that other runs compare
with) is not only its own: it stays, with its trials, checks, verdict and weights."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

from archlab.errors import ArchlabError
from archlab.memory import leases, queries
from archlab.memory.store import Memory

#: tables whose rows belong to a run by their run_id (a kept candidate's own rows excepted)
_RUN_TABLES = ("llm_calls", "spans", "reviews", "notes", "in_flight", "run_changes")
#: tables whose rows belong to a candidate
_CANDIDATE_TABLES = ("checks", "trials", "verdicts", "weights")


@dataclass(frozen=True)
class Removal:
    """What removing a run deletes and keeps."""

    run: dict[str, Any]
    deleted: list[str]  # candidate ids
    kept: list[str]  # candidate ids other runs build on


def plan_removal(memory: Memory, run_ref: str) -> Removal:
    run = memory.get_run(run_ref)
    if run["status"] == "running":
        raise ArchlabError(f"run {run['run_id']} is running: stop it before removing it")
    run_id = run["run_id"]
    rows = memory._query("SELECT candidate_id, parents FROM candidates WHERE run_id = ?", [run_id])
    own = {row["candidate_id"]: row["parents"] for row in rows}
    used = memory._query(
        "SELECT DISTINCT p.id FROM candidates c, "
        "unnest(CAST(c.parents AS VARCHAR[]) || [c.duplicate_of]) AS p(id) WHERE c.run_id <> ?",
        [run_id],
    )
    kept = {row["id"] for row in used} & own.keys()
    others = memory._query("SELECT DISTINCT task_fingerprint FROM runs WHERE run_id <> ?", [run_id])
    for row in others:  # the baseline and the yardstick other runs of its task compare with
        fingerprint = row["task_fingerprint"]
        kept |= own.keys() & queries.random_samples_drawn(memory, fingerprint)
        kept |= own.keys() & {memory.baseline_id(fingerprint)}
    todo = list(kept)
    while todo:  # a kept candidate keeps its lineage
        for parent in own.get(todo.pop(), []):
            if parent in own and parent not in kept:
                kept.add(parent)
                todo.append(parent)
    return Removal(run, sorted(own.keys() - kept), sorted(kept))


def remove_run(memory: Memory, removal: Removal) -> None:
    """Delete the rows in one transaction, then the run's trial directory and lease and the
    deleted candidates' weights files (its checkpoints: orchestration.lanes.forget)."""
    run_id = removal.run["run_id"]
    home = memory.path.parent
    weights = memory._query("SELECT candidate_id, path FROM weights WHERE run_id = ?", [run_id])
    files = [home / w["path"] for w in weights if w["candidate_id"] in removal.deleted]
    marks = ", ".join("?" for _ in removal.deleted) or "NULL"
    with memory.transaction():
        for table in _CANDIDATE_TABLES:
            memory._execute(f"DELETE FROM {table} WHERE candidate_id IN ({marks})", removal.deleted)
        memory._execute(f"DELETE FROM candidates WHERE candidate_id IN ({marks})", removal.deleted)
        for table in _RUN_TABLES:
            memory._execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        memory._execute("DELETE FROM runs WHERE run_id = ?", [run_id])
    for file in files:
        file.unlink(missing_ok=True)
    shutil.rmtree(home / "trials" / run_id, ignore_errors=True)
    leases.forget(home, run_id)
