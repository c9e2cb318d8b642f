"""The memory's query latency at 10k and 100k candidates, and its insert rate."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from archlab.benchmarks.common import median_ms
from archlab.memory import queries
from archlab.memory.store import Memory
from archlab.roles import briefing
from archlab.search.genome import baseline_genome


def _fill_memory(memory: Memory, start: int, stop: int, task_fingerprint: str) -> None:
    """Scored candidates start..stop with genomes, inserted in one statement (the benchmark
    measures reading a large memory, not filling it)."""
    genome = baseline_genome().model_dump(mode="json")
    memory.fill_scored_candidates(task_fingerprint, genome, start, stop)


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
            results[f"memory_query_ms_{label}"] = median_ms(
                lambda: briefing.planner_context(memory, fp, with_code=True), repeats
            )
            results[f"memory_heuristic_plan_ms_{label}"] = median_ms(
                lambda: _heuristic_planning_reads(memory, fp), repeats
            )
    return results
