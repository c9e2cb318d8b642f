"""The critic: judges a trained candidate against its parents and the baseline, and
leaves an insight for later proposals.

Whether a trained candidate is accepted is decided by the verification ladder's seed
statistics (roles/ladder.py), never by the critic: the critic explains that decision. A
critic model also reads the curve and the code (a diff against the parent), checks that
the code does what the plan said, and leaves an insight for later proposals. A failed
candidate is never accepted: it is rejected, or, in design mode while repairs remain, sent
back to the coder with its error."""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, Field

from archlab.eval.stats import Judgement
from archlab.llm.answers import prose
from archlab.llm.brains import HEURISTIC, Asker
from archlab.llm.client import NoAnswer, Question
from archlab.prompts import task_brief
from archlab.records import Candidate, Outcome, Verdict, plan_title
from archlab.roles.briefing import CODE_CHARS, clip
from archlab.roles.context import RunContext
from archlab.search.genome import genome_changes, genome_of

#: failures that another coding attempt cannot fix
_NOT_REPAIRABLE = {"duplicate", "answer", "review"}


class Critique(BaseModel):
    analysis: str = prose(
        "the result against the parents and the baseline: is the difference "
        "larger than one seed's noise, what does the curve add, what did it cost?",
        500,
    )
    implements_plan: bool = Field(description="whether the code does what the plan says")
    verdict: Literal["accept", "reject", "repair"]
    reason: str = prose("the verdict's reason, in one line", 200)
    insight: str = prose("one sentence that later proposals should know", 200)


def can_repair(ctx: RunContext, candidate: Candidate) -> bool:
    """Design mode sends a model-written candidate back to its coder a bounded number of times."""
    return (
        ctx.settings.run.mode == "design"
        and candidate.get("origin") == "proposed"
        and candidate.get("genome") is None
        and ctx.brains.coder.writes_code
        and candidate.get("repair", 0) < ctx.settings.run.max_repairs
    )


def critique(
    ctx: RunContext,
    candidate: Candidate,
    outcome: Outcome,
    decision: Judgement | None = None,
) -> Verdict:
    """The verdict on a candidate; for a trained one, `decision` is the ladder's."""
    repairable = can_repair(ctx, candidate)
    problem = _repairable_failure(ctx, outcome)
    if problem and repairable:
        return {"verdict": "repair", "reason": problem, "insight": None, "brain": HEURISTIC}
    if outcome["status"] != "ok" or decision is None:
        return _failed(candidate, outcome)
    return ctx.brains.critic.judge(ctx, candidate, outcome, decision, repairable)


class HeuristicCritic:
    """The offline critic: the ladder's decision, as it is."""

    def judge(
        self,
        ctx: RunContext,
        candidate: Candidate,
        outcome: Outcome,
        decision: Judgement,
        repairable: bool,
    ) -> Verdict:
        return _heuristic(ctx, candidate, outcome, decision)


class ModelCritic:
    """A model (or a replayed run) reads the curve and the code and explains the ladder's
    decision; without a usable answer the heuristic's verdict stands."""

    def __init__(self, asker: Asker) -> None:
        self.asker = asker

    def judge(
        self,
        ctx: RunContext,
        candidate: Candidate,
        outcome: Outcome,
        decision: Judgement,
        repairable: bool,
    ) -> Verdict:
        try:
            return _ask_model(ctx, self.asker, candidate, outcome, repairable, decision)
        except NoAnswer as e:
            verdict = _heuristic(ctx, candidate, outcome, decision)
            return {**verdict, "analysis": f"the critic model gave no usable answer: {e}"}


def _repairable_failure(ctx: RunContext, outcome: Outcome) -> str | None:
    """What went wrong, if another coding attempt might fix it; a duplicate of code that
    failed before counts as that failure."""
    if outcome["status"] in ("failed", "rejected"):
        if outcome["error_class"] in _NOT_REPAIRABLE:
            return None
        return f"{outcome['error_class']}: {outcome['message']}"
    original_id = outcome.get("duplicate_of")
    if outcome["status"] == "duplicate" and outcome.get("score") is None and original_id:
        original = ctx.memory.candidates_by_id([original_id]).get(original_id)
        if original and original["error_class"]:
            return (
                f"{original['error_class']}: {original['message']} (this code already failed "
                f"as {original['candidate_id']})"
            )
    return None


def _failed(candidate: Candidate, outcome: Outcome) -> Verdict:
    plan = candidate["plan"]
    if outcome["status"] == "stopped":  # the message says why: its curve could not catch up
        reason, what = str(outcome["message"]), "was stopped early"
    else:
        reason = f"{outcome['status']}: {outcome['error_class']}: {outcome['message']}"
        what = f"failed with {outcome['error_class']}"
    return {
        "verdict": "reject",
        "reason": reason,
        "insight": f"{plan['operator']} '{plan_title(plan)}' {what}",
        "brain": HEURISTIC,
    }


def _heuristic(
    ctx: RunContext, candidate: Candidate, outcome: Outcome, decision: Judgement
) -> Verdict:
    return {
        "verdict": decision.verdict,
        "reason": decision.reason,
        "insight": _lesson(ctx, candidate, outcome),
        "brain": HEURISTIC,
    }


def _lesson(ctx: RunContext, candidate: Candidate, outcome: Outcome) -> str:
    """What the result teaches later proposals (the verdict says whether it is kept): which
    change moved the score, by how much, against which reference (the first scored parent,
    else the baseline); in compose mode the change is the genome's."""
    plan = candidate["plan"]
    idea = f"{plan['operator']} '{plan_title(plan)}'"
    score = outcome["score"]
    scored = [r for r in _references(ctx, candidate) if r["score"] is not None]
    if score is None or not scored:
        return f"{idea} scored {'-' if score is None else f'{score:.4f}'}, with nothing to compare"
    ref = scored[0]
    changes = genome_changes(genome_of(ref), candidate.get("genome"))
    what = f"{idea} ({'; '.join(changes)})" if changes else idea
    return (
        f"{what} moved the score {score - ref['score']:+.4f} "
        f"({ref['score']:.4f} -> {score:.4f}) against {ref['name']}"
    )


def _references(ctx: RunContext, candidate: Candidate) -> list[dict[str, Any]]:
    """The scored parents, then the baseline (unless it is the candidate itself or a
    parent), read in one query."""
    parents = candidate["parents"]
    baseline = ctx.baseline_id()
    if baseline in (candidate["candidate_id"], *parents):
        baseline = None
    rows = ctx.memory.candidates_by_id([*parents, *([baseline] if baseline else [])])
    named = [(p, "parent", f"parent {p}") for p in parents]
    named += [(baseline, "baseline", "the baseline")] if baseline else []
    return [
        {"kind": kind, "name": name, "id": cid, **rows[cid]}
        for cid, kind, name in named
        if cid in rows and rows[cid]["score"] is not None
    ]


def _ask_model(
    ctx: RunContext,
    asker: Asker,
    candidate: Candidate,
    outcome: Outcome,
    repairable: bool,
    decision: Judgement,
) -> Verdict:
    prompts = ctx.brains.prompts
    references = _references(ctx, candidate)
    parents = [r for r in references if r["kind"] == "parent"]
    source = candidate["source"]
    if parents:
        diff = difflib.unified_diff(
            parents[0]["source"].splitlines(),
            source.splitlines(),
            f"parent {parents[0]['id']}",
            f"candidate {candidate['candidate_id']}",
            lineterm="",
        )
        code = "\n".join(diff)
    else:
        code = source
    proxy = [t for t in ctx.memory.trials(candidate["candidate_id"]) if t["stage"] == "proxy"]
    curve = [
        ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())
        for p in ((proxy[-1]["curve"] or []) if proxy else [])
    ]
    plan = candidate["plan"]
    prompt = prompts.render(
        "critic.j2",
        task=task_brief(ctx.task),
        plan=plan,
        summary=plan_title(plan),
        outcome=outcome,
        curve=curve,
        references=references,
        code=clip(code, CODE_CHARS),
        diff_against=bool(parents),
        can_repair=repairable,
        decision=decision,
    )
    answer = asker.ask(
        Question(
            role="critic",
            purpose="critique",
            messages=[
                {"role": "system", "content": prompts.render("critic_system.j2")},
                {"role": "user", "content": prompt},
            ],
            answer=Critique,
            candidate_id=candidate["candidate_id"],
            step=candidate.get("step", 0),
            repair=candidate.get("repair", 0),
        )
    )
    # The model's own verdict is advice: the ladder's seed statistics decide.
    return {
        "verdict": decision.verdict,
        "reason": decision.reason,
        "insight": answer.insight,
        "analysis": f"{answer.analysis}\nThe critic model's verdict: {answer.verdict} "
        f"({answer.reason})."
        + ("" if answer.implements_plan else "\nThe code does not implement the plan."),
        "brain": asker.brain,
    }
