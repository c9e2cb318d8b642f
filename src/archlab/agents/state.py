"""The graph's state and the run context its nodes share.

State holds only JSON-able values, so LangGraph can checkpoint it after every node;
the context holds the live resources (memory, task, launcher, brains), never checkpointed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypedDict

from rich.console import Console

from archlab.agents.brains import Brains
from archlab.config import Settings
from archlab.eval.tasks.base import TokenData, TokenTask
from archlab.memory.store import Memory
from archlab.sandbox.launcher import Launcher


class LabState(TypedDict, total=False):
    run_id: str
    #: evaluate this one candidate and stop (archlab eval) instead of searching
    single: bool
    #: candidates evaluated in this run so far (repairs included): the trial budget's counter
    evaluated: int
    #: ideas the planner has proposed so far; with a candidate's repair number, the key
    #: under which its LLM answers are logged and replayed
    step: int
    started_at: float
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
    #: the run's conclusion: scale stage and improvement over baseline and random search
    summary: dict[str, Any]


@dataclass
class RunContext:
    run_id: str
    settings: Settings
    task: TokenTask
    memory: Memory
    launcher: Launcher
    brains: Brains
    home: Path
    console: Console = field(default_factory=Console)
    proxy_seed: int = 0
    #: why the run ended on its own (see LabState.stopped); stored as the run's message
    stopped: str | None = None
    data_seed: int = 0
    clock: Any = time.time

    @cached_property
    def data(self) -> TokenData:
        return self.task.data(self.data_seed)

    @cached_property
    def task_fingerprint(self) -> str:
        return self.task.fingerprint()

    def trial_dir(self, trial_id: str) -> Path:
        return self.home / "trials" / self.run_id / trial_id

    def stop_reason(self, state: LabState) -> str | None:
        """Which budget is spent, if any; budgets are checked between candidates, so the
        candidate in flight always finishes."""
        run = self.settings.run
        if state.get("evaluated", 0) >= run.trials:
            return f"trial budget spent ({run.trials} candidates)"
        if run.minutes and self.clock() - state["started_at"] >= run.minutes * 60:
            return f"time budget spent ({run.minutes:g} minutes)"
        if run.max_tokens or run.max_usd:
            tokens, usd = self.memory.llm_usage(self.run_id)
            if run.max_tokens and tokens >= run.max_tokens:
                return f"token budget spent ({tokens:,} of {run.max_tokens:,} tokens)"
            if run.max_usd and usd >= run.max_usd:
                return f"dollar budget spent (${usd:.4f} of ${run.max_usd:g})"
        return None
