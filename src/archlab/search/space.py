"""The search space of compose mode and its compute budget, per task and hardware.

A :class:`SearchSpace` says which widths the search draws, how many blocks at most, and
the compute budget everything it produces stays within (see :meth:`SearchSpace.
within_budget`): at most ``max_params`` parameters at the task's vocabulary and sequence
length, and an estimated training step at most ``max_relative_cost`` times the
baseline's. :data:`REFERENCE` is the space the constants below were measured for (vocab
256, seq_len 128, one CPU thread); :meth:`SearchSpace.for_task` scales it to a task's
shape and to a GPU. Heads have at least :data:`MIN_HEAD_DIM` channels everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from archlab.search.genome import (
    Genome,
    baseline_genome,
    count_params,
    gated_mlp_hidden,
    mlp_hidden,
)

if TYPE_CHECKING:
    from archlab.tasks.base import TokenTask

#: Widths that random_genome / mutate / crossover produce on a CPU (Genome allows up to 256).
SEARCH_D_MODELS: tuple[int, ...] = (32, 48, 64, 80, 96, 112, 128)
#: Widths beyond those on a GPU, up to the genome's widest.
GPU_D_MODELS: tuple[int, ...] = (160, 192, 224, 256)
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
#: On a GPU, models this small are bound by kernel launches rather than arithmetic, so the
#: CPU's cost estimate overstates what width costs there: twice the widths (four times
#: their quadratic terms) within this multiple of the CPU's limits.
GPU_SCALE = 4


def _embedding_params(d_model: int, vocab_size: int, seq_len: int) -> int:
    """Token and position embeddings and the output head: what the task's shape decides."""
    return (2 * vocab_size + seq_len) * d_model


@dataclass(frozen=True)
class SearchSpace:
    """The widths and depths the search draws, and the budget its genomes stay within."""

    vocab_size: int = BUDGET_VOCAB_SIZE
    seq_len: int = BUDGET_SEQ_LEN
    d_models: tuple[int, ...] = SEARCH_D_MODELS
    max_blocks: int = SEARCH_MAX_BLOCKS
    max_params: int = MAX_PARAMS
    max_relative_cost: float = MAX_RELATIVE_COST

    @classmethod
    def for_task(cls, task: TokenTask, gpus: int = 0) -> SearchSpace:
        """The reference space scaled to a task's vocabulary and sequence length (the same
        parameters besides the embeddings and head, which the shape decides; costs relative
        to the baseline at that shape) and, with a GPU, to twice the widths; never more
        parameters than the task itself allows."""
        widest = SEARCH_D_MODELS[-1]
        body = MAX_PARAMS - _embedding_params(widest, BUDGET_VOCAB_SIZE, BUDGET_SEQ_LEN)
        d_models, cost = SEARCH_D_MODELS, MAX_RELATIVE_COST
        if gpus:
            d_models, body, cost = d_models + GPU_D_MODELS, body * GPU_SCALE, cost * GPU_SCALE
        vocab, seq = int(task.spec["vocab_size"]), int(task.spec["seq_len"])
        params = min(body + _embedding_params(d_models[-1], vocab, seq), task.max_params)
        return cls(vocab, seq, d_models, SEARCH_MAX_BLOCKS, params, cost)

    def describe(self) -> dict[str, Any]:
        """For `archlab tasks --json`."""
        return {
            "d_models": list(self.d_models),
            "max_blocks": self.max_blocks,
            "max_params": self.max_params,
            "max_relative_cost": self.max_relative_cost,
            "budget_shape": {"vocab_size": self.vocab_size, "seq_len": self.seq_len},
        }

    def estimate_cost(self, genome: Genome) -> float:
        """Estimated CPU time of one training step at this space's shape, in milliseconds.

        Fitted per primitive (``a * d^2 + b * d`` terms, forward + backward) to
        single-threaded CPU timings at batch 32, seq_len 128, vocab 256 and d_model 32..128;
        at these widths elementwise work (activations, norms, masks, scans) is a large part
        of the step, so parameter counts alone are a poor guide. At another shape the output
        head scales with the vocabulary and attention's scores with the sequence (the rest
        is per token and leaves ratios alone). Only ratios (:meth:`relative_cost`) are used;
        the absolute scale depends on the machine.
        """
        g = genome  # heads, kernel and MLP ratio count only in the blocks that use them
        d = g.d_model
        h = g.n_heads
        vocab = self.vocab_size / BUDGET_VOCAB_SIZE
        seq = self.seq_len / BUDGET_SEQ_LEN
        norm = 0.007 * d if g.norm == "layernorm" else 0.017 * d
        total = 2.9 + 0.075 * d * vocab + norm  # embeddings, head and loss; final norm
        for block in g.blocks:
            if block.mixer == "softmax_attention":
                mixer = 0.00135 * d * d + 0.158 * d * seq + 1.0 * (h - 1)
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

    @cached_property
    def baseline_cost(self) -> float:
        return self.estimate_cost(baseline_genome())

    def relative_cost(self, genome: Genome) -> float:
        """estimate_cost(genome) / estimate_cost(baseline_genome()) at this space's shape."""
        return self.estimate_cost(genome) / self.baseline_cost

    def params(self, genome: Genome) -> int:
        return count_params(genome, self.vocab_size, self.seq_len)

    def within_budget(self, genome: Genome) -> bool:
        """At most max_params parameters and max_relative_cost x the baseline's step cost."""
        return (
            self.params(genome) <= self.max_params
            and self.relative_cost(genome) <= self.max_relative_cost
        )

    def fit_budget(self, genome: Genome) -> Genome:
        """Shrink deterministically (drop last blocks, then narrow) until within budget."""
        g = genome.canonical()
        while not self.within_budget(g):
            if len(g.blocks) > 1:
                g = changed(g, blocks=g.blocks[:-1])
            elif g.d_model > self.d_models[0]:
                d = max(x for x in self.d_models if x < g.d_model)
                g = changed(g, d_model=d, n_heads=fit_heads(d, g.n_heads))
            else:
                break
        return g


#: the space the constants were measured for: vocab 256, seq_len 128, one CPU thread
REFERENCE = SearchSpace()


def valid_heads(d_model: int) -> list[int]:
    """Head counts the search uses for a width: divisors in 1..8 with head_dim >= 16."""
    return [h for h in range(1, 9) if d_model % h == 0 and d_model // h >= MIN_HEAD_DIM]


def changed(genome: Genome, **changes: Any) -> Genome:
    """A validated copy with some fields changed, in canonical form."""
    data = genome.model_dump()
    data.update(changes)
    return Genome.model_validate(data).canonical()


def fit_heads(d_model: int, n_heads: int) -> int:
    """n_heads if the search allows it at this width, else the largest allowed count below."""
    allowed = valid_heads(d_model)
    return n_heads if n_heads in allowed else max(h for h in allowed if h <= max(n_heads, 1))
