"""What the benchmarks share: a tiny MQAR, a quiet discovery, medians and percentiles."""

from __future__ import annotations

import io
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from archlab.config import Settings
from archlab.memory.store import MEMORY_FILE, Memory
from archlab.sandbox.executor import Executor


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


#: a small MQAR whose trials take about a second: benchmarks of what surrounds training
TINY_MQAR: dict[str, Any] = {
    "vocab_size": 64,
    "seq_len": 32,
    "num_kv_pairs": 4,
    "train_examples": 512,
    "eval_examples": 64,
    "proxy_steps": 16,
}


def quiet_discovery(
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(math.ceil(q * len(ordered)) - 1, len(ordered) - 1)]
