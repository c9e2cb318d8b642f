"""Search quality: the heuristic brain against random sampling on a reduced MQAR."""

from __future__ import annotations

import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

from archlab.benchmarks.common import quiet_discovery
from archlab.memory.store import Memory

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
    scores = memory.scores_in_order(run_id)
    return [-math.inf if score is None else float(score) for score in scores]


def best_so_far(scores: list[float]) -> list[float]:
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
            memory, run_id = quiet_discovery(
                Path(folder) / method,
                run={"task": "mqar", "trials": trials, "seed": seed},
                search=search,
                **common,
            )
            curves[method] = best_so_far(_scores_in_order(memory, run_id))
    return curves


def trials_to_reach(curve: list[float], target: float) -> int | None:
    return next((t for t, best in enumerate(curve, 1) if best >= target), None)


def search_quality(quick: bool) -> dict[str, Any]:
    """The heuristic brain against random sampling of the same genome space on a reduced
    MQAR, over several search seeds: the best score against trials (mean over seeds) and
    the trials the heuristic brain needs to reach random search's best."""
    per_seed = [search_curves(quick, seed) for seed in range(SEARCH_BUDGETS[quick][0])]
    return search_summary(quick, per_seed)


def search_summary(quick: bool, per_seed: list[dict[str, list[float]]]) -> dict[str, Any]:
    _, random_trials, heuristic_trials = SEARCH_BUDGETS[quick]
    needed = [trials_to_reach(c["heuristic"], c["random"][-1]) for c in per_seed]
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
