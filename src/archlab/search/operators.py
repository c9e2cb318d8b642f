"""Random edits of genomes: draws from the search space, mutations and crossovers.

Each takes the ``random.Random`` to draw from and how many draws to try (``attempts``)
before falling back to a deterministic repair, so a seeded caller gets the same genomes.
Every genome they return is within the budget of the :class:`~archlab.search.space.
SearchSpace` given (the reference space unless one is), and a mutation of a genome over
budget is at least cheaper.
"""

from __future__ import annotations

import random

from archlab.search.genome import (
    CHANNELS,
    MIXERS,
    NORMS,
    RESIDUALS,
    Block,
    Channel,
    Genome,
    baseline_genome,
)
from archlab.search.space import REFERENCE, SearchSpace, changed, fit_heads, valid_heads

#: Channel choices for new blocks and their probabilities.
_NEW_CHANNELS: tuple[Channel, ...] = ("gated_mlp", "mlp", "none")
_NEW_CHANNEL_WEIGHTS = (0.4, 0.4, 0.2)

_MIXER_WHY = {
    "softmax_attention": "exact content-based lookup over the whole prefix is the most "
    "expressive mixer",
    "linear_attention": "a running key-value state gives global context at linear cost",
    "causal_conv": "a short causal convolution captures local n-gram patterns cheaply",
    "gated_recurrence": "a data-dependent decaying memory summarises the prefix at linear cost",
}
_CHANNEL_WHY = {
    "gated_mlp": "SwiGLU gating usually makes the MLP more expressive at equal parameters",
    "mlp": "a plain GELU MLP is simpler and may optimise more easily in a short run",
    "none": "dropping this MLP saves compute that the other layers can use",
}
_NORM_WHY = {
    "rmsnorm": "RMSNorm is cheaper and usually as stable as LayerNorm",
    "layernorm": "LayerNorm also re-centres activations, which can stabilise training",
}
_RESIDUAL_WHY = {
    "post_norm": "post-norm keeps every sublayer output normalised, which can help shallow models",
    "pre_norm": "pre-norm keeps a clean residual path and usually trains more stably",
}

# Mutation kinds and their relative weights (applicability is checked per genome).
_EDIT_WEIGHTS: dict[str, float] = {
    "mixer": 3.0,
    "channel": 2.0,
    "add_block": 1.5,
    "remove_block": 1.0,
    "d_model": 1.0,
    "n_heads": 1.0,
    "norm": 0.5,
    "residual": 0.5,
    "mlp_ratio": 1.0,
    "conv_kernel": 1.0,
}


def random_genome(rng: random.Random, attempts: int, space: SearchSpace = REFERENCE) -> Genome:
    """A random genome from the search space, within budget."""
    g = baseline_genome()
    for _ in range(attempts):
        d = rng.choice(space.d_models)
        n_blocks = rng.randint(1, space.max_blocks)
        blocks = tuple(
            Block(mixer=rng.choice(MIXERS), channel=_random_channel(rng)) for _ in range(n_blocks)
        )
        g = Genome(
            d_model=d,
            n_heads=rng.choice(valid_heads(d)),
            blocks=blocks,
            norm=rng.choice(NORMS),
            residual=rng.choice(RESIDUALS),
            mlp_ratio=rng.randint(1, 4),
            conv_kernel=rng.randint(2, 8),
        ).canonical()
        if space.within_budget(g):
            return g
    return space.fit_budget(g)


def mutate(
    genome: Genome,
    rng: random.Random,
    attempts: int,
    reach: int = 2,
    space: SearchSpace = REFERENCE,
) -> tuple[Genome, str, str]:
    """1..``reach`` random edits (1 or 2, mostly 1, at reach 2; beyond reach 2 a width edit
    may jump to any search width): the child, what changed (blocks numbered from 1) and why
    it might help. The child differs from ``genome`` (up to canonical form) and is within
    budget; if ``genome`` itself is over budget, the child is at least cheaper."""
    parent = genome.canonical()
    parent_over = not space.within_budget(parent)
    parent_cost = space.relative_cost(parent)
    for _ in range(attempts):
        child = parent
        changes: list[str] = []
        reasons: list[str] = []
        if reach <= 2:
            n_edits = 1 if rng.random() < 0.7 or reach < 2 else 2
        else:
            n_edits = rng.randint(1, reach)
        for _ in range(n_edits):
            child, change, why = _edit(child, rng, space, jump=reach > 2)
            changes.append(change)
            reasons.append(why)
        if child == parent:  # both canonical: equal fields, equal keys
            continue
        ok = space.relative_cost(child) < parent_cost if parent_over else space.within_budget(child)
        if ok:
            return child, "; ".join(changes), ", and ".join(reasons)
    # Practically unreachable: a norm flip always changes the genome at equal cost.
    other = "rmsnorm" if parent.norm == "layernorm" else "layernorm"
    child = space.fit_budget(changed(parent, norm=other))
    return child, f"norm {parent.norm} -> {other}", _NORM_WHY[other]


def _edit(
    g: Genome, rng: random.Random, space: SearchSpace, jump: bool = False
) -> tuple[Genome, str, str]:
    """One random applicable edit: (child, what changed, why it might help); with
    ``jump`` a width edit may go to any search width, else at most 32 away."""
    n = len(g.blocks)
    kinds = [k for k in _EDIT_WEIGHTS if _applicable(g, k, space)]
    kind = rng.choices(kinds, weights=[_EDIT_WEIGHTS[k] for k in kinds])[0]
    if kind == "mixer":
        i = rng.randrange(n)
        old_m = g.blocks[i].mixer
        new_m = rng.choice([m for m in MIXERS if m != old_m])
        blocks = list(g.blocks)
        blocks[i] = Block(mixer=new_m, channel=blocks[i].channel)
        child = changed(g, blocks=tuple(blocks))
        return child, f"block {i + 1} mixer {old_m} -> {new_m}", _MIXER_WHY[new_m]
    if kind == "channel":
        i = rng.randrange(n)
        old_c = g.blocks[i].channel
        new_c = rng.choice([c for c in CHANNELS if c != old_c])
        blocks = list(g.blocks)
        blocks[i] = Block(mixer=blocks[i].mixer, channel=new_c)
        child = changed(g, blocks=tuple(blocks))
        return child, f"block {i + 1} channel {old_c} -> {new_c}", _CHANNEL_WHY[new_c]
    if kind == "add_block":
        i = rng.randint(0, n)
        block = Block(mixer=rng.choice(MIXERS), channel=_random_channel(rng))
        child = changed(g, blocks=(*g.blocks[:i], block, *g.blocks[i:]))
        why = f"an extra {block.describe()} layer adds depth, and {_MIXER_WHY[block.mixer]}"
        return child, f"add block {i + 1} {block.describe()}", why
    if kind == "remove_block":
        i = rng.randrange(n)
        child = changed(g, blocks=g.blocks[:i] + g.blocks[i + 1 :])
        why = "a shallower model takes cheaper steps and may converge further in a fixed budget"
        return child, f"remove block {i + 1} {g.blocks[i].describe()}", why
    if kind == "d_model":
        step = space.d_models[-1] if jump else 32
        options = [x for x in space.d_models if x != g.d_model and abs(x - g.d_model) <= step]
        d = rng.choice(options) if options else space.d_models[-1]
        child, change = with_width(g, d)
        why = (
            "a wider residual stream adds capacity"
            if d > g.d_model
            else "a narrower model takes cheaper steps and may generalise better"
        )
        return child, change, why
    if kind == "n_heads":
        h = rng.choice([x for x in valid_heads(g.d_model) if x != g.n_heads])
        why = (
            "more heads let attention track several relations at once"
            if h > g.n_heads
            else "fewer, wider heads give each head more capacity"
        )
        return changed(g, n_heads=h), f"n_heads {g.n_heads} -> {h}", why
    if kind == "norm":
        other = "rmsnorm" if g.norm == "layernorm" else "layernorm"
        return changed(g, norm=other), f"norm {g.norm} -> {other}", _NORM_WHY[other]
    if kind == "residual":
        other = "post_norm" if g.residual == "pre_norm" else "pre_norm"
        change = f"residual {g.residual} -> {other}"
        return changed(g, residual=other), change, _RESIDUAL_WHY[other]
    if kind == "mlp_ratio":
        r = rng.choice([x for x in (1, 2, 3, 4) if x != g.mlp_ratio])
        why = (
            "wider MLPs store more per-token features"
            if r > g.mlp_ratio
            else "narrower MLPs free compute for the mixers"
        )
        return changed(g, mlp_ratio=r), f"mlp_ratio {g.mlp_ratio} -> {r}", why
    # conv_kernel
    k = rng.choice([x for x in range(2, 9) if x != g.conv_kernel])
    why = (
        "a longer kernel widens the local receptive field"
        if k > g.conv_kernel
        else "a shorter kernel focuses on the nearest tokens"
    )
    return changed(g, conv_kernel=k), f"conv_kernel {g.conv_kernel} -> {k}", why


def with_width(g: Genome, d_model: int) -> tuple[Genome, str]:
    """The genome at another width, its heads kept where the width allows them, and what
    changed."""
    heads = fit_heads(d_model, g.n_heads)
    change = f"d_model {g.d_model} -> {d_model}"
    if heads != g.n_heads:
        change += f" (n_heads {g.n_heads} -> {heads})"
    return changed(g, d_model=d_model, n_heads=heads), change


def _applicable(g: Genome, kind: str, space: SearchSpace) -> bool:
    if kind == "add_block":
        return len(g.blocks) < space.max_blocks
    if kind == "remove_block":
        return len(g.blocks) > 1
    if kind == "n_heads":
        return g.uses_heads and len(valid_heads(g.d_model)) > 1
    if kind == "mlp_ratio":
        return g.uses_mlp_ratio
    if kind == "conv_kernel":
        return g.uses_conv_kernel
    return True


def crossover(
    a: Genome, b: Genome, rng: random.Random, attempts: int, space: SearchSpace = REFERENCE
) -> Genome:
    """One-point crossover of the block stacks (a prefix of ``a`` + a suffix of ``b``);
    each global hyperparameter comes from either parent. Within budget, and different
    from both parents whenever the retries allow."""
    parents = (a.canonical(), b.canonical())
    child = a.canonical()
    for _ in range(attempts):
        i = rng.randint(1, len(a.blocks))
        j = rng.randint(0, len(b.blocks) - 1)
        blocks = (a.blocks[:i] + b.blocks[j:])[: space.max_blocks]
        d = min(rng.choice((a, b)).d_model, space.d_models[-1])
        heads = rng.choice((a, b)).n_heads
        candidate = space.fit_budget(
            Genome(
                d_model=d,
                n_heads=fit_heads(d, heads),
                blocks=blocks,
                norm=rng.choice((a, b)).norm,
                residual=rng.choice((a, b)).residual,
                mlp_ratio=rng.choice((a, b)).mlp_ratio,
                conv_kernel=rng.choice((a, b)).conv_kernel,
            )
        )
        child = candidate
        if candidate not in parents:
            return candidate
    return child


def _random_channel(rng: random.Random) -> Channel:
    return rng.choices(_NEW_CHANNELS, weights=_NEW_CHANNEL_WEIGHTS)[0]
