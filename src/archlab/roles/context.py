"""The context a role works in: the run's live resources (memory, task, executor, brains),
shared by the run's lanes and never checkpointed (the graph's state is)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from archlab.config import Settings
from archlab.memory.store import Memory
from archlab.sandbox.executor import Executor
from archlab.tasks.base import TokenData, TokenTask

if TYPE_CHECKING:
    from archlab.roles.brains import Brains  # the brains are built on the roles


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
    proxy_seed: int = 0
    #: why the run ended on its own (see LabState.stopped); stored as the run's message
    stopped: str | None = None
    data_seed: int = 0
    #: set to stop every lane at its next step (Ctrl-C, or a lane that failed)
    cancel: threading.Event = field(default_factory=threading.Event)
    inflight: InFlight = field(default_factory=InFlight)
    _baseline_id: str | None = field(default=None, init=False, repr=False)
    #: the task's data at seeds other than the run's (the audit's fresh draws), by seed
    _other_data: dict[int, TokenData] = field(default_factory=dict, init=False, repr=False)
    _other_data_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def baseline_id(self) -> str | None:
        """The task's baseline (the earliest settled one), looked up until it exists, then
        kept: every candidate asks for it, and once settled it does not change."""
        if self._baseline_id is None:
            self._baseline_id = self.memory.baseline_id(self.task_fingerprint)
        return self._baseline_id

    @cached_property
    def data(self) -> TokenData:
        return self.task.data(self.data_seed)

    def data_for(self, data_seed: int) -> TokenData:
        """The task's data at `data_seed`: the run's own, or another draw (the audit's fresh
        data), built once for the trial that trains on it and the scoring that follows."""
        if data_seed == self.data_seed:
            return self.data
        with self._other_data_lock:
            if data_seed not in self._other_data:
                if len(self._other_data) >= 2:  # an audit uses one; lanes may audit at once
                    self._other_data.pop(next(iter(self._other_data)))
                self._other_data[data_seed] = self.task.data(data_seed)
            return self._other_data[data_seed]

    @cached_property
    def task_fingerprint(self) -> str:
        return self.task.fingerprint()
