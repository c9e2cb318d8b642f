"""The graph's state and the run context its nodes share.

State holds only JSON-able values, so LangGraph can checkpoint it after every node;
the context holds the live resources (memory, task, executor, brains), never checkpointed.
"""

from __future__ import annotations

from typing import Any, TypedDict


class LabState(TypedDict, total=False):
    run_id: str
    #: which of the run's lanes (concurrent graph threads) this is, from 0
    lane: int
    #: evaluate this one candidate and stop (archlab eval) instead of searching
    single: bool
    #: candidates this lane evaluated so far (repairs included); the run's budget is counted
    #: in the memory (RunContext.budget)
    evaluated: int
    #: ideas the planner has proposed so far; with a candidate's repair number, the key
    #: under which its LLM answers are logged and replayed
    step: int
    #: the candidate in flight: id, source, parents, plan, genome, origin, brain, step, repair
    candidate: dict[str, Any] | None
    #: the outcome so far: status, error_class, message, score, metrics, n_params
    outcome: dict[str, Any]
    verdict: dict[str, Any]
    #: the last few outcomes, one line each, for the progress display and the final note
    history: list[str]
    #: why the run stopped: a spent budget, or a replayed run that has no more answers
    stopped: str | None
    #: the training stage the candidate in flight is at: proxy, or confirm once promoted
    stage: str
    #: record's decision: the failed candidate gets another coding attempt (a slot claimed,
    #: settled when code saves the attempt)
    repair_next: bool
    #: the run's conclusion: scale stage and improvement over baseline and random search
    summary: dict[str, Any]
    #: node spans not in the memory yet, kept by the checkpoint (see memory.spans.traced)
    spans: list[dict[str, Any]]
