"""Benchmarks behind `archlab bench`: one small function per measurement, each returning
flat JSON-ready keys, grouped by what they measure. Timings are measurements to track,
never assertions in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from archlab.benchmarks.brains import compare_brains
from archlab.benchmarks.common import TINY_MQAR
from archlab.benchmarks.memory import memory_queries
from archlab.benchmarks.orchestration import RecordedExecutor, orchestration_overhead
from archlab.benchmarks.sandbox import launch_overhead, sandbox_overhead
from archlab.benchmarks.search import search_quality
from archlab.benchmarks.workers import worker_scaling
from archlab.config import Settings
from archlab.errors import ConfigError

#: what the tests and the scripts in benchmarks/ use besides the runner
__all__ = [
    "MEASUREMENTS",
    "TARGETS",
    "TINY_MQAR",
    "RecordedExecutor",
    "SearchComparison",
    "run_benchmarks",
    "target_met",
]


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


@dataclass(frozen=True)
class SearchComparison:
    """`archlab bench --task TASK [--search-seeds N]`: the task (configured as a run's, from
    `settings`) the search measurement compares every brain on, over N search seeds."""

    settings: Settings
    task: str
    seeds: int | None = None


#: the figures with a target, and the target (a full run's: --quick trains shorter trials,
#: and its search has no best of 64 to reach)
TARGETS: dict[str, tuple[str, float]] = {
    "sandbox_overhead_ratio": ("<=", 1.05),
    "orchestration_share": ("<=", 0.01),
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


def run_benchmarks(
    quick: bool, only: Sequence[str] = (), search: SearchComparison | None = None
) -> dict[str, Any]:
    """The measurements named in `only` (every one if none is), and whether the figures
    they took meet their targets. With `search`, the search measurement compares every
    brain on that task instead (benchmarks.brains)."""
    unknown = [name for name in only if name not in MEASUREMENTS]
    if unknown:
        raise ConfigError(
            f"no measurement named {', '.join(unknown)}: choose from {', '.join(MEASUREMENTS)}"
        )
    if search is not None and only and "search" not in only:
        raise ConfigError("--task chooses the search measurement's task: add search to --only")
    measurements = dict(MEASUREMENTS)
    if search is not None:
        measurements["search"] = lambda quick: compare_brains(
            search.settings, search.task, search.seeds, quick
        )
    results: dict[str, Any] = {}
    for name, measure in measurements.items():
        if not only or name in only:
            results.update(measure(quick))
    results["targets_met"] = {
        key: target_met(key, results[key]) for key in TARGETS if key in results
    }
    return results
