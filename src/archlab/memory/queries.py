"""Context for prompts, from the memory, bounded: however many candidates the memory holds,
each query returns a fixed number of rows with capped text, so a prompt stays the same
size at ten candidates and at ten thousand."""

from __future__ import annotations

import json
import re
from typing import Any

from archlab.memory.store import Memory

#: the best candidates shown with metrics (and code in design mode)
N_BEST = 3
#: further candidates spread over the ranks below the best, for diversity
N_DIVERSE = 3
#: how deep the diverse picks reach into the ranking
DIVERSE_POOL = 50
N_FAILURES = 5
N_INSIGHTS = 8
LINEAGE_DEPTH = 5
CODE_CHARS = 8000
TEXT_CHARS = 400

_COLUMNS = (
    "candidate_id, parents, plan, genome, status, error_class, message, score, metrics, "
    "n_params, brain, created_at"
)


def clip(text: str | None, limit: int = TEXT_CHARS) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 20] + f" [... {len(text)} chars]"


def summary(plan: dict[str, Any]) -> str:
    return clip(plan.get("summary") or plan.get("hypothesis"), 200)


def _entry(row: dict[str, Any], code: str | None = None) -> dict[str, Any]:
    """One candidate as prompts show it."""
    plan = row["plan"] or {}
    metrics = row["metrics"] or {}
    return {
        "id": row["candidate_id"],
        "parents": row["parents"],
        "status": row["status"],
        "score": row["score"],
        "n_params": row["n_params"],
        "metrics": {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)},
        "summary": summary(plan),
        "hypothesis": clip(plan.get("hypothesis")),
        "genome": json.dumps(row["genome"], separators=(",", ":")) if row["genome"] else None,
        "error": f"{row['error_class']}: {clip(row['message'])}" if row["error_class"] else None,
        "code": clip(code, CODE_CHARS) if code is not None else None,
    }


def ranked(
    memory: Memory, task_fingerprint: str, with_code: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The best candidates (with their code in design mode), and candidates at evenly spaced
    ranks below them, skipping repeats of what the prompt shows: one query for both."""
    source = ", source" if with_code else ""
    rows = memory.query(
        f"SELECT {_COLUMNS}{source} FROM candidates "
        "WHERE task_fingerprint = ? AND status = 'ok' AND score IS NOT NULL "
        "ORDER BY score DESC, created_at LIMIT ?",
        [task_fingerprint, N_BEST + DIVERSE_POOL],
    )
    best = [_entry(r, r.get("source")) for r in rows[:N_BEST]]
    seen = {e["summary"] for e in best}
    fresh = []
    for row in rows[N_BEST:]:
        entry = _entry(row)
        if entry["summary"] not in seen:
            seen.add(entry["summary"])
            fresh.append(entry)
    stride = max(len(fresh) / N_DIVERSE, 1)
    return best, [fresh[int(i * stride)] for i in range(min(len(fresh), N_DIVERSE))]


def failures(memory: Memory, task_fingerprint: str) -> list[dict[str, Any]]:
    rows = memory.query(
        f"SELECT {_COLUMNS} FROM candidates "
        "WHERE task_fingerprint = ? AND status IN ('failed', 'rejected') "
        "ORDER BY updated_at DESC LIMIT ?",
        [task_fingerprint, N_FAILURES],
    )
    return [_entry(r) for r in rows]


def insights(memory: Memory, task_fingerprint: str) -> list[dict[str, Any]]:
    rows = memory.query(
        "SELECT c.candidate_id, c.score, c.plan, v.verdict, v.insight FROM verdicts v "
        "JOIN candidates c USING (candidate_id) "
        "WHERE c.task_fingerprint = ? AND v.insight IS NOT NULL "
        "ORDER BY v.created_at DESC LIMIT ?",
        [task_fingerprint, N_INSIGHTS],
    )
    return [
        {
            "id": r["candidate_id"],
            "score": r["score"],
            "verdict": r["verdict"],
            "summary": summary(r["plan"] or {}),
            "insight": clip(r["insight"]),
        }
        for r in rows
    ]


def lineage(memory: Memory, candidate_id: str) -> list[dict[str, Any]]:
    """The candidate and its first-parent ancestors, nearest first."""
    rows = memory.query(
        "WITH RECURSIVE chain(candidate_id, depth) AS ("
        "  SELECT ?, 0"
        "  UNION ALL"
        "  SELECT json_extract_string(c.parents, '$[0]'), chain.depth + 1"
        "  FROM chain JOIN candidates c ON c.candidate_id = chain.candidate_id"
        "  WHERE chain.depth < ? AND json_array_length(c.parents) > 0"
        f") SELECT {', '.join('c.' + col for col in _COLUMNS.split(', '))}, v.verdict, v.reason "
        "FROM chain JOIN candidates c USING (candidate_id) "
        "LEFT JOIN verdicts v USING (candidate_id) ORDER BY chain.depth",
        [candidate_id, LINEAGE_DEPTH],
    )
    return [{**_entry(r), "verdict": r["verdict"], "reason": clip(r["reason"])} for r in rows]


def totals(memory: Memory, task_fingerprint: str) -> dict[str, Any]:
    (row,) = memory.query(
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
    rows = memory.query(
        "SELECT candidate_id FROM candidates WHERE task_fingerprint = ? "
        "AND list_contains(?, candidate_id)",
        [task_fingerprint, ids],
    )
    return {r["candidate_id"] for r in rows}


def with_genome(memory: Memory, task_fingerprint: str, genome_key: str) -> str | None:
    """The id of a candidate with this genome (see Genome.key), if any."""
    rows = memory.query(
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
    rows = memory.query(
        "SELECT candidate_id FROM candidates WHERE task_fingerprint = ? "
        "AND trim(regexp_replace(lower(plan->>'$.summary'), '[^a-z0-9]+', ' ', 'g')) = ? "
        "LIMIT 1",
        [task_fingerprint, key],
    )
    return rows[0]["candidate_id"] if rows else None


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def planner_context(memory: Memory, task_fingerprint: str, with_code: bool) -> dict[str, Any]:
    with memory.connect():  # one open of the file for all the queries below
        top, diverse = ranked(memory, task_fingerprint, with_code)
        return {
            "totals": totals(memory, task_fingerprint),
            "best": top,
            "diverse": diverse,
            "failures": failures(memory, task_fingerprint),
            "insights": insights(memory, task_fingerprint),
            "lineage": lineage(memory, top[0]["id"])[1:] if top else [],
        }
