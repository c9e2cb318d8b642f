"""The orchestration's cost per candidate: a real discovery whose trials after the first
are answered from a recording, with the heuristic brain and with model brains re-playing
answers (no model)."""

from __future__ import annotations

import itertools
import random
import statistics
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

import archlab.benchmarks.sandbox as sandbox  # its QUICK_STEPS as set when measuring
from archlab.benchmarks.common import TINY_MQAR, percentile, quiet_discovery
from archlab.memory.store import Memory
from archlab.sandbox.executor import Executor, LocalExecutor, TrialRequest
from archlab.sandbox.levels import make_launcher
from archlab.sandbox.trial import TrialReport
from archlab.search.genome import render
from archlab.search.heuristic import HeuristicBrain
from archlab.tasks.mqar import MQAR


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
    known = memory.genome_keys()
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
    rows = memory.candidate_times(run_id)
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
    validation and their log, and none for a model. Their shares: the median over the
    wall time of one proxy trial of the default MQAR's baseline (the cheapest training a
    candidate of a run pays for; shorter in --quick)."""
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
        memory, run_id = quiet_discovery(
            root / "home",
            recorded(root / "trials"),
            run={"task": "mqar", "trials": trials + _RECORDING},
            **sections,
        )
        overhead_ms = _overheads_ms(memory, run_id)[_RECORDING - 1 :]
        # the baseline exists by now: the first candidate records the trials (and is left
        # out, having no candidate before it)
        _replayable_run(memory, task, trials + 1)
        _, llm_run_id = quiet_discovery(
            root / "home",
            recorded(root / "llm-trials"),
            run={"task": "mqar", "trials": trials + 1, "mode": "design"},
            roles={role: f"replay:{_ANSWERS_RUN}" for role in ("planner", "coder", "critic")},
            **sections,
        )
        llm_overhead_ms = _overheads_ms(memory, llm_run_id)
    # what a candidate's training costs at the least: one proxy trial of the default task
    default = MQAR()
    steps = sandbox.QUICK_STEPS if quick else default.budgets["proxy"].steps
    launcher = make_launcher("basic", 4000, prewarm=False)
    try:
        trial_ms = 1000 * sandbox.trial_seconds(launcher, default, steps)
    finally:
        launcher.close()
    return {
        "orchestration_trial_ms": trial_ms,
        "orchestration_share": statistics.median(overhead_ms) / trial_ms,
        "orchestration_llm_share": statistics.median(llm_overhead_ms) / trial_ms,
        "orchestration_candidates": len(overhead_ms),
        "orchestration_ms_median": statistics.median(overhead_ms),
        "orchestration_ms_p95": percentile(overhead_ms, 0.95),
        "orchestration_llm_candidates": len(llm_overhead_ms),
        "orchestration_llm_ms_median": statistics.median(llm_overhead_ms),
        "orchestration_llm_ms_p95": percentile(llm_overhead_ms, 0.95),
    }
