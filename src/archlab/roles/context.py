"""The context a role works in: the run's live resources (memory, task, executor, brains),
shared by the run's lanes and never checkpointed (the graph's state is)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from archlab.config import Settings
from archlab.errors import Cancelled
from archlab.llm.client import LLMError
from archlab.memory.store import Memory
from archlab.sandbox.executor import Executor
from archlab.tasks.base import TokenData, TokenTask

if TYPE_CHECKING:
    from archlab.roles.brains import Brains  # the brains are built on the roles


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

    def ids(self, origin: str) -> set[str]:
        with self._lock:
            return {cid for cid, (o, _) in self._ideas.items() if o == origin}


class Turns:
    """Lanes plan in step order: a step is planned once the step before it is (or that
    step's lane has stopped), and sees only what was recorded a whole round of lanes
    before it (`RunContext.horizon`). So what a step proposes follows from the seed, not
    from which lane finished first: the same seed proposes the same candidates."""

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes
        self._changed = threading.Condition()
        self._planned: set[int] = set()
        #: the step each stopped lane stopped at: its later steps never come
        self._stopped: list[int] = []
        self._before = 0  # steps up to this one were planned before this process

    def resume_after(self, step: int) -> None:
        """Steps up to `step` were planned before the run was resumed."""
        with self._changed:
            self._before = max(self._before, step)
            self._changed.notify_all()

    def wait(self, step: int, cancel: threading.Event) -> None:
        """Until the step before `step` is planned or never will be; Cancelled if the run
        is told to stop meanwhile."""
        with self._changed:
            while not self._settled(step - 1):
                if cancel.is_set():
                    raise Cancelled(f"step {step} was not planned: the run stopped")
                self._changed.wait(0.5)

    def _settled(self, step: int) -> bool:
        return (
            step <= self._before
            or step in self._planned
            or any(step >= at and (step - at) % self.lanes == 0 for at in self._stopped)
        )

    def planned(self, step: int) -> None:
        with self._changed:
            self._planned.add(step)
            self._changed.notify_all()

    def stopped(self, step: int) -> None:
        """The lane whose turn `step` was has stopped there."""
        with self._changed:
            self._stopped.append(step)
            self._changed.notify_all()


class FailedSteps:
    """Steps in a row whose model (planner or coder) gave no usable answer, over every
    lane: the run goes on past each, and stops after too many. A step the models saw
    through to its code starts the count again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_a_row = 0

    def failed(self, limit: int, problem: str) -> None:
        """Count a failed step; LLMError once `limit` failed in a row."""
        with self._lock:
            self._in_a_row += 1
            if self._in_a_row >= limit:
                raise LLMError(
                    f"{self._in_a_row} steps in a row without a usable answer, the limit "
                    f"(run.max_failed_steps); the last: {problem} (every answer is in the "
                    "memory's llm_calls table)"
                )

    def succeeded(self) -> None:
        with self._lock:
            self._in_a_row = 0


@dataclass
class RunContext:
    run_id: str
    settings: Settings
    task: TokenTask
    memory: Memory
    executor: Executor
    brains: Brains
    home: Path
    #: why the run ended on its own (see LabState.stopped); stored as the run's message
    stopped: str | None = None
    #: set to stop every lane at its next step (Ctrl-C, or a lane that failed)
    cancel: threading.Event = field(default_factory=threading.Event)
    inflight: InFlight = field(default_factory=InFlight)
    failed_steps: FailedSteps = field(default_factory=FailedSteps)
    turns: Turns = field(init=False)
    _baseline_id: str | None = field(default=None, init=False, repr=False)
    #: the task's data at seeds other than the run's (the audit's fresh draws), by seed
    _other_data: dict[int, TokenData] = field(default_factory=dict, init=False, repr=False)
    _other_data_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.turns = Turns(self.settings.run.lanes)

    def horizon(self, step: int) -> tuple[str, int]:
        """What planning step `step` may see of this run (Turns): (run id, last step).
        The baseline (step 0) is recorded before any lane plans a step."""
        return self.run_id, max(step - self.settings.run.lanes, 0)

    def baseline_id(self) -> str | None:
        """The task's baseline (the earliest settled one), looked up until it exists, then
        kept: every candidate asks for it, and once settled it does not change."""
        if self._baseline_id is None:
            self._baseline_id = self.memory.baseline_id(self.task_fingerprint)
        return self._baseline_id

    @cached_property
    def data(self) -> TokenData:
        return self.task.data(self.settings.run.data_seed)

    def data_for(self, data_seed: int) -> TokenData:
        """The task's data at `data_seed`: the run's own, or another draw (the audit's fresh
        data), built once for the trial that trains on it and the scoring that follows."""
        if data_seed == self.settings.run.data_seed:
            return self.data
        with self._other_data_lock:
            if data_seed not in self._other_data:
                if len(self._other_data) >= 2:  # an audit uses one; lanes may audit at once
                    self._other_data.pop(next(iter(self._other_data)))
                self._other_data[data_seed] = self.task.data(data_seed)
            return self._other_data[data_seed]

    @cached_property
    def task_fingerprint(self) -> str:
        return self.task.fingerprint(self.settings.run.data_seed)
