"""Tests for archlab.search.heuristic: the offline evolutionary proposer."""

from __future__ import annotations

import importlib.util
import itertools
import random
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from archlab.search.genome import Block, Genome, baseline_genome, count_params, render
from archlab.search.heuristic import HeuristicBrain, PoolEntry, Proposal
from archlab.search.motifs import conv_before_attention, gated_mlps, widest
from archlab.search.space import (
    MAX_PARAMS,
    MAX_RELATIVE_COST,
    REFERENCE,
    SEARCH_D_MODELS,
    SEARCH_MAX_BLOCKS,
    changed,
    valid_heads,
)
from archlab.search.surrogate import FEATURES, Surrogate, features

_counter = itertools.count()


def brain(seed: int = 0, **kw: Any) -> HeuristicBrain:
    """The brain without its published improvements (search.motifs), unless given: the
    evolution's own mechanics."""
    return HeuristicBrain(random.Random(seed), **{"motifs": (), **kw})


def make_pool(n: int, seed: int = 0) -> list[PoolEntry]:
    """n evolvable entries with distinct random genomes and scores 0..n-1."""
    b = brain(seed)
    genomes: dict[str, Genome] = {}
    while len(genomes) < n:
        g = b.random_genome()
        genomes.setdefault(g.key(), g)
    return [PoolEntry(f"c{i}", float(i), g) for i, g in enumerate(genomes.values())]


def as_tuple(p: Proposal) -> tuple[object, ...]:
    return (p.genome.key(), p.parent_ids, p.operator, p.hypothesis, p.motivation, p.expected_effect)


class SeesEverything:
    def __contains__(self, key: object) -> bool:
        return True


# -- propose ---------------------------------------------------------------------------------


def test_empty_pool_seeds_the_baseline() -> None:
    p = brain().propose([], set())
    assert p.operator == "seed" and p.parent_ids == []
    assert p.genome == baseline_genome()
    assert baseline_genome().describe() in p.hypothesis


def test_hand_written_entries_count_as_empty_pool() -> None:
    pool = [PoolEntry("hand", 99.0, None)]
    assert brain().propose(pool, set()).operator == "seed"
    seen = {baseline_genome().key()}
    for seed in range(20):
        p = brain(seed).propose(pool, seen)
        assert p.operator in {"mutate", "random"}
        assert p.genome.key() not in seen
        assert p.parent_ids == []  # the baseline genome is not a pool candidate


def test_propose_is_deterministic_given_seed() -> None:
    pool = make_pool(6)
    seen = {e.genome.key() for e in pool if e.genome is not None}
    runs = [[as_tuple(brain(seed).propose(pool, seen)) for seed in range(25)] for _ in range(2)]
    assert runs[0] == runs[1]
    assert len({r[0] for r in runs[0]}) > 10  # and different seeds explore different genomes
    b1, b2 = brain(3), brain(3)
    assert [as_tuple(b1.propose(pool, seen)) for _ in range(10)] == [
        as_tuple(b2.propose(pool, seen)) for _ in range(10)
    ]


def test_propose_is_novel_across_an_evolution_run() -> None:
    b = brain(11)
    pool: list[PoolEntry] = []
    seen: set[str] = set()
    operators: Counter[str] = Counter()
    for step in range(80):
        p = b.propose(pool, seen)
        assert p.genome.key() not in seen
        assert REFERENCE.within_budget(p.genome)
        seen.add(p.genome.key())
        operators[p.operator] += 1
        pool.append(PoolEntry(f"c{step}", -REFERENCE.relative_cost(p.genome), p.genome))
    assert operators["seed"] == 1
    assert operators["mutate"] > operators["crossover"] > 0
    assert operators["random"] > 0


def test_propose_gives_up_after_bounded_retries() -> None:
    pool = make_pool(4)
    p = brain(max_attempts=5).propose(pool, SeesEverything())
    assert isinstance(p, Proposal)
    p = brain().propose([], SeesEverything())
    assert isinstance(p, Proposal)


def test_entries_without_genome_are_never_parents() -> None:
    evolvable = make_pool(3)
    hand = [PoolEntry(f"hand{i}", 100.0 + i, None) for i in range(5)]
    pool = hand[:2] + evolvable + hand[2:]
    ids = {e.candidate_id for e in evolvable}
    seen = {e.genome.key() for e in evolvable if e.genome is not None}
    parents: set[str] = set()
    for seed in range(150):
        b = brain(seed, crossover_rate=0.5)
        p = b.propose(pool, seen)
        parents |= set(p.parent_ids)
        assert b.tournament(pool).genome is not None
    assert parents and parents <= ids


def test_operator_rates() -> None:
    pool = make_pool(5)
    seen = {e.genome.key() for e in pool if e.genome is not None}
    for seed in range(10):
        p = brain(seed, random_rate=1.0).propose(pool, seen)
        assert p.operator == "random" and p.parent_ids == []
        p = brain(seed, random_rate=0.0, crossover_rate=1.0).propose(pool, seen)
        assert p.operator == "crossover" and len(set(p.parent_ids)) == 2
        p = brain(seed, random_rate=0.0, crossover_rate=1.0).propose(pool[:1], seen)
        assert p.operator == "mutate" and p.parent_ids == ["c0"]  # crossover needs two


def test_plan_texts_are_specific() -> None:
    pool = make_pool(5)
    by_id = {e.candidate_id: e for e in pool}
    seen = {e.genome.key() for e in pool if e.genome is not None}
    kinds = set()
    for seed in range(40):
        p = brain(seed).propose(pool, seen)
        kinds.add(p.operator)
        assert p.hypothesis and p.motivation and p.expected_effect
        assert p.hypothesis.endswith(".") and p.hypothesis.count(". ") == 0  # one sentence
        for pid in p.parent_ids:
            parent = by_id[pid].genome
            assert parent is not None
            assert parent.describe() in p.hypothesis + p.motivation
            assert pid in p.motivation
        if p.operator == "mutate":
            assert p.hypothesis.startswith("Applying '")
        assert "parameters" in p.expected_effect
    assert {"mutate", "crossover"} <= kinds


# -- operators -------------------------------------------------------------------------------


def test_tournament_prefers_higher_scores() -> None:
    pool = make_pool(10)
    b = brain(5)
    wins = Counter(b.tournament(pool).score for _ in range(3000))
    # Size-3 tournaments without replacement: the two worst can never win, the best wins
    # whenever drawn (3/10 of the time), and the mean winner is E[max of 3] = 870/120 = 7.25.
    assert wins[0.0] == 0 and wins[1.0] == 0
    assert 0.26 < wins[9.0] / 3000 < 0.34
    mean = sum(score * n for score, n in wins.items()) / 3000
    assert 7.0 < mean < 7.5
    assert brain(tournament_size=100).tournament(pool).score == 9.0  # whole pool


def test_tournament_ranks_failed_scores_last_and_needs_a_genome() -> None:
    g = baseline_genome()
    pool = [PoolEntry("nan", float("nan"), g), PoolEntry("ok", -5.0, g)]
    assert all(brain(s, tournament_size=2).tournament(pool).candidate_id == "ok" for s in range(5))
    with pytest.raises(ValueError):
        brain().tournament([PoolEntry("hand", 1.0, None)])


def test_random_genome_deterministic_and_in_search_space() -> None:
    assert [brain(4).random_genome() for _ in range(3)] == [brain(4).random_genome()] * 3
    b = brain(9)
    genomes = [b.random_genome() for _ in range(200)]
    assert len({g.key() for g in genomes}) > 150
    for g in genomes:
        assert g.d_model in SEARCH_D_MODELS and 1 <= len(g.blocks) <= SEARCH_MAX_BLOCKS
        assert g.n_heads in valid_heads(g.d_model)
        assert g == g.canonical()
    mixers = Counter(blk.mixer for g in genomes for blk in g.blocks)
    assert len(mixers) == 4 and min(mixers.values()) > 40


_EDIT = re.compile(
    r"^(block \d+ (mixer|channel) \w+ -> \w+"
    r"|add block \d+ \w+\+\w+|remove block \d+ \w+\+\w+"
    r"|d_model \d+ -> \d+( \(n_heads \d+ -> \d+\))?"
    r"|(n_heads|mlp_ratio|conv_kernel) \d+ -> \d+"
    r"|norm \w+ -> \w+|residual \w+ -> \w+)$"
)


def test_mutate_makes_one_or_two_valid_edits() -> None:
    b = brain(2)
    parents = [baseline_genome()] + [b.random_genome() for _ in range(60)]
    n_edits: Counter[int] = Counter()
    for parent in parents:
        child, change = b.mutate(parent)
        assert child.key() != parent.key()
        assert REFERENCE.within_budget(child)
        edits = change.split("; ")
        n_edits[len(edits)] += 1
        for edit in edits:
            assert _EDIT.match(edit), edit
    assert set(n_edits) == {1, 2}
    m1, m2 = brain(8).mutate(baseline_genome()), brain(8).mutate(baseline_genome())
    assert m1 == m2


def test_mutate_describes_the_change_precisely() -> None:
    parent = baseline_genome()
    for seed in range(40):
        child, change = brain(seed).mutate(parent)
        m = re.fullmatch(r"block (\d+) mixer (\w+) -> (\w+)", change)
        if m:
            i = int(m.group(1)) - 1
            assert parent.blocks[i].mixer == m.group(2)
            assert child.blocks[i].mixer == m.group(3)
        m = re.fullmatch(r"norm (\w+) -> (\w+)", change)
        if m:
            assert (parent.norm, child.norm) == m.groups()


def test_mutate_over_budget_parent_gets_cheaper() -> None:
    big = Genome(
        d_model=256,
        n_heads=8,
        blocks=(Block(mixer="softmax_attention", channel="gated_mlp"),) * 6,
    )
    assert not REFERENCE.within_budget(big)
    for seed in range(10):
        child, _ = brain(seed).mutate(big)
        assert REFERENCE.relative_cost(child) < REFERENCE.relative_cost(big)


def test_crossover_mixes_parents() -> None:
    pool = make_pool(12, seed=3)
    b = brain(6)
    for a, c in zip(pool[::2], pool[1::2], strict=True):
        assert a.genome is not None and c.genome is not None
        child = b.crossover(a.genome, c.genome)
        assert REFERENCE.within_budget(child)
        assert child.key() not in {a.genome.key(), c.genome.key()}
        assert set(child.blocks) <= set(a.genome.blocks) | set(c.genome.blocks)
        assert child.blocks[0] == a.genome.blocks[0]  # a non-empty prefix of the first parent
        assert child.d_model in {a.genome.d_model, c.genome.d_model}
        assert child.norm in {a.genome.norm, c.genome.norm}
    x, y = pool[0].genome, pool[1].genome
    assert x is not None and y is not None
    assert brain(1).crossover(x, y) == brain(1).crossover(x, y)


# -- budget ----------------------------------------------------------------------------------


def test_parameter_budget_holds_for_200_random_genomes(tmp_path: Path) -> None:
    b = brain(2024)
    for i in range(200):
        g = b.random_genome()
        assert REFERENCE.relative_cost(g) <= MAX_RELATIVE_COST
        n = count_params(g, 256, 128)
        assert n <= MAX_PARAMS
        if i % 20 == 0:  # the analytic count is exact: check it against real models
            name = f"budget_{next(_counter)}"
            path = tmp_path / f"{name}.py"
            path.write_text(render(g))
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            model = module.build_model(SimpleNamespace(vocab_size=256, seq_len=128))
            assert sum(p.numel() for p in model.parameters()) == n


def test_budget_rejects_large_models() -> None:
    assert REFERENCE.within_budget(baseline_genome())
    assert REFERENCE.relative_cost(baseline_genome()) == pytest.approx(1.0)
    wide = Genome(d_model=128, blocks=(Block(mixer="softmax_attention", channel="mlp"),) * 4)
    assert REFERENCE.relative_cost(wide) > MAX_RELATIVE_COST and not REFERENCE.within_budget(wide)
    huge = Genome(d_model=256, blocks=(Block(mixer="linear_attention", channel="gated_mlp"),) * 6)
    assert count_params(huge, 256, 128) > MAX_PARAMS and not REFERENCE.within_budget(huge)


def test_budget_genome_trains_like_the_baseline() -> None:
    """A quick sanity check that the budgeted models are real, trainable torch models."""
    b = brain(0)
    g = max((b.random_genome() for _ in range(30)), key=REFERENCE.relative_cost)
    name = f"train_{next(_counter)}"
    namespace: dict[str, object] = {"__name__": name}
    exec(compile(render(g), name, "exec"), namespace)
    torch.manual_seed(0)
    model = namespace["build_model"](SimpleNamespace(vocab_size=16, seq_len=12))  # type: ignore[operator]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.arange(12).repeat(4, 1) % 16
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threading only adds overhead
    try:
        for _ in range(30):
            logits = model(x[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 16), x[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    assert losses[-1] < 0.5 * losses[0]


# -- the surrogate ---------------------------------------------------------------------------


def _like_baseline(**changes: Any) -> Genome:
    return Genome.model_validate({**baseline_genome().model_dump(), **changes}).canonical()


def test_surrogate_prefers_the_feature_that_scored_better() -> None:
    b = brain(1)
    genomes = [b.random_genome() for _ in range(40)]
    scores = [g.d_model / 128 + 0.01 * (i % 3) for i, g in enumerate(genomes)]  # wider: better
    model = Surrogate.fit(genomes, scores)
    assert model is not None and model.n == 40 and model.best == max(scores)
    narrow, wide = model.predict([_like_baseline(d_model=32), _like_baseline(d_model=128)])
    assert wide.mean > narrow.mean + 0.3
    assert wide.improvement > narrow.improvement
    assert {name for name, _ in wide.reasons[:2]} & {"width", "attention width"}
    assert all(c > 0 for name, c in wide.reasons if name == "width")


def test_surrogate_is_unsure_away_from_what_was_tried() -> None:
    b = brain(2)
    tried = [baseline_genome()] + [b.mutate(baseline_genome())[0] for _ in range(6)]
    model = Surrogate.fit(tried, [0.1 * i for i in range(len(tried))])
    assert model is not None
    conv = Genome(
        d_model=128,
        blocks=(Block(mixer="causal_conv", channel="none"),) * 4,
        norm="rmsnorm",
        residual="post_norm",
    )
    near, far = model.predict([baseline_genome(), conv])
    assert far.std > 2 * near.std
    assert model.predict([conv]) == [far]  # deterministic


def test_the_surrogate_sees_whether_a_local_mixer_feeds_attention() -> None:
    # same composition, other order: only a stack whose conv comes first scores well (as on
    # associative recall, where a shift ahead of attention makes an induction head)
    def stack(*mixers: str, d_model: int = 64) -> Genome:
        blocks = [{"mixer": m, "channel": "mlp"} for m in mixers]
        return _like_baseline(blocks=blocks, d_model=d_model)

    local = features(stack("causal_conv", "softmax_attention"))
    late = features(stack("softmax_attention", "causal_conv"))
    alone = features(stack("causal_conv", "gated_recurrence"))
    i = FEATURES.index("local mixer before attention")
    assert (local[i], late[i], alone[i]) == (1.0, 0.0, 0.0)
    assert local[:i] == late[:i]  # the shares alone cannot tell them apart
    tried = [
        stack(*order, d_model=d)
        for d in (64, 96)
        for order in (("causal_conv", "softmax_attention"), ("softmax_attention", "causal_conv"))
    ]
    model = Surrogate.fit(tried, [0.5, 0.1, 0.6, 0.1])
    assert model is not None
    first, after = model.predict(
        [
            stack("gated_recurrence", "linear_attention", d_model=80),
            stack("linear_attention", "gated_recurrence", d_model=80),
        ]
    )
    assert first.mean > after.mean + 0.2


def test_surrogate_needs_a_finite_score() -> None:
    g = baseline_genome()
    assert Surrogate.fit([], []) is None
    assert Surrogate.fit([g], [float("nan")]) is None
    model = Surrogate.fit([g, _like_baseline(d_model=96)], [0.5, float("-inf")])
    assert model is not None and model.n == 1
    (p,) = model.predict([g])
    assert p.mean == pytest.approx(0.5) and p.std > 0
    assert len(features(g)) == len(FEATURES)


def test_screened_mutations_follow_the_scores() -> None:
    pool = [PoolEntry(e.candidate_id, e.genome.d_model / 128, e.genome) for e in make_pool(10)]
    seen = {e.genome.key() for e in pool}

    def mean_width(candidates: int) -> float:
        widths = []
        for seed in range(30):
            b = brain(seed, random_rate=0.0, crossover_rate=0.0, candidates=candidates)
            widths.append(b.propose(pool, seen).genome.d_model)
        return sum(widths) / len(widths)

    assert mean_width(48) > mean_width(1) + 12


def test_search_beats_random_sampling_at_equal_budget() -> None:
    """On a synthetic score (closeness of the cost to 2x the baseline's, pre-norm and a
    gated MLP rewarded), the brain's best of 12 trials beats random sampling's best of 12
    on average; the first trial is the baseline in both."""

    def score(g: Genome) -> float:
        gated = any(blk.channel == "gated_mlp" for blk in g.blocks)
        return (
            -abs(REFERENCE.relative_cost(g) - 2.0) - 0.3 * (g.residual == "post_norm") + 0.2 * gated
        )

    def best_of(trials: int, seed: int, random_rate: float) -> float:
        b = brain(seed, random_rate=random_rate)
        pool = [PoolEntry("c0", score(baseline_genome()), baseline_genome())]
        seen = {baseline_genome().key()}
        for i in range(1, trials):
            p = b.propose(pool, seen)
            assert p.genome.key() not in seen
            seen.add(p.genome.key())
            pool.append(PoolEntry(f"c{i}", score(p.genome), p.genome))
        return max(e.score for e in pool)

    heuristic = [best_of(12, seed, 0.1) for seed in range(6)]
    random_search = [best_of(12, seed, 1.0) for seed in range(6)]
    assert sum(heuristic) / 6 > sum(random_search) / 6 + 0.1


def test_plans_explain_the_surrogates_pick() -> None:
    pool = make_pool(6)
    seen = {e.genome.key() for e in pool if e.genome is not None}
    operators = set()
    for seed in range(50):  # the surrogate prefers a random draw to every edit a few times
        p = brain(seed, random_rate=0.0, crossover_rate=0.0).propose(pool, seen)
        operators.add(p.operator)
        assert "Of 64 candidates (48 edits of tournament winners and 16 random draws)" in (
            p.motivation
        )
        assert "surrogate fitted to the 6 scored genomes" in p.motivation
        assert "the surrogate predicts" in p.expected_effect
        if p.operator == "new":  # a screened draw is no uniform sample: not "random"
            assert p.parent_ids == [] and "drawn at random" in p.hypothesis
    assert operators == {"mutate", "new"}
    p = brain(0, random_rate=0.0, crossover_rate=1.0).propose(pool, seen)
    assert p.operator == "crossover" and "Of 16 crossovers" in p.motivation
    # with a single score the surrogate can only rank by distance: edits only
    p = brain(0, random_rate=0.0, crossover_rate=0.0).propose(pool[:1], set())
    assert p.operator == "mutate" and "Of 48 edits of tournament winners," in p.motivation
    with pytest.raises(ValueError):
        brain(candidates=0)


# --- published improvements (search.motifs) -------------------------------------------------


def test_the_best_genome_gets_its_published_improvements_before_any_edit() -> None:
    """From the baseline alone: a short convolution before attention first (one edit in
    hundreds of random ones, and on the default MQAR 5-8x the baseline), then gated MLPs,
    then the widest model the budget allows, then the evolution's own edits."""
    base = baseline_genome()
    pool, seen = [PoolEntry("base", 0.1, base)], {base.key()}
    first = HeuristicBrain(random.Random(0)).propose(pool, seen)
    assert first.genome.describe() == (
        "d64 h1 ln pre mlp4 k4 [causal_conv+none, softmax_attention+mlp, softmax_attention+mlp]"
    )
    assert (first.operator, first.parent_ids) == ("mutate", ["base"])
    assert "add block 1 causal_conv+none before attention" in first.hypothesis
    assert "H3" in first.hypothesis
    seen.add(first.genome.key())
    second = HeuristicBrain(random.Random(0)).propose(pool, seen)
    assert [b.channel for b in second.genome.blocks] == ["gated_mlp", "gated_mlp"]
    seen.add(second.genome.key())
    third = HeuristicBrain(random.Random(0)).propose(pool, seen)
    # at mlp_ratio 4, width 128 would cost 2.7x the baseline's step (the budget: 2.5x)
    assert third.genome == changed(base, d_model=128, mlp_ratio=3)
    assert "d_model 64 -> 128, mlp_ratio 4 -> 3" in third.hypothesis
    assert "Kaplan" in third.hypothesis
    seen.add(third.genome.key())
    fourth = HeuristicBrain(random.Random(0)).propose(pool, seen)
    assert not any(why in fourth.hypothesis for why in ("H3", "SwiGLU", "Kaplan"))
    # without a genome in the pool they improve the baseline, which has no parent id then
    alone = HeuristicBrain(random.Random(0)).propose(
        [PoolEntry("hand", 1.0, None)], seen - {first.genome.key()}
    )
    assert alone.genome == first.genome and alone.parent_ids == []


def test_improvements_follow_the_best_and_apply_only_where_they_fit() -> None:
    base = baseline_genome()
    conv = Block(mixer="causal_conv", channel="none")
    best = changed(base, blocks=(Block(mixer="gated_recurrence", channel="mlp"), *base.blocks))
    pool = [PoolEntry("base", 0.1, base), PoolEntry("best", 0.5, best)]
    proposal = HeuristicBrain(random.Random(0)).propose(pool, {base.key(), best.key()})
    assert proposal.parent_ids == ["best"]
    assert proposal.genome.blocks == (best.blocks[0], conv, *base.blocks)  # before attention
    # a convolution already before attention, no plain MLP: nothing to improve
    done = changed(base, blocks=(conv, Block(mixer="softmax_attention", channel="gated_mlp")))
    assert conv_before_attention(done, REFERENCE) is None and gated_mlps(done, REFERENCE) is None
    assert conv_before_attention(changed(base, blocks=(conv,)), REFERENCE) is None  # no attention
    # the widest width within the budget: as wide as the space goes for a small genome,
    # at a lower MLP ratio where that is what fits, heads kept where the width allows
    # them; none for a genome already as wide as its budget allows
    small = changed(base, blocks=base.blocks[:1], n_heads=2)
    assert widest(small, REFERENCE) == (changed(small, d_model=128), "d_model 64 -> 128")
    narrow = changed(base, d_model=48, n_heads=3)
    child, change = widest(narrow, REFERENCE) or (narrow, "")
    assert child == changed(narrow, d_model=128, n_heads=2, mlp_ratio=3)
    assert REFERENCE.within_budget(child)
    assert change == "d_model 48 -> 128 (n_heads 3 -> 2), mlp_ratio 4 -> 3"
    assert widest(child, REFERENCE) is None
    deep = changed(base, blocks=base.blocks * 2)  # 4 blocks: 96 fits, at mlp_ratio 1
    assert widest(deep, REFERENCE) == (
        changed(deep, d_model=96, mlp_ratio=1),
        "d_model 64 -> 96, mlp_ratio 4 -> 1",
    )


def test_an_improvement_that_hurt_twice_more_often_than_it_helped_is_set_aside() -> None:
    """What the memory shows of each motif decides whether it is tried again: gated MLPs
    that scored below the genomes they were made of twice are not tried on the next best;
    after one such failure (one proxy score, one seed's) they are."""
    base = changed(baseline_genome(), blocks=baseline_genome().blocks[:1])  # one attention
    wide = changed(base, d_model=96)
    gated, _ = gated_mlps(base, REFERENCE) or (base, "")
    wide_gated, _ = gated_mlps(wide, REFERENCE) or (wide, "")
    wide_conv, _ = conv_before_attention(wide, REFERENCE) or (wide, "")

    def proposal(pool: list[PoolEntry]) -> Proposal:
        seen = {e.genome.key() for e in pool if e.genome is not None}
        return HeuristicBrain(random.Random(0), random_rate=0).propose(pool, seen)

    once = [PoolEntry("base", 0.3, base), PoolEntry("gated", 0.2, gated)]
    once += [PoolEntry("wide", 0.4, wide), PoolEntry("wide-conv", 0.45, wide_conv)]
    first = proposal(once)
    assert first.parent_ids == ["wide-conv"] and "SwiGLU" in first.hypothesis
    twice = proposal([*once, PoolEntry("wide-gated", 0.35, wide_gated)])
    assert twice.parent_ids == ["wide-conv"] and "SwiGLU" not in twice.hypothesis
    assert "Kaplan" in twice.hypothesis  # the next one, widening
    # a success makes up for a failure
    helped = proposal([*once, PoolEntry("wide-gated", 0.42, wide_gated)])
    assert "SwiGLU" in helped.hypothesis
