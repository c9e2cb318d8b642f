"""The offline brains against each other on any task: `archlab bench --only search --task
TASK`.

Every genome is trained once, a proxy trial at the task's configured budget (training
seed 0, one thread), and its held-out curve, score and CPU seconds are kept in a cache
file per task configuration (a landscape): searches then replay the planner's loop (the
baseline genome first, then each brain's proposals with a fresh generator per step,
novelty against every genome tried) over the cached outcomes, so that comparing brains
over many search seeds costs each genome's training once; random search's trials come
from one pool of uniform draws. Early stopping is replayed on the cached curve with the
ladder's rule (`eval.stopping`): a stopped proposal costs the share of its training loop
it ran (and its start-up whole), the brain sees its partial score, and it is never the
best.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import statistics
import tempfile
import threading
from collections.abc import Callable, Container, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from itertools import product
from pathlib import Path
from typing import Any

from archlab.config import Settings
from archlab.errors import ConfigError
from archlab.eval.fitness import Fitness
from archlab.eval.stopping import EarlyStop
from archlab.sandbox.basic import BasicLauncher
from archlab.sandbox.trial import run_trial
from archlab.search import operators
from archlab.search.baselines import TPE, RegularizedEvolution, require_optuna
from archlab.search.genome import Genome, baseline_genome, count_params, render
from archlab.search.heuristic import HeuristicBrain, PoolEntry, Proposal
from archlab.search.space import SearchSpace
from archlab.tasks import get_task
from archlab.tasks.base import TokenTask

#: every brain compared, random sampling of the genome space first (the yardstick)
BRAINS = ("random", "heuristic", "evolution", "tpe")

#: (random search's trials, every other brain's trials) per search seed; random search's
#: best of 64 is the target
COMPARISON_TRIALS = {False: (64, 32), True: (16, 8)}

#: search seeds unless --search-seeds says
COMPARISON_SEEDS = {False: 8, True: 2}

#: the best of this many random draws is the target
TARGET_DRAWS = 64

#: uniform draws of the space that random search's replays take their trials from (each
#: search a different order, no genome twice): random search's outcome depends only on the
#: distribution of uniform draws' scores, so a pool of its draws estimates it at the cost of
#: the pool's training, not of seeds x 64 trials
RANDOM_POOL = {False: 192, True: 24}


@dataclass(frozen=True)
class Evaluation:
    """A genome's full proxy trial: its score (higher is better, -inf if it failed), its
    held-out curve, the CPU seconds of the whole trial and the share of its time spent in
    the training loop (the rest, start-up and data, a stopped trial pays in full)."""

    score: float
    curve: list[dict[str, float]]
    cpu_s: float
    train_share: float
    n_params: int

    def cpu_s_until(self, checkpoints: int) -> float:
        """The CPU seconds of the trial stopped after `checkpoints` of its curve."""
        unrun = 1 - checkpoints / len(self.curve)
        return self.cpu_s * (1 - self.train_share * unrun)


class Landscape:
    """Genome key -> its proxy Evaluation on the task, trained on first use and appended
    to a JSON-lines cache file."""

    def __init__(self, task: TokenTask, fitness: Fitness, data_seed: int, cache: Path) -> None:
        self.task, self.fitness, self.cache = task, fitness, cache
        self.evaluations: dict[str, Evaluation] = {}
        if cache.exists():
            for number, line in enumerate(cache.read_text().splitlines(), 1):
                try:
                    row = json.loads(line)
                    key = row.pop("key")
                    self.evaluations[key] = Evaluation(**row)
                except (ValueError, KeyError, TypeError) as e:
                    raise ConfigError(
                        f"{cache}, line {number}: not a landscape entry ({e}); delete the "
                        "file to train its genomes again"
                    ) from None
        self.data = task.data(data_seed)
        self._lock = threading.Lock()
        #: genomes being trained, and when they are done: searches that meet one wait
        self._training: dict[str, threading.Event] = {}

    def __call__(self, genome: Genome) -> Evaluation:
        key = genome.key()
        with self._lock:
            if key in self.evaluations:
                return self.evaluations[key]
            done = self._training.get(key)
            if done is None:  # this search trains it
                done = self._training[key] = threading.Event()
                trainer = True
            else:
                trainer = False
        if not trainer:
            done.wait()
            return self.evaluations[key]  # (a training that raised, raised in its search)
        try:
            return self._train(genome, key)
        finally:
            done.set()

    def _train(self, genome: Genome, key: str) -> Evaluation:
        with tempfile.TemporaryDirectory(prefix="archlab-landscape-") as folder:
            report = run_trial(
                launcher=BasicLauncher(prewarm=False),
                trial_dir=Path(folder) / "trial",
                task=self.task,
                data=self.data,
                source=render(genome),
                stage="proxy",
                seed=0,
                threads=1,
                memory_bytes=8 << 30,
            )
        spec = self.task.spec
        n_params = count_params(genome, spec["vocab_size"], spec["seq_len"])
        evaluation = Evaluation(-math.inf, [], report.cpu_time_s, 0.0, n_params)
        if report.status == "ok":
            metrics = self.task.metrics(report.checkpoints, self.data)
            score = self.fitness.score(metrics.values, n_params, report.wall_time_s)
            share = min(report.train_time_s / report.wall_time_s, 1.0)
            evaluation = Evaluation(score, metrics.curve, report.cpu_time_s, share, n_params)
        with self._lock:
            self.evaluations[key] = evaluation
            with self.cache.open("a") as f:
                f.write(json.dumps({"key": key, **asdict(evaluation)}) + "\n")
        return evaluation


#: a brain's next proposal: (search seed, step, the candidates so far in order, seen keys)
Propose = Callable[[int, int, list[PoolEntry], Container[str]], Proposal]


def uniform_pool(space: SearchSpace, size: int) -> list[Genome]:
    """`size` distinct uniform draws of the space besides the baseline (fewer if the space
    has fewer), always the same ones."""
    rng, baseline = random.Random("random pool"), baseline_genome().key()
    pool: dict[str, Genome] = {}
    for _ in range(50 * size):
        if len(pool) == size:
            break
        genome = operators.random_genome(rng, 50, space)
        if genome.key() != baseline:
            pool.setdefault(genome.key(), genome)
    return list(pool.values())


def proposers(settings: Settings, space: SearchSpace, pool: Sequence[Genome]) -> dict[str, Propose]:
    """Each brain's proposal as the planner makes it, from the same search settings and
    genome space; random search's are `pool`'s genomes in an order of its seed's."""
    search = settings.search

    def rng(seed: int, step: int) -> random.Random:
        return random.Random(f"{seed}:{step}")

    def heuristic(seed: int, step: int, history: list[PoolEntry], seen: Container[str]) -> Proposal:
        brain = HeuristicBrain(
            rng(seed, step),
            tournament_size=search.tournament_size,
            crossover_rate=search.crossover_rate,
            random_rate=search.random_rate,
            space=space,
        )
        scored = [e for e in history if math.isfinite(e.score)]
        return brain.propose(sorted(scored, key=lambda e: -e.score)[:50], seen)  # parent_pool

    @functools.cache
    def order(seed: int) -> list[Genome]:
        return random.Random(f"random:{seed}").sample(list(pool), len(pool))

    def uniform(seed: int, step: int, history: list[PoolEntry], seen: Container[str]) -> Proposal:
        genome = order(seed)[step - 1]
        return Proposal(genome, [], "random", "a uniform draw", "", "")

    def evolution(seed: int, step: int, history: list[PoolEntry], seen: Container[str]) -> Proposal:
        brain = RegularizedEvolution(
            rng(seed, step), search.population, search.tournament_size, space=space
        )
        return brain.propose(history, seen)

    def tpe(seed: int, step: int, history: list[PoolEntry], seen: Container[str]) -> Proposal:
        return TPE(rng(seed, step).randrange(2**32), space=space).propose(history, seen)

    return {"random": uniform, "heuristic": heuristic, "evolution": evolution, "tpe": tpe}


@dataclass(frozen=True)
class Step:
    """One trial of a search: its genome's score trained whole, the best score so far, the
    training CPU seconds so far, and whether early stopping ended it (`wrongly`: its whole
    score would have beaten the one it was stopped against)."""

    score: float
    best: float
    cpu_s: float
    stopped: bool = False
    wrongly: bool = False


def search(
    landscape: Landscape,
    propose: Propose,
    seed: int,
    trials: int,
    early_stop: bool,
    yardstick: Sequence[Evaluation] = (),
) -> list[Step]:
    """One search replayed over the landscape: the baseline genome, then `trials` - 1
    proposals, each stopped early where the ladder's rule would stop it: against the best
    of its parents that beat the baseline (as the ladder's confirmed parents), else
    against the baseline, with the whole curves of the search and of the `yardstick`
    (a run's random samples, which always train whole) as the rule's evidence."""
    base = baseline_genome()
    reference = landscape(base)
    history = [PoolEntry("c0", reference.score, base)]
    whole = {"c0": reference}  # the trials that ran to the end
    seen = {base.key()}
    steps = [Step(reference.score, reference.score, reference.cpu_s)]
    for step in range(1, trials):
        proposal = propose(seed, step, history, seen)
        seen.add(proposal.genome.key())
        outcome = landscape(proposal.genome)
        score, best, cpu_s = outcome.score, outcome.score, outcome.cpu_s
        target = max(
            [reference.score, *(whole[p].score for p in proposal.parent_ids if p in whole)]
        )
        # (never its own curve: a yardstick genome proposed again knows no more than another)
        curves = [w.curve for w in (*yardstick, *whole.values()) if w.curve and w is not outcome]
        stopped_at = _stopped_at(landscape, outcome, target, curves) if early_stop else None
        if stopped_at is not None:
            metrics = landscape.task.curve_metrics(outcome.curve[:stopped_at])
            score = landscape.fitness.score(metrics, outcome.n_params, 0.0)
            best = -math.inf  # a stopped candidate is never accepted
            cpu_s = outcome.cpu_s_until(stopped_at)
        else:
            whole[f"c{step}"] = outcome
        history.append(PoolEntry(f"c{step}", score, proposal.genome))
        stopped = stopped_at is not None
        steps.append(
            Step(
                outcome.score,
                max(steps[-1].best, best),
                steps[-1].cpu_s + cpu_s,
                stopped,
                stopped and outcome.score > target,
            )
        )
    return steps


def _stopped_at(
    landscape: Landscape,
    outcome: Evaluation,
    target: float,
    full_curves: Sequence[Sequence[dict[str, float]]],
) -> int | None:
    """The checkpoints after which the ladder's rule stops this trial (its target: the
    baseline's score), or None if it runs whole."""
    fitness = landscape.fitness
    rule = EarlyStop(
        task=landscape.task,
        data=landscape.data,
        fitness=fitness,
        budget=landscape.task.budgets["proxy"],
        n_params=outcome.n_params,
        target=target,
        target_name="the baseline's score",
        curves=full_curves,
    )
    for k in range(1, len(outcome.curve) + 1):
        if rule.decides(k) and rule.verdict(outcome.curve[:k]):
            return k
    return None


def random_best_of(scores: Sequence[float], draws: int) -> float:
    """The median best of `draws` scores drawn from `scores` with replacement (2,000
    resamples, seeded): random search's expected best at that budget."""
    rng = random.Random(0)
    return statistics.median(max(rng.choices(scores, k=draws)) for _ in range(2000))


def _median(values: Sequence[float | None]) -> float | None:
    """The median, a miss (None) ranking after every value; None if it lands on one."""
    median = statistics.median(math.inf if v is None else v for v in values)
    return None if math.isinf(median) else median


def summary(searches: Sequence[Sequence[Step]], target: float) -> dict[str, Any]:
    """What the searches of one brain did (each a list of Steps): per seed, the trials and
    the training CPU seconds to reach `target` (None: not within its trials), their
    medians, the mean best after 16 and 32 trials (None: fewer trials), the mean training
    CPU seconds of a whole search, and how many trials early stopping ended (wrongly)."""
    reached = [
        next((t for t, s in enumerate(steps, 1) if s.best >= target), None) for steps in searches
    ]
    cpu_s = [
        None if t is None else steps[t - 1].cpu_s
        for t, steps in zip(reached, searches, strict=True)
    ]

    def best_at(t: int) -> float | None:
        if any(len(steps) < t for steps in searches):
            return None
        return statistics.mean(steps[t - 1].best for steps in searches)

    trials = [step for steps in searches for step in steps]
    return {
        "trials_to_target_median": _median(reached),
        "cpu_s_to_target_median": _median(cpu_s),
        "best_at_16_mean": best_at(16),
        "best_at_32_mean": best_at(32),
        "cpu_s_mean": statistics.mean(steps[-1].cpu_s for steps in searches),
        "stopped": sum(step.stopped for step in trials),
        "wrongly_stopped": sum(step.wrongly for step in trials),
        "trials_to_target": reached,
        "cpu_s_to_target": cpu_s,
    }


def compare_brains(
    settings: Settings, task_name: str, seeds: int | None, quick: bool
) -> dict[str, Any]:
    """Every brain of BRAINS on the task configured in `settings`, over `seeds` search
    seeds, with early stopping and without, replayed over the task's landscape (kept in
    HOME/bench, so a later comparison trains only genomes it has not seen)."""
    require_optuna()
    task = get_task(task_name, settings.tasks.get(task_name))
    f = settings.fitness
    fitness = Fitness.for_task(task, f.metric, f.direction, f.param_penalty, f.latency_penalty)
    data_seed = settings.run.data_seed
    cache = settings.home_dir / "bench" / f"landscape-{task.fingerprint(data_seed)}.jsonl"
    cache.parent.mkdir(parents=True, exist_ok=True)
    landscape = Landscape(task, fitness, data_seed, cache)
    n_seeds = COMPARISON_SEEDS[quick] if seeds is None else seeds
    random_trials, trials = COMPARISON_TRIALS[quick]
    space = SearchSpace.for_task(task, settings.executor.gpus_per_trial)
    pool = uniform_pool(space, RANDOM_POOL[quick])
    if len(pool) < random_trials - 1:
        raise ConfigError(f"the search space of {task_name} has too few genomes to compare on")
    propose = proposers(settings, space, pool)
    # whole searches first, and neighbours in the queue different seeds: two searches that
    # walk the same genomes at once would wait on each other's trainings
    runs = [(b, s, early) for early, b, s in product((False, True), BRAINS, range(n_seeds))]

    # a run's yardstick, the random samples every run of the task trains whole: curves
    # that early stopping learns from in every search, as in a run
    yardstick = [landscape(genome) for genome in pool[: settings.search.random_samples]]

    def run(key: tuple[str, int, bool]) -> list[Step]:
        brain, seed, early_stop = key
        budget = random_trials if brain == "random" else trials
        return search(landscape, propose[brain], seed, budget, early_stop, yardstick)

    workers = settings.executor.workers or os.cpu_count() or 1
    with ThreadPoolExecutor(workers) as threads:
        searches = dict(zip(runs, threads.map(run, runs), strict=True))
    # the pool's draws that random search trained give the target
    draws = [landscape.evaluations[g.key()].score for g in pool if g.key() in landscape.evaluations]
    target = random_best_of(draws, TARGET_DRAWS)
    result: dict[str, Any] = {
        "task": task_name,
        "target": target,
        "search_seeds": n_seeds,
        "trials": trials,
        "random_trials": random_trials,
        "random_pool": len(draws),
        "genomes_trained": len(landscape.evaluations),
    }
    for brain in BRAINS:
        with_stop, without = (
            [searches[brain, seed, early] for seed in range(n_seeds)] for early in (True, False)
        )
        result[brain] = {
            **summary(with_stop, target),
            "without_early_stop": summary(without, target),
        }
    headline = result["heuristic"]["trials_to_target_median"]
    return {
        "search": result,
        "search_trials_to_random_best64": headline if random_trials == TARGET_DRAWS else None,
    }
