"""The records a candidate carries through the graph: its plan, the candidate itself, the
outcome of its stages and the verdict on it.

They are TypedDicts, not classes: LangGraph checkpoints the graph's state as it is, and a
run checkpointed before this module existed must resume unchanged, so the records keep the
plain-dict shape they always had and mypy checks their keys and words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict

#: where a candidate comes from: the task's baseline, a random sample of the search space
#: (the yardstick), a brain's proposal, or a file given to `archlab eval`
#: fallback: the offline brain's proposal for a step whose planner model gave no usable answer
Origin = Literal["baseline", "random", "proposed", "fallback", "manual"]

#: how far a candidate got: `verified` passed the checks before training, `ok` trained
#: and was scored, `stopped` was stopped early (its curve could not catch its reference:
#: scored on the partial curve, never accepted), `duplicate` repeats code the memory holds
#: (its result is reused)
OutcomeStatus = Literal["verified", "ok", "stopped", "failed", "rejected", "duplicate"]

#: the verdict a candidate ends with: `accept` or `reject`, or in design mode `repair` (the
#: failed attempt went back to its coder). A candidate without one (None) is not decided:
#: it is in flight, or its run stopped before its confirmation or its audit. The baseline,
#: the reference point every later candidate is judged against, reads `accept`.
FinalVerdict = Literal["accept", "reject", "repair"]

#: the critic's word as the graph carries it: a final verdict, or `promote`, which sends a
#: candidate on to the next stage (confirm, then the audit) and is never stored
VerdictWord = Literal["accept", "reject", "repair", "promote"]


class Plan(TypedDict):
    #: baseline, mutate, crossover, new, random, seed or manual
    operator: str
    hypothesis: str
    motivation: str
    expected_effect: str
    #: a short name for the architecture (the genome's description in compose mode)
    summary: NotRequired[str]
    #: the candidate this one is another coding attempt of (design mode's repairs)
    repair_of: NotRequired[str]


class Candidate(TypedDict):
    candidate_id: str
    origin: Origin
    #: what proposed it: heuristic, random, baseline, manual, llm:PROFILE or replay:RUN
    brain: str
    parents: list[str]
    #: the genome it was rendered from (compose mode), as JSON
    genome: dict[str, Any] | None
    plan: Plan
    #: the module that is stored and run; absent until the coder writes it
    source: NotRequired[str]
    #: why the step has no plan (design mode: the planner model gave no usable answer)
    unplanned: NotRequired[str]
    #: the planning step that proposed it (0 for the baseline), and its coding attempt:
    #: with the role, the key under which its LLM answers are logged and replayed
    step: NotRequired[int]
    repair: NotRequired[int]
    lane: NotRequired[int]


class Outcome(TypedDict, total=False):
    status: OutcomeStatus
    error_class: str | None
    message: str | None
    score: float | None
    metrics: dict[str, float] | None
    n_params: int | None
    wall_time_s: float | None
    #: the candidate whose code this one repeats
    duplicate_of: str | None
    #: the confirm stage's seed statistics (n, mean, std, ci)
    seeds: dict[str, Any]
    #: the smoke trial's causality and complexity checks, judged on the trusted side
    causality: dict[str, Any]
    complexity: dict[str, Any]
    #: the audit of a gain too large to take on trust: whether it passed, a sentence, and
    #: each check's outcome (roles.audit)
    audit: dict[str, Any]
    #: the held-out curve of a trial (stored with the trial, not the candidate)
    curve: list[dict[str, float]] | None


class Verdict(TypedDict):
    verdict: VerdictWord
    reason: str
    #: one sentence later proposals should know
    insight: NotRequired[str | None]
    #: a critic model's reading of the result
    analysis: NotRequired[str]
    brain: NotRequired[str]


def plan_title(plan: Mapping[str, Any] | None) -> str:
    """A plan in one line: its summary, else its hypothesis (plans stored by older runs, and
    hand-written ones, have no summary)."""
    plan = plan or {}
    return str(plan.get("summary") or plan.get("hypothesis") or "")


_FINAL: tuple[FinalVerdict, ...] = ("accept", "reject", "repair")


def final_verdict(word: str | None) -> FinalVerdict | None:
    """The verdict a stored word stands for: the one reading of it that the run's summary,
    `archlab show`, the report and the web UI share. None for no verdict, and for `audit`,
    the word older versions stored for a result too good to trust that was never audited
    (migration 8 clears the stored ones; a run resumed from an older checkpoint may still
    write it)."""
    return next((final for final in _FINAL if final == word), None)


def is_accepted(word: str | None) -> bool:
    """Whether a candidate with this stored verdict counts as accepted, everywhere."""
    return final_verdict(word) == "accept"


def metric_shown(candidate: dict[str, Any]) -> str | None:
    """For a fitness that negates a lower-is-better metric (charlm's bits per byte), that
    metric as people read it, for beside the score: `2.0512 bits per byte`. None where the
    score is the metric itself, or there is none."""
    fitness, score = candidate.get("fitness") or {}, candidate.get("score")
    if fitness.get("higher_is_better", True) or score is None:
        return None
    metric = fitness["metric"]
    if fitness.get("param_penalty") or fitness.get("latency_penalty"):
        value = (candidate.get("metrics") or {}).get(metric)  # the score is not the metric
    else:
        value = -score  # the seeds' mean once confirmed, as the score is
    return None if value is None else f"{value:.4f} {metric.replace('_', ' ')}"
