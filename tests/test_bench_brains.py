"""`archlab bench --only search --task TASK`: every brain compared on a task's cached
landscape, with early stopping replayed on the cached curves."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archlab.benchmarks import brains
from archlab.benchmarks.brains import Evaluation, Landscape, Step
from archlab.benchmarks.search import SEARCH_MQAR, SEARCH_PROXY_STEPS
from archlab.cli import app
from archlab.config import Settings, load_settings
from archlab.errors import ConfigError
from archlab.eval.fitness import Fitness
from archlab.search.genome import Block, Genome, baseline_genome
from archlab.search.heuristic import PoolEntry, Proposal
from archlab.search.space import SearchSpace
from archlab.tasks import get_task
from archlab.tasks.mqar import MQAR
from support import TINY_MQAR


def test_summary_counts_trials_and_cpu_seconds_to_the_target_and_nulls_misses() -> None:
    """Seed 0 reaches 0.5 at its 2nd trial (3 CPU s), seed 1 at its 3rd (6 s), seed 2
    never: the medians are the 3rd trial and 6 s; 16 trials were not run."""

    def steps(bests: list[float]) -> list[Step]:
        return [Step(b, b, 1.0 + t + sum(range(t + 1))) for t, b in enumerate(bests)]

    searches = [steps([0.1, 0.5, 0.6]), steps([0.1, 0.2, 0.5]), steps([0.1, 0.2, 0.3])]
    summary = brains.summary(searches, target=0.5)
    assert summary["trials_to_target"] == [2, 3, None]
    assert summary["cpu_s_to_target"] == [3.0, 6.0, None]
    assert summary["trials_to_target_median"] == 3
    assert summary["cpu_s_to_target_median"] == 6.0
    assert summary["best_at_16_mean"] is None and summary["best_at_32_mean"] is None
    assert brains.summary(searches[2:], target=0.5)["trials_to_target_median"] is None


def test_random_search_replays_orders_of_one_fixed_pool_of_uniform_draws() -> None:
    """Each search seed walks the same pool in an order of its own, never a genome twice,
    never the baseline: its draws are what random search's outcome is estimated from."""
    space = SearchSpace.for_task(MQAR(**TINY_MQAR))
    pool = brains.uniform_pool(space, 24)
    assert [g.key() for g in pool] == [g.key() for g in brains.uniform_pool(space, 24)]
    keys = {g.key() for g in pool}
    assert len(keys) == 24 and baseline_genome().key() not in keys
    uniform = brains.proposers(Settings(), space, pool)["random"]
    walks = [
        [uniform(seed, step, [], set()).genome.key() for step in range(1, 25)] for seed in (0, 1)
    ]
    assert all(set(walk) == keys for walk in walks) and walks[0] != walks[1]


def _genome(d_model: int) -> Genome:
    return Genome(d_model=d_model, blocks=(Block(mixer="causal_conv", channel="none"),))


def test_a_replayed_search_stops_early_what_cannot_reach_the_baseline(tmp_path: Path) -> None:
    """On a landscape cached beforehand (nothing trains): the baseline's flat curve at 0.5,
    a proposal near 0.1 (stopped after a quarter of its 8 checkpoints: its start-up and a
    quarter of its training, its partial score shown to the brain, never the best), then one at
    0.9 (whole). Without early stopping every trial costs its whole training."""
    task = MQAR(**{**TINY_MQAR, "proxy_steps": 16})  # 8 checkpoints
    fitness = Fitness.for_task(task)
    plan = {1: _genome(32), 2: _genome(48)}
    levels = {baseline_genome().key(): 0.5, plan[1].key(): 0.1, plan[2].key(): 0.9}
    cache = tmp_path / "landscape.jsonl"
    with cache.open("w") as f:
        for key, level in levels.items():
            rising = level == 0.1  # slowly: its partial curve scores below its whole one
            curve = [{"step": 2 * (i + 1), "accuracy": level + rising * i / 100} for i in range(8)]
            score = fitness.score(task.curve_metrics(curve), 1000, 0.0)
            entry = Evaluation(score, curve, 8.0, 0.75, 1000)  # 2 s of start-up
            f.write(json.dumps({"key": key, **entry.__dict__}) + "\n")
    landscape = Landscape(task, fitness, 0, cache)
    score = {key: landscape.evaluations[key].score for key in levels}
    seen_by_brain: list[list[PoolEntry]] = []

    def propose(seed: int, step: int, history: list[PoolEntry], seen: object) -> Proposal:
        seen_by_brain.append(list(history))
        return Proposal(plan[step], [], "new", "h", "m", "e")

    stopped = brains.search(landscape, propose, seed=0, trials=3, early_stop=True)
    base, low, high = (score[g.key()] for g in (baseline_genome(), plan[1], plan[2]))
    assert [s.best for s in stopped] == [base, base, high]
    # the stopped trial: its 2 s of start-up and a quarter of its 6 s of training
    assert [s.cpu_s for s in stopped] == [8.0, 8.0 + 3.5, 19.5]
    partial = seen_by_brain[1][1].score
    assert partial < low < base  # the partial curve's score, not its whole one's
    whole = brains.search(landscape, propose, seed=0, trials=3, early_stop=False)
    assert [s.cpu_s for s in whole] == [8.0, 16.0, 24.0]
    assert seen_by_brain[-1][1].score == low
    assert len(landscape.evaluations) == 3  # nothing trained


def test_a_broken_landscape_cache_is_refused_with_its_line(tmp_path: Path) -> None:
    cache = tmp_path / "landscape.jsonl"
    entry = (
        '{"key": "k", "score": 1.0, "curve": [], "cpu_s": 1.0, "train_share": 0.5, "n_params": 1}'
    )
    cache.write_text(entry + '\n{"ke')
    with pytest.raises(ConfigError, match=r"landscape.jsonl, line 2: not a landscape entry"):
        Landscape(MQAR(**TINY_MQAR), Fitness.for_task(MQAR(**TINY_MQAR)), 0, cache)


def test_misused_search_flags_are_refused_before_anything_runs() -> None:
    runner = CliRunner()
    alone = runner.invoke(app, ["bench", "--only", "search", "--search-seeds", "2"]).exception
    assert isinstance(alone, ConfigError) and str(alone) == "--search-seeds needs --task"
    other = runner.invoke(app, ["bench", "--only", "memory", "--task", "mqar"]).exception
    assert isinstance(other, ConfigError) and "add search to --only" in str(other)


def test_a_replayed_child_must_beat_its_parent_where_the_parent_beat_the_baseline(
    tmp_path: Path,
) -> None:
    """As the ladder holds a child of a confirmed parent to that parent: a child at 0.6 of
    a parent at 0.9 is stopped (the baseline is at 0.5), and counted as stopped rightly;
    without early stopping it trains whole."""
    task = MQAR(**{**TINY_MQAR, "proxy_steps": 16})  # 8 checkpoints
    fitness = Fitness.for_task(task)
    parent, child = _genome(32), _genome(48)
    levels = {baseline_genome().key(): 0.5, parent.key(): 0.9, child.key(): 0.6}
    cache = tmp_path / "landscape.jsonl"
    with cache.open("w") as f:
        for key, level in levels.items():
            curve = [{"step": 2 * (i + 1), "accuracy": level} for i in range(8)]
            score = fitness.score(task.curve_metrics(curve), 1000, 0.0)
            f.write(json.dumps({"key": key, **Evaluation(score, curve, 8.0, 0.75, 1000).__dict__}))
            f.write("\n")
    landscape = Landscape(task, fitness, 0, cache)

    def propose(seed: int, step: int, history: list[PoolEntry], seen: object) -> Proposal:
        if step == 1:
            return Proposal(parent, [], "new", "h", "m", "e")
        return Proposal(child, ["c1"], "mutate", "h", "m", "e")

    stopped = brains.search(landscape, propose, seed=0, trials=3, early_stop=True)
    assert [(s.stopped, s.wrongly) for s in stopped] == [(False, False)] * 2 + [(True, False)]
    assert stopped[2].cpu_s - stopped[1].cpu_s == pytest.approx(3.5)  # a quarter trained
    whole = brains.search(landscape, propose, seed=0, trials=3, early_stop=False)
    assert not any(s.stopped for s in whole) and whole[2].cpu_s == 24.0


@pytest.mark.slow
def test_bench_compares_every_brain_on_the_configured_task(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The whole measurement on a tiny MQAR read from the config file (real trainings),
    then again over the cached landscape: nothing trains twice."""
    monkeypatch.setitem(brains.COMPARISON_TRIALS, True, (3, 2))
    config = tmp_path / "archlab.toml"
    options = "\n".join(f"{k} = {v}" for k, v in {**TINY_MQAR, "proxy_steps": 8}.items())
    config.write_text(f'home = "{tmp_path / "home"}"\n[tasks.mqar]\n{options}\n')
    out = tmp_path / "bench.json"
    argv = ["--config", str(config), "bench", "--quick", "--only", "search", "--task", "mqar"]
    result = CliRunner().invoke(app, [*argv, "--search-seeds", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    search = results["search"]
    assert search["task"] == "mqar" and isinstance(search["target"], float)
    keys = {"trials_to_target_median", "best_at_16_mean", "best_at_32_mean"}
    for brain in brains.BRAINS:
        assert keys | {"cpu_s_to_target_median", "without_early_stop"} <= search[brain].keys()
        assert len(search[brain]["trials_to_target"]) == 1
    assert results["search_trials_to_random_best64"] is None  # random had 3 trials, not 64
    (cache,) = (tmp_path / "home" / "bench").iterdir()
    entries = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(entries) == search["genomes_trained"]
    # the harness's training loop is part of each trial, start-up the rest
    assert all(0 < e["train_share"] < 1 for e in entries if e["curve"])
    again = CliRunner().invoke(app, [*argv, "--search-seeds", "1", "--json", str(out)])
    assert again.exit_code == 0, again.output
    assert json.loads(out.read_text())["search"]["genomes_trained"] == search["genomes_trained"]
    assert all(brain in result.output for brain in brains.BRAINS)  # the table of brains


def test_the_search_benchmarks_config_is_its_reduced_mqar() -> None:
    """benchmarks/search_mqar.toml replays the search benchmark's own task."""
    config = tomllib.loads((Path(__file__).parents[1] / "benchmarks/search_mqar.toml").read_text())
    assert config["tasks"]["mqar"] == {**SEARCH_MQAR, "proxy_steps": SEARCH_PROXY_STEPS}


@pytest.mark.parametrize("name", ["mqar", "mad", "charlm", "digits"])
def test_each_landscape_config_sets_up_one_small_task_whose_landscape_is_kept(name: str) -> None:
    """benchmarks/search_{mqar,mad,charlm,digits}.toml: one task each, valid as a run reads
    it, with a proxy short enough for a landscape of hundreds of genomes, and the landscape
    the performance doc's figures come from kept under its fingerprint (a change to the task
    that moves the fingerprint leaves the kept one behind: train it again)."""
    benchmarks = Path(__file__).parents[1] / "benchmarks"
    settings = load_settings(benchmarks / f"search_{name}.toml")
    ((task_name, options),) = settings.tasks.items()
    task = get_task(task_name, options)
    assert task.budgets["proxy"].steps <= 128 and task.spec["seq_len"] <= 64
    fingerprint = task.fingerprint(settings.run.data_seed)
    assert (benchmarks / "landscapes" / f"landscape-{fingerprint}.jsonl.gz").is_file()
