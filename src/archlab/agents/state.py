"""The graph's state and the run context its nodes share.

State holds only JSON-able values, so LangGraph can checkpoint it after every node;
the context holds the live resources (memory, task, executor, brains), never checkpointed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypedDict

from rich.console import Console

from archlab.agents.brains import Brains
from archlab.agents.budget import RunBudget
from archlab.config import Settings
from archlab.eval.tasks.base import TokenData, TokenTask
from archlab.memory.store import Memory
from archlab.sandbox.executor import Executor


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


class Cancelled(Exception):
    """The run was told to stop (RunContext.cancel): a lane leaves where it is, resumable."""


class InFlight:
    """Ideas some lane planned and has not recorded yet: what the memory cannot tell the
    other lanes so far (their genomes, and how many random samples are under way)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ideas: dict[str, tuple[str, str | None]] = {}

    def add(self, candidate_id: str, origin: str, genome_key: str | None) -> None:
        with self._lock:
            self._ideas[candidate_id] = (origin, genome_key)

    def discard(self, candidate_id: str) -> None:
        with self._lock:
            self._ideas.pop(candidate_id, None)

    def genome_keys(self) -> set[str]:
        with self._lock:
            return {key for _, key in self._ideas.values() if key}

    def count(self, origin: str) -> int:
        with self._lock:
            return sum(1 for o, _ in self._ideas.values() if o == origin)


@dataclass
class RunContext:
    run_id: str
    settings: Settings
    task: TokenTask
    memory: Memory
    executor: Executor
    brains: Brains
    home: Path
    console: Console = field(default_factory=Console)
    proxy_seed: int = 0
    #: why the run ended on its own (see LabState.stopped); stored as the run's message
    stopped: str | None = None
    data_seed: int = 0
    #: the run's budgets, shared by its lanes (set up by the lab for every run)
    budget: RunBudget = field(init=False)
    #: set to stop every lane at its next step (Ctrl-C, or a lane that failed)
    cancel: threading.Event = field(default_factory=threading.Event)
    inflight: InFlight = field(default_factory=InFlight)
    _baseline_id: str | None = field(default=None, init=False, repr=False)

    def baseline_id(self) -> str | None:
        """The task's baseline (the earliest settled one), looked up until it exists, then
        kept: every candidate asks for it, and once settled it does not change."""
        if self._baseline_id is None:
            self._baseline_id = self.memory.baseline_id(self.task_fingerprint)
        return self._baseline_id

    @cached_property
    def data(self) -> TokenData:
        return self.task.data(self.data_seed)

    @cached_property
    def task_fingerprint(self) -> str:
        return self.task.fingerprint()
