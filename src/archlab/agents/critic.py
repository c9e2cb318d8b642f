"""The critic: judges a trained candidate against its parents and the baseline, and
leaves an insight for later proposals.

This offline critic compares single proxy scores; seed-aware intervals come with the
confirm stage."""

from __future__ import annotations

from typing import Any

from archlab.agents.state import RunContext


def critique(ctx: RunContext, candidate: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
    plan = candidate["plan"]
    if outcome["status"] != "ok":
        return {
            "verdict": "reject",
            "reason": f"{outcome['status']}: {outcome['error_class']}: {outcome['message']}",
            "insight": f"{plan['operator']} '{plan.get('summary', plan['hypothesis'])}' "
            f"failed with {outcome['error_class']}",
        }
    score = outcome["score"]
    references = _reference_scores(ctx, candidate)
    if not references:
        return {
            "verdict": "accept",
            "reason": f"first scored candidate: {score:.4f}",
            "insight": None,
        }
    name, best = max(references, key=lambda r: r[1])
    delta = score - best
    verdict = "accept" if delta > 0 else "reject"
    relation = "beats" if delta > 0 else "does not beat"
    return {
        "verdict": verdict,
        "reason": f"{score:.4f} {relation} {name} ({best:.4f}, {delta:+.4f})",
        "insight": f"{plan['hypothesis']} -> {ctx.task.score_name} {delta:+.4f} vs {name}",
    }


def _reference_scores(ctx: RunContext, candidate: dict[str, Any]) -> list[tuple[str, float]]:
    refs = []
    for parent_id in candidate["parents"]:
        parent = ctx.memory.get_candidate(parent_id)
        if parent["score"] is not None:
            refs.append((f"parent {parent_id}", float(parent["score"])))
    if not refs:
        baseline = ctx.memory.baseline(ctx.task_fingerprint)
        if (
            baseline
            and baseline["score"] is not None
            and baseline["candidate_id"] != candidate["candidate_id"]
        ):
            refs.append(("the baseline", float(baseline["score"])))
    return refs
