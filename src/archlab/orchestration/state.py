"""The graph's state: one lane's candidate in flight and its progress.

It holds only JSON-able values, so that LangGraph can checkpoint it after every node; the
live resources the nodes share are the run's context (`orchestration.lab.Lab`), never
checkpointed.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from archlab.records import Candidate, Outcome, Verdict

#: the training stage of the candidate in flight: proxy, confirm once promoted, and audit
#: for a confirmed gain too large to take on trust
Stage = Literal["proxy", "confirm", "audit"]


class LabState(TypedDict, total=False):
    run_id: str
    #: which of the run's lanes (concurrent graph threads) this is, from 0
    lane: int
    #: evaluate this one candidate and stop (archlab eval) instead of searching
    single: bool
    #: candidates this lane evaluated so far (repairs included); the run's budget is counted
    #: in the memory (Lab.budget)
    evaluated: int
    #: ideas the planner has proposed so far; with a candidate's repair number, the key
    #: under which its LLM answers are logged and replayed
    step: int
    candidate: Candidate | None
    #: the candidate's outcome so far ({} before verification)
    outcome: Outcome
    #: the verdict on it (None before its critique; {} in checkpoints of older runs)
    verdict: Verdict | None
    #: the last few outcomes, one line each, for the progress display and the final note
    history: list[str]
    #: why the run stopped: a spent budget, or a replayed run that has no more answers
    stopped: str | None
    stage: Stage
    #: record's decision: the failed candidate gets another coding attempt (a slot claimed,
    #: settled when code saves the attempt)
    repair_next: bool
    #: the run's conclusion: scale stage and improvement over baseline and random search
    summary: dict[str, Any]
    #: node spans not in the memory yet, kept by the checkpoint (see orchestration.tracing)
    spans: list[dict[str, Any]]
