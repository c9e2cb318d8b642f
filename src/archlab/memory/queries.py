"""What planning reads from the memory, bounded: each read returns at most the rows asked
for, by the task's indexed columns, so it costs about the same at ten candidates and at
ten thousand (roles.briefing shapes the rows into prompts)."""

from __future__ import annotations

import re
from typing import Any

from archlab.memory.store import Memory

#: the candidate columns a prompt shows
_COLUMNS = (
    "candidate_id, parents, plan, genome, status, error_class, message, score, metrics, "
    "n_params, brain, created_at"
)


def ranked(
    memory: Memory, task_fingerprint: str, with_code: bool, limit: int
) -> list[dict[str, Any]]:
    """The task's best scored candidates, best first (with their source in design mode)."""
    source = ", source" if with_code else ""
    return memory._query(
        f"SELECT {_COLUMNS}{source} FROM candidates "
        "WHERE task_fingerprint = ? AND status = 'ok' AND score IS NOT NULL "
        "ORDER BY score DESC, created_at LIMIT ?",
        [task_fingerprint, limit],
    )


def failures(memory: Memory, task_fingerprint: str, limit: int) -> list[dict[str, Any]]:
    """The task's latest failed or rejected candidates."""
    return memory._query(
        f"SELECT {_COLUMNS} FROM candidates "
        "WHERE task_fingerprint = ? AND status IN ('failed', 'rejected') "
        "ORDER BY updated_at DESC LIMIT ?",
        [task_fingerprint, limit],
    )


def insights(memory: Memory, task_fingerprint: str, limit: int) -> list[dict[str, Any]]:
    """The critic's latest insights on the task's candidates, with the candidate's plan."""
    return memory._query(
        "SELECT c.candidate_id, c.score, c.plan, v.verdict, v.insight FROM verdicts v "
        "JOIN candidates c USING (candidate_id) "
        "WHERE c.task_fingerprint = ? AND v.insight IS NOT NULL "
        "ORDER BY v.created_at DESC LIMIT ?",
        [task_fingerprint, limit],
    )


def lineage(memory: Memory, candidate_id: str, depth: int) -> list[dict[str, Any]]:
    """The candidate and its first-parent ancestors, nearest first, with their verdicts."""
    return memory._query(
        "WITH RECURSIVE chain(candidate_id, depth) AS ("
        "  SELECT ?, 0"
        "  UNION ALL"
        "  SELECT json_extract_string(c.parents, '$[0]'), chain.depth + 1"
        "  FROM chain JOIN candidates c ON c.candidate_id = chain.candidate_id"
        "  WHERE chain.depth < ? AND json_array_length(c.parents) > 0"
        f") SELECT {', '.join('c.' + col for col in _COLUMNS.split(', '))}, v.verdict, v.reason "
        "FROM chain JOIN candidates c USING (candidate_id) "
        "LEFT JOIN verdicts v USING (candidate_id) ORDER BY chain.depth",
        [candidate_id, depth],
    )


def totals(memory: Memory, task_fingerprint: str) -> dict[str, Any]:
    (row,) = memory._query(
        "SELECT count(*) AS candidates, count(*) FILTER (status = 'ok') AS ok, "
        "count(*) FILTER (status IN ('failed', 'rejected')) AS failed, "
        "max(score) AS best_score FROM candidates WHERE task_fingerprint = ?",
        [task_fingerprint],
    )
    return row


def known_ids(memory: Memory, task_fingerprint: str, ids: list[str]) -> set[str]:
    """Which of `ids` are candidates of this task."""
    if not ids:
        return set()
    rows = memory._query(
        "SELECT candidate_id FROM candidates WHERE task_fingerprint = ? "
        "AND list_contains(?, candidate_id)",
        [task_fingerprint, ids],
    )
    return {r["candidate_id"] for r in rows}


def with_genome(memory: Memory, task_fingerprint: str, genome_key: str) -> str | None:
    """The id of a candidate with this genome (see Genome.key), if any."""
    rows = memory._query(
        "SELECT candidate_id FROM candidates WHERE task_fingerprint = ? AND genome_key = ? LIMIT 1",
        [task_fingerprint, genome_key],
    )
    return rows[0]["candidate_id"] if rows else None


class KnownGenomes:
    """`key in known`: whether the memory holds a candidate with that genome, asked one key
    at a time, so a novelty check costs the same with 10 candidates or 100,000. One is made
    per planning step and keeps its answers: the step asks about its pick more than once;
    the next step's sees what was saved since."""

    def __init__(self, memory: Memory, task_fingerprint: str) -> None:
        self.memory, self.task_fingerprint = memory, task_fingerprint
        self._answers: dict[str, bool] = {}

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        if key not in self._answers:
            found = with_genome(self.memory, self.task_fingerprint, key)
            self._answers[key] = found is not None
        return self._answers[key]


def same_summary(memory: Memory, task_fingerprint: str, text: str) -> str | None:
    """The id of a candidate whose plan summary matches `text` up to case and punctuation."""
    key = normalize(text)
    rows = memory._query(
        "SELECT candidate_id FROM candidates WHERE task_fingerprint = ? "
        "AND trim(regexp_replace(lower(plan->>'$.summary'), '[^a-z0-9]+', ' ', 'g')) = ? "
        "LIMIT 1",
        [task_fingerprint, key],
    )
    return rows[0]["candidate_id"] if rows else None


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def learning_curves(memory: Memory, task_fingerprint: str, horizon: tuple[str, int]) -> list[Any]:
    """Held-out curves of the task's whole trials at the proxy budget (proxy and confirm
    seeds), but those of the `horizon` run's steps after its step."""
    run_id, step = horizon
    rows = memory._query(
        "SELECT t.curve FROM trials t JOIN candidates c USING (candidate_id) "
        "WHERE c.task_fingerprint = ? AND t.stage IN ('proxy', 'confirm') "
        "AND t.status = 'ok' AND t.curve IS NOT NULL "
        "AND NOT (c.run_id = ? AND coalesce(c.step, 0) > ?)",
        [task_fingerprint, run_id, step],
    )
    return [row["curve"] for row in rows]


def random_samples_drawn(memory: Memory, task_fingerprint: str) -> set[str]:
    """The ids of the task's yardstick samples, whatever became of them."""
    rows = memory._query(
        "SELECT candidate_id FROM candidates WHERE task_fingerprint = ? AND origin = 'random'",
        [task_fingerprint],
    )
    return {row["candidate_id"] for row in rows}


def history(
    memory: Memory, task_fingerprint: str, horizon: tuple[str, int], limit: int
) -> list[dict[str, Any]]:
    """The task's last `limit` settled candidates in the order they were proposed (failed
    ones with no score), but those of the `horizon` run's steps after its step: what
    regularized evolution's population and TPE's study are rebuilt from."""
    run_id, step = horizon
    rows = memory._query(
        "SELECT candidate_id, score, genome FROM candidates "
        "WHERE task_fingerprint = ? AND status NOT IN ('pending', 'duplicate') "
        "AND NOT (run_id = ? AND coalesce(step, 0) > ?) "
        "ORDER BY created_at DESC, candidate_id DESC LIMIT ?",
        [task_fingerprint, run_id, step, limit],
    )
    return rows[::-1]
