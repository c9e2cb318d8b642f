"""Worker scaling: trials per hour with 2 workers over 1."""

from __future__ import annotations

import itertools
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from archlab.sandbox.executor import LocalExecutor, TrialRequest
from archlab.sandbox.levels import make_launcher
from archlab.tasks.mqar import MQAR


class _Slots:
    """A LocalExecutor with `workers` slots and as many lanes calling it, each harness
    started ahead; it counts the trials it ran and the time they took."""

    def __init__(self, workers: int, task: MQAR, root: Path) -> None:
        self.workers, self.task = workers, task
        self.launcher = make_launcher("basic", 4000, prewarm=True)
        data = task.data(0)
        self.executor = LocalExecutor(
            self.launcher, root / f"w{workers}", workers, tasks=lambda _: (task, data)
        )
        self.lanes = ThreadPoolExecutor(max_workers=workers)
        self.trials, self.elapsed, self._seeds = 0, 0.0, itertools.count()

    def run(self, n: int, timed: bool = True) -> None:
        started = time.monotonic()
        list(self.lanes.map(self._trial, [next(self._seeds) for _ in range(n)]))
        if timed:
            self.trials += n
            self.elapsed += time.monotonic() - started

    def per_hour(self) -> float:
        return 3600 * self.trials / self.elapsed

    def _trial(self, seed: int) -> None:
        task = self.task
        report = self.executor.run(
            TrialRequest(
                trial_id=f"w{self.workers}-{seed}", stage="proxy", seed=seed,
                budget=task.budgets["proxy"], source=task.baseline_source(), task_name="mqar",
                task_options={}, data_seed=0, threads=1, memory_bytes=4 * 2**30,
            )
        )  # fmt: skip
        if report.status != "ok":
            raise RuntimeError(f"the benchmark trial failed: {report.message}")

    def close(self) -> None:
        self.lanes.shutdown()
        self.executor.close()
        self.launcher.close()


#: (proxy steps, trials per worker per round) of the worker-scaling benchmark
#: (the full run: the default proxy budget, a ~30 s trial; each trial's start-up, ~1.5 s
#: of CPU, competes with training for the cores, so shorter trials scale less)
WORKER_TRIALS = {False: (384, 2), True: (48, 2)}


#: rounds of 1 worker then 2: alternated, so that the shared machine's drift (as large as
#: the effect measured) falls on both
WORKER_ROUNDS = 2


def worker_scaling(quick: bool) -> dict[str, Any]:
    """Trials per hour with 2 local workers against 1 (one thread per trial), on MQAR
    proxy trials through the strongest sandbox, each harness started ahead; one unmeasured
    trial per lane first (a run's first trials have nothing started ahead)."""
    steps, n = WORKER_TRIALS[quick]
    task = MQAR(proxy_steps=steps)
    with tempfile.TemporaryDirectory(prefix="archlab-bench-") as folder:
        slots = {workers: _Slots(workers, task, Path(folder)) for workers in (1, 2)}
        try:
            for workers, lanes in slots.items():
                lanes.run(workers, timed=False)
            for _ in range(WORKER_ROUNDS):
                for workers, lanes in slots.items():
                    lanes.run(n * workers)
        finally:
            for lanes in slots.values():
                lanes.close()
    return {
        "worker_trial_steps": task.budgets["proxy"].steps,
        "trials_per_hour_1_worker": slots[1].per_hour(),
        "trials_per_hour_2_workers": slots[2].per_hour(),
        "worker_scaling": slots[2].per_hour() / slots[1].per_hour(),
    }
