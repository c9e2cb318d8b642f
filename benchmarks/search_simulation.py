"""Try a change to the heuristic brain in minutes instead of the search benchmark's hour.

The search benchmark's scores are deterministic: every candidate trains one proxy trial
with training seed 0 on data seed 0 and one thread, so a genome scores the same each time
it is trained. This script trains each genome once (the same harness and trial, without
the sandbox's confinement, which changes no number) and keeps its score in a cache file;
searches then replay the planner's loop (the baseline genome first, then the brain's
proposals with a fresh generator per step, the pool of the best 50 scores, novelty against
every genome tried) with scores from the cache, training only genomes it has not seen.

    .venv/bin/python benchmarks/search_simulation.py --random 160 --seeds 8 --trials 20

`--random N` first scores N uniform draws of the genome space (cached like the rest): the
target is the median of random search's best of 64 resampled from their scores.
`--candidates N` sets the edits the brain screens per proposal (`SCREENED_EDITS` if not
given). Prints each search's best score after every trial, the trials each took to reach
the target (None: not within --trials), their median, and the mean best after 4, 8, 16
trials.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from archlab.benchmarks.search import (
    SEARCH_MQAR,
    SEARCH_PROXY_STEPS,
    best_so_far,
    trials_to_reach,
)
from archlab.sandbox.basic import BasicLauncher
from archlab.sandbox.trial import run_trial
from archlab.search.genome import Genome, baseline_genome, render
from archlab.search.heuristic import SCREENED_EDITS, HeuristicBrain, PoolEntry
from archlab.tasks.mqar import MQAR

TASK = MQAR(**SEARCH_MQAR, proxy_steps=SEARCH_PROXY_STEPS)


class Landscape:
    """Genome key -> proxy score, trained on first use and appended to a JSON-lines file."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.scores: dict[str, float] = {}
        if cache.exists():
            for line in cache.read_text().splitlines():
                row = json.loads(line)
                self.scores[row["key"]] = row["score"]
        self.data = TASK.data(0)
        self.trials = Path(tempfile.mkdtemp(prefix="search-simulation-"))
        self._lock = threading.Lock()
        self._count = 0

    def score(self, genome: Genome) -> float:
        key = genome.key()
        with self._lock:
            if key in self.scores:
                return self.scores[key]
            self._count += 1
            trial_dir = self.trials / str(self._count)
        report = run_trial(
            launcher=BasicLauncher(),
            trial_dir=trial_dir,
            task=TASK,
            data=self.data,
            source=render(genome),
            stage="proxy",
            seed=0,
            threads=1,
            memory_bytes=8 << 30,
        )
        score = -math.inf
        if report.status == "ok":
            score = TASK.metrics(report.checkpoints, self.data).values[TASK.metric]
        with self._lock:
            self.scores[key] = score
            with self.cache.open("a") as f:
                f.write(json.dumps({"key": key, "genome": genome.describe(), "score": score}))
                f.write("\n")
        return score


def search(landscape: Landscape, seed: int, trials: int, candidates: int) -> list[float]:
    """The best score after each trial of one planner-like heuristic search."""
    base = baseline_genome()
    entries = [PoolEntry("c0", landscape.score(base), base)]
    seen = {base.key()}
    for step in range(1, trials):
        brain = HeuristicBrain(random.Random(f"{seed}:simulation:{step}"), candidates=candidates)
        pool = sorted((e for e in entries if math.isfinite(e.score)), key=lambda e: -e.score)
        genome = brain.propose(pool[:50], seen).genome
        seen.add(genome.key())
        entries.append(PoolEntry(f"c{step}", landscape.score(genome), genome))
    return best_so_far([e.score for e in entries])


def random_best_of_64(scores: list[float]) -> float:
    rng = random.Random(0)
    return statistics.median(max(rng.choices(scores, k=64)) for _ in range(2000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("search-landscape.jsonl"))
    parser.add_argument("--random", type=int, default=160, help="uniform draws for the target")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="trials trained at once")
    parser.add_argument(
        "--candidates", type=int, default=SCREENED_EDITS,
        help="edits the brain screens per proposal (its default if not given)",
    )  # fmt: skip
    args = parser.parse_args()
    landscape = Landscape(args.cache)
    with ThreadPoolExecutor(args.workers) as pool:
        draws = [
            HeuristicBrain(random.Random(f"sample:{i}")).random_genome() for i in range(args.random)
        ]
        target = random_best_of_64([s for s in pool.map(landscape.score, draws)])
        curves = list(
            pool.map(
                lambda seed: search(landscape, seed, args.trials, args.candidates),
                range(args.seeds),
            )
        )
    reached = [trials_to_reach(curve, target) for curve in curves]
    # not reached within --trials ranks after every count
    median = statistics.median(math.inf if n is None else n for n in reached)
    for curve in curves:
        print(" ".join(f"{best:.3f}" for best in curve))
    print(f"target (random search's median best of 64): {target:.3f}")
    print(f"trials to reach it (None: not within --trials): {reached}, median {median}")
    for t in (4, 8, 16):
        if t <= args.trials:
            print(f"mean best after {t} trials: {statistics.mean(c[t - 1] for c in curves):.3f}")


if __name__ == "__main__":
    main()
