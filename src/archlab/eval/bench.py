"""Benchmarks behind `archlab bench`: one small function per measurement, each returning
flat JSON-ready keys. Timings are measurements to track, never assertions in tests.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from archlab.agents.genome import baseline_genome
from archlab.eval.tasks.mqar import MQAR
from archlab.memory import queries
from archlab.memory.store import Memory
from archlab.sandbox import harness
from archlab.sandbox.launcher import (
    BasicLauncher,
    Execution,
    Launcher,
    Limits,
    make_launcher,
    read_tail,
)
from archlab.sandbox.trial import run_trial

#: a full proxy trial runs the task's default proxy budget; a quick one this many steps
QUICK_STEPS = 96


class InProcessLauncher:
    """The reference for sandbox overhead: the harness's training in this process, with
    torch already imported, as an unsandboxed trial would cost. For the shipped baseline
    only, in a scratch directory: candidate code never runs here."""

    level = "none"

    def run(self, argv: list[str], trial_dir: Path, limits: Limits) -> Execution:
        started = time.monotonic()
        with contextlib.chdir(trial_dir), contextlib.redirect_stdout(None):
            harness.main()
        return Execution("ok", 0, time.monotonic() - started, 0.0, 0.0, "")


def _trial_seconds(launcher: Launcher, task: MQAR, steps: int) -> float:
    proxy = task.budgets["proxy"]
    budget = replace(proxy, steps=steps, eval_every=max(steps // 8, 1))
    with tempfile.TemporaryDirectory(prefix="archlab-bench-") as folder:
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
    return report.wall_time_s


def sandbox_overhead(quick: bool) -> dict[str, Any]:
    """One proxy trial of the MQAR baseline through the strongest sandbox available against
    the same training in this (warmed-up) process: the ratio, and the start-up seconds a
    trial pays for its own interpreter, torch and sandbox."""
    task = MQAR()
    steps = QUICK_STEPS if quick else task.budgets["proxy"].steps
    sandbox, in_process = make_launcher("basic", log_tail_bytes=4000), InProcessLauncher()
    _trial_seconds(in_process, task, 8)  # torch's imports and lazy set-up, paid once here
    times: dict[str, list[float]] = {"sandbox": [], "in_process": []}
    for _ in range(1 if quick else 3):  # interleaved, so that drifting load hits both alike
        times["sandbox"].append(_trial_seconds(sandbox, task, steps))
        times["in_process"].append(_trial_seconds(in_process, task, steps))
    sandboxed, reference = (statistics.median(times[k]) for k in ("sandbox", "in_process"))
    return {
        "sandbox_level": sandbox.level,
        "sandbox_trial_steps": steps,
        "sandbox_trial_s": sandboxed,
        "in_process_trial_s": reference,
        "sandbox_overhead_ratio": sandboxed / reference,
        "sandbox_startup_s": sandboxed - reference,
        # the target: start-up under 5% of a 30-second trial
        "sandbox_startup_share_of_30s": (sandboxed - reference) / 30,
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


def _fill_memory(memory: Memory, start: int, stop: int, task_fingerprint: str) -> None:
    """Scored candidates start..stop with genomes, inserted in one statement (the benchmark
    measures reading a large memory, not filling it)."""
    genome = json.dumps(baseline_genome().model_dump(mode="json"))
    with memory.connect() as con:
        con.execute(
            "INSERT INTO candidates (candidate_id, run_id, task, task_fingerprint, source, "
            "source_hash, parents, plan, genome, genome_key, brain, origin, status, score, "
            "metrics, created_at, updated_at) "
            "SELECT 'c' || i, 'bench', 'mqar', ?, 'def build_model(spec): ...', 'h' || i, "
            "'[]', json_object('operator', 'mutate', 'hypothesis', 'h' || i), ?, 'k' || i, "
            "'heuristic', 'proposed', 'ok', random(), '{}', now(), now() FROM range(?, ?) t(i)",
            [task_fingerprint, genome, start, stop],
        )


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def _heuristic_planning_reads(memory: Memory, fp: str) -> None:
    """What the heuristic planner reads per proposal: the parent pool and a few novelty checks."""
    with memory.connect():
        memory.parent_pool(fp)
        known = queries.KnownGenomes(memory, fp)
        for i in range(5):
            _ = f"k{i}" in known


def memory_queries(quick: bool) -> dict[str, Any]:
    """What planning reads from the memory, at 10k and 100k candidates: the model planner's
    bounded context, and the heuristic planner's parent pool and novelty keys; and how many
    candidates a second one connection per write can record."""
    results: dict[str, Any] = {}
    fp = "bench"
    with tempfile.TemporaryDirectory(prefix="archlab-bench-") as folder:
        memory = Memory(Path(folder) / "memory.duckdb")
        started = time.perf_counter()
        inserts = 20 if quick else 100
        for i in range(inserts):
            memory.save_candidate(
                candidate_id=f"w{i}", run_id="bench", task="mqar", task_fingerprint=fp,
                source="def build_model(spec): ...", source_hash=f"w{i}", ast_hash=None,
                parents=[], plan={"operator": "mutate", "hypothesis": "h"}, genome=None,
                genome_key=None, brain="heuristic", origin="proposed", status="pending",
            )  # fmt: skip
        results["memory_insert_per_s"] = inserts / (time.perf_counter() - started)
        filled = 0
        for n, label in ((10_000, "10k"), (100_000, "100k")):
            _fill_memory(memory, filled, n, fp)
            filled = n
            repeats = 3 if quick else 10
            results[f"memory_query_ms_{label}"] = _median_ms(
                lambda: queries.planner_context(memory, fp, with_code=True), repeats
            )
            results[f"memory_heuristic_plan_ms_{label}"] = _median_ms(
                lambda: _heuristic_planning_reads(memory, fp), repeats
            )
    return results


#: every measurement `archlab bench` runs, in order; each gets the --quick flag
MEASUREMENTS: list[Callable[[bool], dict[str, Any]]] = [
    sandbox_overhead,
    launch_overhead,
    memory_queries,
]


def run_benchmarks(quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for measure in MEASUREMENTS:
        results.update(measure(quick))
    return results
