"""Benchmarks behind `archlab bench`: one small function per measurement, each returning
flat JSON-ready keys. Timings are measurements to track, never assertions in tests.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from archlab.config import Settings
from archlab.errors import ConfigError
from archlab.memory import queries
from archlab.memory.store import MEMORY_FILE, Memory
from archlab.sandbox import harness
from archlab.sandbox.executor import Executor, LocalExecutor, TrialRequest
from archlab.sandbox.launcher import (
    BasicLauncher,
    Execution,
    HarnessStarts,
    Launcher,
    Limits,
    make_launcher,
    read_tail,
)
from archlab.sandbox.trial import TrialReport, run_trial
from archlab.search.genome import baseline_genome, render
from archlab.search.heuristic import HeuristicBrain
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

    def run_harness(self, trial_dir: Path, limits: Limits) -> Execution:
        started = time.monotonic()
        with contextlib.chdir(trial_dir), contextlib.redirect_stdout(None):
            harness.run_here()
        return Execution("ok", 0, time.monotonic() - started, 0.0, 0.0, "")

    def close(self) -> None:
        """Nothing runs ahead."""


def _trial_seconds(launcher: Launcher, task: MQAR, steps: int) -> float:
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
        _trial_seconds(in_process, task, 8)  # torch's imports and lazy set-up, paid once here
        cold = _trial_seconds(sandbox, task, steps)
        for _ in range(2 if quick else 3):  # interleaved, so that drifting load hits both alike
            # the next harness has loaded: its start-up, which overlaps the trial before it
            # in a run, stays off the reference
            sandbox.wait_warm(timeout_s=120)
            times["in_process"].append(_trial_seconds(in_process, task, steps))
            times["sandbox"].append(_trial_seconds(sandbox, task, steps))
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


#: a small MQAR whose trials take about a second: benchmarks of what surrounds training
TINY_MQAR: dict[str, Any] = {
    "vocab_size": 64,
    "seq_len": 32,
    "num_kv_pairs": 4,
    "train_examples": 512,
    "eval_examples": 64,
    "proxy_steps": 16,
}


def _discover(
    home: Path, executor: Executor | None = None, /, **sections: dict[str, Any]
) -> tuple[Memory, str]:
    """A real discovery in `home` with the heuristic brain, quietly; its memory and run id."""
    from archlab.orchestration.runs import (
        discover,  # the lab pulls in the graph: only when measuring it
    )

    config: dict[str, Any] = {"home": str(home), "sandbox": {"threads": 1}}
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    run_id = discover(Settings.model_validate(config), Console(file=io.StringIO()), executor)
    return Memory(home / MEMORY_FILE), run_id


def causal_probe(probe_x: np.ndarray, vocab: int) -> np.ndarray:
    """Logits on a causality probe's inputs that are causal by construction: each
    position's logits are its own token, one-hot."""
    return np.eye(vocab, dtype=np.float32)[probe_x]


class RecordedExecutor:
    """Trains the first trial of each kind (stage, probe, complexity) for real, and answers
    every later one with that report at zero wall time: a discovery through it costs what
    the lab itself costs, with training (and the sandbox, measured on its own) left out.
    A candidate that passes the checks made on its source climbs the whole ladder."""

    def __init__(self, real: Executor) -> None:
        self.real = real
        self.workers = real.workers
        self._reports: dict[tuple[str, bool, bool], TrialReport] = {}
        self._recording = threading.Lock()  # lanes call at once; each kind is recorded once

    def describe(self) -> str:
        return f"recorded trials ({self.real.describe()})"

    def run(self, request: TrialRequest) -> TrialReport:
        kind = (request.stage, request.probe_x is not None, request.complexity)
        with self._recording:
            if kind not in self._reports:
                self._reports[kind] = self.real.run(request)
            report = self._reports[kind]
        if request.probe_x is not None and report.probe is not None:
            # each candidate's causality probe has its own inputs: the recorded outputs belong
            # to others, so answer with a stand-in
            report = replace(report, probe=causal_probe(request.probe_x, report.probe.shape[-1]))
        return replace(report, wall_time_s=0.0)

    def close(self) -> None:
        self.real.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(math.ceil(q * len(ordered)) - 1, len(ordered) - 1)]


#: candidates measured in each of the orchestration benchmark's discoveries
ORCHESTRATION_TRIALS = {False: 24, True: 8}
#: the first candidates, the baseline and a random sample, whose trials run for real
_RECORDING = 2
#: the past run whose model answers the second discovery re-plays
_ANSWERS_RUN = "bench-answers"


def _replayable_run(memory: Memory, task: MQAR, steps: int) -> None:
    """A past design-mode run, `_ANSWERS_RUN`, whose planner, coder and critic answered
    steps 1 to `steps`: what `replay:RUN` re-plays without a model. Each step mutates one
    of the memory's scored candidates into a different random genome's module, one the
    memory does not hold yet."""
    memory.start_run(
        run_id=_ANSWERS_RUN, task=task.name, task_fingerprint=task.fingerprint(),
        brain="replay", seed=0, config={},
    )  # fmt: skip
    known = {c["genome_key"] for c in memory.query("SELECT genome_key FROM candidates")}
    pool = [c["candidate_id"] for c in memory.parent_pool(task.fingerprint())]
    draw = HeuristicBrain(random.Random(0))
    with memory.batch():
        for step in range(1, steps + 1):
            genome = draw.random_genome()
            while genome.key() in known:
                genome = draw.random_genome()
            known.add(genome.key())
            answers = {  # by role and the purpose its calls are logged under
                ("planner", "plan"): {
                    "motivation": "replayed", "hypothesis": "replayed", "operator": "mutate",
                    "parents": [pool[step % len(pool)]], "expected_effect": "replayed",
                    "summary": f"design {step}",
                },
                ("coder", "write"): {"source": render(genome), "edits": 0},
                ("critic", "critique"): {
                    "analysis": "replayed", "implements_plan": True, "verdict": "reject",
                    "reason": "replayed", "insight": "replayed",
                },
            }  # fmt: skip
            for (role, purpose), answer in answers.items():
                memory.save_llm_call(
                    call_id=f"{role}-{step}", run_id=_ANSWERS_RUN, role=role, purpose=purpose,
                    step=step, repair=0, attempt=1, retry=0, brain="bench", model="bench",
                    request={}, prompt_tokens=0, completion_tokens=0, tokens_estimated=False,
                    cost_usd=0.0, latency_s=0.0, status="ok", answer=answer,
                )  # fmt: skip


def _overheads_ms(memory: Memory, run_id: str) -> list[float]:
    """Per candidate of the run after its first, the time from the end of the one before
    to the end of its last node, less its LLM calls' latency."""
    with memory.connect() as con:
        rows = con.execute(
            "WITH node AS (SELECT candidate_id, min(started_at) AS first, "
            "max(ended_at) AS last FROM spans WHERE run_id = ? AND candidate_id IS NOT NULL "
            "GROUP BY candidate_id), "
            "llm AS (SELECT candidate_id, sum(latency_s) AS s FROM llm_calls "
            "WHERE run_id = ? GROUP BY candidate_id) "
            "SELECT epoch(node.first), epoch(node.last), coalesce(llm.s, 0) "
            "FROM node LEFT JOIN llm USING (candidate_id) ORDER BY node.first",
            [run_id, run_id],
        ).fetchall()
    return [
        1000 * (last - previous_end - llm_s)
        for (_, previous_end, _), (_, last, llm_s) in itertools.pairwise(rows)
    ]


def orchestration_overhead(quick: bool) -> dict[str, Any]:
    """What a candidate costs besides its training and its model calls: a real discovery
    (heuristic brain, tiny MQAR) whose trials are answered from a recording
    (RecordedExecutor), and per candidate the time from the end of the one before to the
    end of its last node (the graph, its checkpoints, planning, memory reads and writes,
    scoring) minus its LLM calls' latency. The first candidates, whose trials ran for real,
    are left out. Then the same with model brains (design mode): a second discovery in the
    same memory whose planner, coder and critic re-play answers (`replay:RUN`), so that
    each candidate also pays for its prompts' context, their rendering, the answers'
    validation and their log, and none for a model."""
    trials = ORCHESTRATION_TRIALS[quick]
    task = MQAR(**TINY_MQAR)
    sections: dict[str, Any] = {
        "tasks": {"mqar": TINY_MQAR},
        "ladder": {"confirm_seeds": 1, "scale_top": 0},
    }

    def recorded(trials_dir: Path) -> RecordedExecutor:
        real = LocalExecutor(
            make_launcher("basic", 4000), trials_dir, 1, tasks=lambda _: (task, task.data(0))
        )
        return RecordedExecutor(real)

    with tempfile.TemporaryDirectory(prefix="archlab-bench-") as folder:
        root = Path(folder)
        memory, run_id = _discover(
            root / "home",
            recorded(root / "trials"),
            run={"task": "mqar", "trials": trials + _RECORDING},
            **sections,
        )
        overhead_ms = _overheads_ms(memory, run_id)[_RECORDING - 1 :]
        # the baseline exists by now: the first candidate records the trials (and is left
        # out, having no candidate before it)
        _replayable_run(memory, task, trials + 1)
        _, llm_run_id = _discover(
            root / "home",
            recorded(root / "llm-trials"),
            run={"task": "mqar", "trials": trials + 1, "mode": "design"},
            roles={role: f"replay:{_ANSWERS_RUN}" for role in ("planner", "coder", "critic")},
            **sections,
        )
        llm_overhead_ms = _overheads_ms(memory, llm_run_id)
    return {
        "orchestration_candidates": len(overhead_ms),
        "orchestration_ms_median": statistics.median(overhead_ms),
        "orchestration_ms_p95": _percentile(overhead_ms, 0.95),
        "orchestration_llm_candidates": len(llm_overhead_ms),
        "orchestration_llm_ms_median": statistics.median(llm_overhead_ms),
        "orchestration_llm_ms_p95": _percentile(llm_overhead_ms, 0.95),
    }


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


#: the search benchmark's MQAR, reduced so that a trial takes seconds (~2 s start-up plus
#: ~35 ms a step on one thread) yet architectures still separate: at the default sizes a
#: trial costs ~35 s, and cutting only the steps (48) left every candidate at chance. Here
#: the baseline transformer reaches ~0.5 answer accuracy in 128 steps (AUC 0.27) while
#: benchmarks/calibrate_mqar.py's conv-only and MLP-only models stay at chance (1/32, AUC
#: 0.03); at 96 steps the baseline scores ~0.17 and random genomes spread from chance
#: (most recurrent or conv-only ones) to ~0.24 (wide linear attention).
SEARCH_MQAR: dict[str, Any] = {
    "vocab_size": 64,
    "seq_len": 32,
    "num_kv_pairs": 4,
    "train_examples": 4096,
    "eval_examples": 128,
}
#: --quick keeps the steps (fewer would undo the calibration) and cuts the trials
SEARCH_PROXY_STEPS = 96
#: (search seeds, random trials, heuristic trials); trials count every candidate evaluated,
#: the baseline included as the first of both methods (a discovery always starts with it,
#: and the planner counts the transformer baseline as the baseline genome, tried). A
#: candidate cost ~30 s (smoke and proxy trials, planning) on 2 cores at load 8.
SEARCH_BUDGETS = {False: (3, 64, 32), True: (1, 6, 6)}


def _scores_in_order(memory: Memory, run_id: str) -> list[float]:
    """The run's candidates in the order they were proposed, each its proxy score (failed
    ones -inf)."""
    rows = memory.query(
        "SELECT score FROM candidates WHERE run_id = ? ORDER BY created_at", [run_id]
    )
    return [-math.inf if row["score"] is None else float(row["score"]) for row in rows]


def _best_so_far(scores: list[float]) -> list[float]:
    best, curve = -math.inf, []
    for score in scores:
        best = max(best, score)
        curve.append(best)
    return curve


def search_curves(quick: bool, seed: int) -> dict[str, list[float]]:
    """One search seed: the best score after each trial of a random search and of the
    heuristic brain, each a discovery in a fresh home (real proposals, rendering and
    sandboxed trials; one proxy trial per candidate: no confirm or scale stage)."""
    _, random_trials, heuristic_trials = SEARCH_BUDGETS[quick]
    common: dict[str, dict[str, Any]] = {
        "tasks": {"mqar": {**SEARCH_MQAR, "proxy_steps": SEARCH_PROXY_STEPS}},
        "ladder": {"confirm_seeds": 1, "scale_top": 0},
        "executor": {"workers": 1},
    }
    # random_samples=0: no yardstick samples (origin "random") among the heuristic's own
    # trials; random_rate=1: every proposal after the baseline is the brain's
    # random_proposal, a uniform draw from the same genome space (never one seen before).
    methods: dict[str, tuple[int, dict[str, Any]]] = {
        "random": (random_trials, {"random_rate": 1.0, "random_samples": 0}),
        "heuristic": (heuristic_trials, {"random_samples": 0}),
    }
    curves = {}
    with tempfile.TemporaryDirectory(prefix="archlab-bench-") as folder:
        for method, (trials, search) in methods.items():
            memory, run_id = _discover(
                Path(folder) / method,
                run={"task": "mqar", "trials": trials, "seed": seed},
                search=search,
                **common,
            )
            curves[method] = _best_so_far(_scores_in_order(memory, run_id))
    return curves


def _trials_to_reach(curve: list[float], target: float) -> int | None:
    return next((t for t, best in enumerate(curve, 1) if best >= target), None)


def search_quality(quick: bool) -> dict[str, Any]:
    """The heuristic brain against random sampling of the same genome space on a reduced
    MQAR, over several search seeds: the best score against trials (mean over seeds) and
    the trials the heuristic brain needs to reach random search's best."""
    per_seed = [search_curves(quick, seed) for seed in range(SEARCH_BUDGETS[quick][0])]
    return search_summary(quick, per_seed)


def search_summary(quick: bool, per_seed: list[dict[str, list[float]]]) -> dict[str, Any]:
    _, random_trials, heuristic_trials = SEARCH_BUDGETS[quick]
    needed = [_trials_to_reach(c["heuristic"], c["random"][-1]) for c in per_seed]
    # never reached counts as more than any budget: the median is null if it lands there
    ranked = sorted(math.inf if n is None else n for n in needed)
    median = statistics.median(ranked)
    median_needed = None if math.isinf(median) else median
    return {
        "search_mqar": {**SEARCH_MQAR, "proxy_steps": SEARCH_PROXY_STEPS},
        "search_seeds": len(per_seed),
        "search_random_trials": random_trials,
        "search_heuristic_trials": heuristic_trials,
        "search_random_best": statistics.mean(c["random"][-1] for c in per_seed),
        "search_heuristic_best": statistics.mean(c["heuristic"][-1] for c in per_seed),
        "search_random_best_per_seed": [c["random"][-1] for c in per_seed],
        "search_heuristic_best_per_seed": [c["heuristic"][-1] for c in per_seed],
        # per seed; null: not reached within the heuristic's trials
        "search_trials_to_random_best_per_seed": needed,
        "search_trials_to_random_best": median_needed,
        # the target's figure (<= 16): only when random search had 64 trials (not --quick)
        "search_trials_to_random_best64": median_needed if random_trials == 64 else None,
        # mean over seeds of the best score after each trial
        "search_best_by_trial_heuristic": [
            statistics.mean(v) for v in zip(*(c["heuristic"] for c in per_seed), strict=False)
        ],
        "search_best_by_trial_random": [
            statistics.mean(v) for v in zip(*(c["random"] for c in per_seed), strict=False)
        ],
    }


#: every measurement `archlab bench` runs, by the name `--only` takes, in order; each gets
#: the --quick flag
MEASUREMENTS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "sandbox": sandbox_overhead,
    "launch": launch_overhead,
    "memory": memory_queries,
    "orchestration": orchestration_overhead,
    "workers": worker_scaling,
    "search": search_quality,
}


#: the figures with a target, and the target (a full run's: --quick trains shorter trials,
#: and its search has no best of 64 to reach)
TARGETS: dict[str, tuple[str, float]] = {
    "sandbox_overhead_ratio": ("<=", 1.05),
    "orchestration_ms_median": ("<=", 50),
    "memory_query_ms_100k": ("<=", 50),
    "worker_scaling": (">=", 1.8),
    "search_trials_to_random_best64": ("<=", 16),
}


def target_met(key: str, value: Any) -> bool | None:
    """Whether the figure meets its target; None when it has none or was not measured."""
    if key not in TARGETS or value is None:
        return None
    bound, target = TARGETS[key]
    return bool(value <= target if bound == "<=" else value >= target)


def run_benchmarks(quick: bool, only: Sequence[str] = ()) -> dict[str, Any]:
    """The measurements named in `only` (every one if none is), and whether the figures
    they took meet their targets."""
    unknown = [name for name in only if name not in MEASUREMENTS]
    if unknown:
        raise ConfigError(
            f"no measurement named {', '.join(unknown)}: choose from {', '.join(MEASUREMENTS)}"
        )
    results: dict[str, Any] = {}
    for name, measure in MEASUREMENTS.items():
        if not only or name in only:
            results.update(measure(quick))
    results["targets_met"] = {
        key: target_met(key, results[key]) for key in TARGETS if key in results
    }
    return results
