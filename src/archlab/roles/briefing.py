"""The roles' view of the memory: what the planner's and the critic's prompts show of it,
bounded. However many candidates the memory holds, each part has a fixed number of
entries with capped text (memory.queries reads them), so a prompt stays the same size at
ten candidates and at ten thousand."""

from __future__ import annotations

import json
from typing import Any

from archlab.memory import queries
from archlab.memory.store import Memory
from archlab.records import final_verdict, plan_title

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


def clip(text: str | None, limit: int = TEXT_CHARS) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 20] + f" [... {len(text)} chars]"


def summary(plan: dict[str, Any]) -> str:
    return clip(plan_title(plan), 200)


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
    rows = queries.ranked(memory, task_fingerprint, with_code, N_BEST + DIVERSE_POOL)
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
    return [_entry(r) for r in queries.failures(memory, task_fingerprint, N_FAILURES)]


def insights(memory: Memory, task_fingerprint: str) -> list[dict[str, Any]]:
    return [
        {
            "id": r["candidate_id"],
            "score": r["score"],
            "verdict": final_verdict(r["verdict"]) or "none",
            "summary": summary(r["plan"] or {}),
            "insight": clip(r["insight"]),
        }
        for r in queries.insights(memory, task_fingerprint, N_INSIGHTS)
    ]


def lineage(memory: Memory, candidate_id: str) -> list[dict[str, Any]]:
    """The candidate and its first-parent ancestors, nearest first."""
    rows = queries.lineage(memory, candidate_id, LINEAGE_DEPTH)
    return [
        {**_entry(r), "verdict": final_verdict(r["verdict"]) or "none", "reason": clip(r["reason"])}
        for r in rows
    ]


def planner_context(memory: Memory, task_fingerprint: str, with_code: bool) -> dict[str, Any]:
    with memory.connect():  # one open of the file for all the queries below
        top, diverse = ranked(memory, task_fingerprint, with_code)
        return {
            "totals": queries.totals(memory, task_fingerprint),
            "best": top,
            "diverse": diverse,
            "failures": failures(memory, task_fingerprint),
            "insights": insights(memory, task_fingerprint),
            "lineage": lineage(memory, top[0]["id"])[1:] if top else [],
        }


def shown_ids(context: dict[str, Any]) -> list[str]:
    """The candidate ids a planner context shows, in order: those a plan may build on."""
    ids: list[str] = []
    for part in ("best", "diverse", "failures", "insights", "lineage"):
        ids.extend(e["id"] for e in context[part] if e["id"] not in ids)
    return ids


def shortened(context: dict[str, Any]) -> dict[str, Any] | None:
    """The planner context with half of each part's entries (the best kept first), for a
    server whose context it overflowed; None once there is nothing left to leave out."""
    parts = ("best", "diverse", "failures", "insights", "lineage")
    if not any(context[part] for part in parts):
        return None
    return {**context, **{part: context[part][: len(context[part]) // 2] for part in parts}}
