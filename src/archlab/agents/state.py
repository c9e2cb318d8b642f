"""The graph's state and the run context its nodes share.

State holds only JSON-able values, so LangGraph can checkpoint it after every node;
the context holds the live resources (memory, task, launcher, brain), never checkpointed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypedDict

from rich.console import Console

from archlab.config import Settings
from archlab.eval.tasks.base import TokenData, TokenTask
from archlab.memory.store import Memory
from archlab.sandbox.launcher import Launcher


class LabState(TypedDict, total=False):
    run_id: str
    #: evaluate this one candidate and stop (archlab eval) instead of searching
    single: bool
    #: candidates evaluated in this run so far: the trial budget's counter
    evaluated: int
    started_at: float
    #: the candidate in flight: id, source, parents, plan, genome, origin, brain
    candidate: dict[str, Any] | None
    #: the outcome so far: status, error_class, message, score, metrics, n_params
    outcome: dict[str, Any]
    verdict: dict[str, Any]
    #: the last few outcomes, one line each, for the progress display and the final note
    history: list[str]


@dataclass
class RunContext:
    run_id: str
    settings: Settings
    task: TokenTask
    memory: Memory
    launcher: Launcher
    home: Path
    console: Console = field(default_factory=Console)
    proxy_seed: int = 0
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

    def budget_left(self, state: LabState) -> bool:
        run = self.settings.run
        if state.get("evaluated", 0) >= run.trials:
            return False
        minutes = run.minutes
        return not minutes or self.clock() - state["started_at"] < minutes * 60
