"""The standard search methods as offline brains: regularized evolution and TPE, over the
heuristic brain's genome space, rebuilt from the memory at each step."""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from archlab.config import load_settings
from archlab.errors import ConfigError
from archlab.orchestration.runs import discover, open_memory
from archlab.roles.planner import BaselinePlanner
from archlab.search.baselines import TPE, RegularizedEvolution
from archlab.search.genome import Block, Genome, baseline_genome
from archlab.search.heuristic import PoolEntry
from archlab.search.space import REFERENCE
from support import TINY_MQAR, FakeExecutor, Scripted


def _history(n: int, seed: int = 0) -> list[PoolEntry]:
    """`n` random genomes of the space with distinct scores, in the order proposed."""
    rng = random.Random(seed)
    evolution = RegularizedEvolution(rng, population=n + 1)
    entries: list[PoolEntry] = []
    for i in range(n):
        genome = evolution.propose(entries, {e.genome.key() for e in entries if e.genome}).genome
        entries.append(PoolEntry(f"c{i}", rng.random(), genome))
    return entries


def test_evolution_draws_at_random_until_its_population_is_full() -> None:
    proposal = RegularizedEvolution(random.Random(0), population=4).propose(_history(3), set())
    assert proposal.operator == "random" and proposal.parent_ids == []


def test_evolution_mutates_the_tournament_winner_of_the_youngest_and_ages_out_the_oldest() -> None:
    history = _history(6)
    history[0] = PoolEntry("oldest", 99.0, history[0].genome)  # the best, but too old
    seen = {e.genome.key() for e in history if e.genome}
    # a tournament as large as the population: the best of the 4 youngest always wins
    brain = RegularizedEvolution(random.Random(1), population=4, tournament_size=4)
    youngest = max(history[2:], key=lambda e: e.score)
    for _ in range(5):
        proposal = brain.propose(history, seen)
        assert proposal.operator == "mutate"
        assert proposal.parent_ids == [youngest.candidate_id]
        assert proposal.genome.key() not in seen and REFERENCE.within_budget(proposal.genome)


def test_tpe_is_seeded_novel_and_leaves_out_genomes_outside_its_space() -> None:
    history = _history(12)
    wide = Genome(d_model=256, blocks=(Block(mixer="causal_conv", channel="none"),) * 6)
    history.append(PoolEntry("wide", 5.0, wide))  # a model's proposal, beyond the search
    history.append(PoolEntry("failed", math.nan, baseline_genome()))
    seen = {e.genome.key() for e in history if e.genome}
    first = TPE(seed=3).propose(history, seen)
    assert first == TPE(seed=3).propose(history, seen)  # rebuilt, it proposes the same
    assert first.genome.key() not in seen and REFERENCE.within_budget(first.genome)
    assert "fitted to the 13 candidates" in first.motivation  # the wide one left out
    others = {TPE(seed=s).propose(history, seen).genome.key() for s in range(4, 8)}
    assert len(others | {first.genome.key()}) > 1


def test_tpe_without_optuna_is_refused_with_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 'archlab\[tpe\]'"):
        BaselinePlanner("tpe")


def _discovery(home: Path, brain: str, **search: Any) -> list[dict[str, Any]]:
    settings = load_settings(
        flags={
            "home": str(home),
            "run": {"trials": 6, "seed": 0, "lanes": 1, "brain": brain},
            "tasks": {"mqar": {**TINY_MQAR, "proxy_steps": 8}},
            "ladder": {"confirm_seeds": 1, "scale_top": 0, "early_stop": False},
            "search": {"random_samples": 0, **search},
        },
        environ={},
    )
    scores = {i: Scripted(score=0.1 * i) for i in range(1, 7)}
    run_id = discover(settings, Console(quiet=True), FakeExecutor(scores))
    rows = open_memory(settings.home_dir).candidates(run_id)
    return sorted(rows, key=lambda row: row["created_at"])


@pytest.mark.parametrize("brain", ["evolution", "tpe"])
def test_a_discovery_runs_on_the_brain_and_its_proposals_depend_on_the_memory_alone(
    tmp_path: Path, brain: str
) -> None:
    rows = _discovery(tmp_path / "a", brain, population=3)
    assert [r["brain"] for r in rows] == ["baseline"] + [brain] * 5
    genomes = [Genome.model_validate(r["genome"]).key() for r in rows[1:]]
    assert len(set(genomes)) == 5 and baseline_genome().key() not in genomes
    if brain == "evolution":  # 2 random draws fill the population of 3, then mutations
        operators = [r["plan"]["operator"] for r in rows[1:]]
        assert operators == ["random", "random", "mutate", "mutate", "mutate"]
        # the parent is one of the 3 candidates before it
        for i, row in enumerate(rows[3:], 3):
            assert set(row["parents"]) <= {r["candidate_id"] for r in rows[i - 3 : i]}
    # no state besides the memory: the same seed in another home proposes the same
    again = _discovery(tmp_path / "b", brain, population=3)
    assert [r["genome"] for r in again] == [r["genome"] for r in rows]
