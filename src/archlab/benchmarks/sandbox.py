"""The sandbox's cost: whole trials through the strict sandbox against the same training
in this process, and the launch of a harness."""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from archlab.sandbox import harness
from archlab.sandbox.basic import BasicLauncher
from archlab.sandbox.levels import make_launcher
from archlab.sandbox.prewarm import HarnessStarts
from archlab.sandbox.process import read_tail
from archlab.sandbox.protocol import Execution, Launcher, Limits, Watcher
from archlab.sandbox.trial import run_trial
from archlab.tasks.mqar import MQAR

#: a full proxy trial runs the task's default proxy budget; a quick one this many steps
QUICK_STEPS = 96


class InProcessLauncher:
    """The reference for sandbox overhead: the harness's training in this process, with
    torch already imported, as an unsandboxed trial would cost. For the shipped baseline
    only, in a scratch directory: candidate code never runs here."""

    level = "none"

    def run(self, argv: list[str], trial_dir: Path, limits: Limits) -> Execution:
        raise NotImplementedError("in process, only the harness runs")

    def run_harness(
        self, trial_dir: Path, limits: Limits, watcher: Watcher | None = None
    ) -> Execution:
        started = time.monotonic()
        with contextlib.chdir(trial_dir), contextlib.redirect_stdout(None):
            harness.run_here()
        return Execution("ok", 0, time.monotonic() - started, 0.0, 0.0, "")

    def close(self) -> None:
        """Nothing runs ahead."""


def trial_seconds(launcher: Launcher, task: MQAR, steps: int) -> float:
    """Wall seconds of one proxy trial of the task's baseline at `steps`, one thread."""
    proxy = task.budgets["proxy"]
    budget = replace(proxy, steps=steps, eval_every=max(steps // 8, 1))
    with tempfile.TemporaryDirectory(prefix="archlab-bench-") as folder:
        started = time.monotonic()  # the whole trial: the clock of a harness just started
        report = run_trial(
            launcher=launcher,
            trial_dir=Path(folder) / "trial",
            task=task,
            data=task.data(0),
            source=task.baseline_source(),
            stage="proxy",
            seed=0,
            threads=1,
            memory_bytes=8 * 2**30,
            budget=budget,
        )
        if report.status != "ok":
            log = read_tail(Path(folder) / "trial" / "log.txt", 2000)
            raise RuntimeError(f"the benchmark trial failed: {report.message}\n{log}")
    return time.monotonic() - started


def sandbox_overhead(quick: bool) -> dict[str, Any]:
    """Proxy trials of the MQAR baseline through the strongest sandbox available, as a run
    makes them (each trial's harness started ahead, while the trial before it trains),
    against the same training in this (warmed-up) process: the ratio of medians, and the
    first trial's ratio, which has nothing started ahead (`_cold`)."""
    task = MQAR()
    steps = QUICK_STEPS if quick else task.budgets["proxy"].steps
    sandbox, in_process = make_launcher("basic", 4000, prewarm=True), InProcessLauncher()
    assert isinstance(sandbox, HarnessStarts)
    times: dict[str, list[float]] = {"sandbox": [], "in_process": []}
    try:
        trial_seconds(in_process, task, 8)  # torch's imports and lazy set-up, paid once here
        cold = trial_seconds(sandbox, task, steps)
        for _ in range(2 if quick else 3):  # interleaved, so that drifting load hits both alike
            # the next harness has loaded: its start-up, which overlaps the trial before it
            # in a run, stays off the reference
            sandbox.wait_warm(timeout_s=120)
            times["in_process"].append(trial_seconds(in_process, task, steps))
            times["sandbox"].append(trial_seconds(sandbox, task, steps))
    finally:
        sandbox.close()
    sandboxed, reference = (statistics.median(times[k]) for k in ("sandbox", "in_process"))
    return {
        "sandbox_level": sandbox.level,
        "sandbox_trial_steps": steps,
        "sandbox_trial_s": sandboxed,
        "in_process_trial_s": reference,
        "sandbox_overhead_ratio": sandboxed / reference,
        "sandbox_overhead_ratio_cold": cold / reference,
        "sandbox_startup_s": sandboxed - reference,
        "sandbox_startup_cold_s": cold - reference,
    }


def _launch_seconds(launcher: Launcher | None, argv: list[str]) -> float:
    with tempfile.TemporaryDirectory(prefix="archlab-bench-") as folder:
        if launcher is None:
            started = time.monotonic()
            subprocess.run(argv, cwd=folder, check=True)
            return time.monotonic() - started
        execution = launcher.run(argv, Path(folder), Limits(wall_s=60, memory_bytes=2**30))
        if execution.exit_reason != "ok":
            raise RuntimeError(f"the benchmark launch failed: {execution.log_tail}")
        return execution.wall_s


def launch_overhead(quick: bool) -> dict[str, Any]:
    """What each isolation level adds to starting a bare interpreter, in milliseconds: the
    sandbox's own cost, apart from Python's and torch's start-up, which every level pays."""
    argv = [sys.executable, "-I", "-c", "pass"]
    launchers = {"plain": None, "basic": BasicLauncher(), "sandbox": make_launcher("basic", 0)}
    times: dict[str, list[float]] = {name: [] for name in launchers}
    for _ in range(5 if quick else 20):
        for name, launcher in launchers.items():
            times[name].append(_launch_seconds(launcher, argv))
    ms = {name: 1000 * statistics.median(values) for name, values in times.items()}
    return {
        "launch_plain_ms": ms["plain"],
        "launch_basic_ms": ms["basic"],
        "launch_sandbox_ms": ms["sandbox"],
        "isolation_overhead_ms": ms["sandbox"] - ms["plain"],
    }
