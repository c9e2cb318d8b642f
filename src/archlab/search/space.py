"""The search space of compose mode and its compute budget.

The search draws widths from :data:`SEARCH_D_MODELS`, at most :data:`SEARCH_MAX_BLOCKS`
blocks, and heads of at least :data:`MIN_HEAD_DIM` channels. Everything it produces stays
within a compute budget (see :func:`within_budget`): at most :data:`MAX_PARAMS` parameters
and an estimated CPU training step at most :data:`MAX_RELATIVE_COST` times the baseline's,
both at vocab 256 and seq_len 128.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from archlab.search.genome import (
    Genome,
    baseline_genome,
    count_params,
    gated_mlp_hidden,
    mlp_hidden,
)

#: Widths that random_genome / mutate / crossover produce (Genome itself allows up to 256).
SEARCH_D_MODELS: tuple[int, ...] = (32, 48, 64, 80, 96, 112, 128)
#: Most blocks random_genome / mutate / crossover produce (Genome itself allows 6).
SEARCH_MAX_BLOCKS = 4
#: Smallest attention head the search uses.
MIN_HEAD_DIM = 16

BUDGET_VOCAB_SIZE = 256
BUDGET_SEQ_LEN = 128
MAX_PARAMS = 1_000_000
#: Ceiling on estimate_cost(g) / estimate_cost(baseline). Measured whole-model step times run
#: up to ~20% above the estimate, so 2.5 keeps real steps within ~3x the baseline's.
MAX_RELATIVE_COST = 2.5


def valid_heads(d_model: int) -> list[int]:
    """Head counts the search uses for a width: divisors in 1..8 with head_dim >= 16."""
    return [h for h in range(1, 9) if d_model % h == 0 and d_model // h >= MIN_HEAD_DIM]


def estimate_cost(genome: Genome) -> float:
    """Estimated CPU time of one training step at the budget's shape, in milliseconds.

    Fitted per primitive (``a * d^2 + b * d`` terms, forward + backward) to single-threaded
    CPU timings at batch 32, seq_len 128, vocab 256 and d_model 32..128; at these widths
    elementwise work (activations, norms, masks, scans) is a large part of the step, so
    parameter counts alone are a poor guide. Only ratios (:func:`relative_cost`) are used;
    the absolute scale depends on the machine.
    """
    g = genome  # heads, kernel and MLP ratio count only in the blocks that use them
    d = g.d_model
    h = g.n_heads
    norm = 0.007 * d if g.norm == "layernorm" else 0.017 * d
    total = 2.9 + 0.075 * d + norm  # embeddings, head and loss at vocab 256; final norm
    for block in g.blocks:
        if block.mixer == "softmax_attention":
            mixer = 0.00135 * d * d + 0.158 * d + 1.0 * (h - 1)
        elif block.mixer == "linear_attention":
            mixer = 0.00193 * d * d + 0.236 * d + 1.5 * (h - 1)
        elif block.mixer == "causal_conv":
            mixer = 0.00119 * d * d + 0.058 * d + 0.004 * d * (g.conv_kernel - 2)
        else:  # gated_recurrence
            mixer = 0.00128 * d * d + 0.185 * d
        total += norm + mixer
        if block.channel == "mlp":
            hidden = mlp_hidden(g)
            total += norm + 0.00045 * d * hidden + 0.03 * hidden
        elif block.channel == "gated_mlp":
            hidden = gated_mlp_hidden(g)
            total += norm + 0.00087 * d * hidden + 0.024 * hidden
    return total


def relative_cost(genome: Genome) -> float:
    """estimate_cost(genome) / estimate_cost(baseline_genome()) at the budget's shape."""
    return estimate_cost(genome) / _baseline_cost()


@cache
def _baseline_cost() -> float:
    return estimate_cost(baseline_genome())


def within_budget(genome: Genome) -> bool:
    """At most MAX_PARAMS parameters and MAX_RELATIVE_COST x the baseline's step cost."""
    params = count_params(genome, BUDGET_VOCAB_SIZE, BUDGET_SEQ_LEN)
    return params <= MAX_PARAMS and relative_cost(genome) <= MAX_RELATIVE_COST


def changed(genome: Genome, **changes: Any) -> Genome:
    """A validated copy with some fields changed, in canonical form."""
    data = genome.model_dump()
    data.update(changes)
    return Genome.model_validate(data).canonical()


def fit_heads(d_model: int, n_heads: int) -> int:
    """n_heads if the search allows it at this width, else the largest allowed count below."""
    allowed = valid_heads(d_model)
    return n_heads if n_heads in allowed else max(h for h in allowed if h <= max(n_heads, 1))


def fit_budget(genome: Genome) -> Genome:
    """Shrink deterministically (drop last blocks, then narrow) until within budget."""
    g = genome.canonical()
    while not within_budget(g):
        if len(g.blocks) > 1:
            g = changed(g, blocks=g.blocks[:-1])
        elif g.d_model > SEARCH_D_MODELS[0]:
            d = max(x for x in SEARCH_D_MODELS if x < g.d_model)
            g = changed(g, d_model=d, n_heads=fit_heads(d, g.n_heads))
        else:
            break
    return g
