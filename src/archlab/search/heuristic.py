"""The offline "heuristic brain" of compose mode: evolution over :class:`Genome` s, no LLM.

:class:`HeuristicBrain` proposes the next candidate from the experience memory (a pool of
scored candidates): the baseline first, then mostly mutations of tournament winners, some
crossovers and a few random restarts. A mutation or crossover is not the first child drawn:
the brain draws many (:attr:`HeuristicBrain.candidates`; mutations screened with some random
draws, operator "new" if one is picked), and a surrogate fitted to every scored genome
(:mod:`archlab.search.surrogate`) picks the one it expects to improve most on the best
score, so that each trial goes where the evidence so far points, or where the surrogate
knows least. Random restarts (operator "random") stay uniform draws from the search space.
Every random choice comes from the ``random.Random`` passed in, so a seeded brain given
the same pool and ``seen`` proposes the same thing.

Everything it produces stays within a compute budget (see :func:`within_budget`): at most
:data:`MAX_PARAMS` parameters and an estimated CPU training step at most
:data:`MAX_RELATIVE_COST` times the baseline's, both at vocab 256 and seq_len 128.
"""

from __future__ import annotations

import math
import random
from collections.abc import Container, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from archlab.search.genome import (
    CHANNELS,
    MIXERS,
    NORMS,
    RESIDUALS,
    Block,
    Channel,
    Genome,
    baseline_genome,
    count_params,
    gated_mlp_hidden,
    mlp_hidden,
)
from archlab.search.surrogate import Prediction, Surrogate

# -- search space and budget -----------------------------------------------------------------

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

#: Channel choices for new blocks and their probabilities.
_NEW_CHANNELS: tuple[Channel, ...] = ("gated_mlp", "mlp", "none")
_NEW_CHANNEL_WEIGHTS = (0.4, 0.4, 0.2)


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


# -- proposals -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolEntry:
    """A candidate already in the experience memory."""

    candidate_id: str
    score: float  # higher is better
    genome: Genome | None  # None for hand-written candidates (they cannot be mutated)


@dataclass(frozen=True)
class Proposal:
    """What the brain wants evaluated next, with the plan texts shown to researchers."""

    genome: Genome
    parent_ids: list[str]  # candidate ids of the parents (none for seed, random and new)
    operator: str  # "seed" | "random" | "mutate" | "crossover" | "new" (a screened draw)
    hypothesis: str  # one sentence: what change and why it might help
    motivation: str
    expected_effect: str


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


@dataclass(frozen=True)
class _Pick:
    """The surrogate's view of the option it picked among ``options`` (what they were)."""

    prediction: Prediction
    options: str
    model: Surrogate

    def note(self) -> str:
        """Why this option, for the motivation."""
        p, m = self.prediction, self.model
        credits = ", ".join(f"{name} {c:+.2g}" for name, c in p.reasons if abs(c) >= 5e-4)
        because = f" (against the average scored genome: {credits})" if credits else ""
        return (
            f"Of {self.options}, it has the largest expected improvement on the best "
            f"score {_fmt(m.best)} under a linear surrogate fitted to the {m.n} scored "
            f"genomes{because}."
        )

    def expectation(self) -> str:
        p = self.prediction
        return f"the surrogate predicts {_fmt(p.mean)} +- {p.std:.2g}"


_T = TypeVar("_T")

#: Below this many evolvable candidates in the pool, mutations take bigger steps.
_SMALL_POOL = 8


def _genome(entry: PoolEntry) -> Genome:
    if entry.genome is None:
        raise ValueError(f"candidate {entry.candidate_id} has no genome")
    return entry.genome


def _score(entry: PoolEntry) -> float:
    """Score for ranking; NaN or None (a failed evaluation) ranks below everything."""
    s = entry.score
    return float(s) if isinstance(s, int | float) and not math.isnan(s) else -math.inf


def _fmt(score: float) -> str:
    return f"{score:.4g}" if isinstance(score, int | float) else str(score)


def _replace(genome: Genome, **changes: Any) -> Genome:
    """A validated copy with some fields changed, in canonical form."""
    data = genome.model_dump()
    data.update(changes)
    return Genome.model_validate(data).canonical()


def _fit_heads(d_model: int, n_heads: int) -> int:
    """n_heads if the search allows it at this width, else the largest allowed count below."""
    allowed = valid_heads(d_model)
    return n_heads if n_heads in allowed else max(h for h in allowed if h <= max(n_heads, 1))


def _fit_budget(genome: Genome) -> Genome:
    """Shrink deterministically (drop last blocks, then narrow) until within budget."""
    g = genome.canonical()
    while not within_budget(g):
        if len(g.blocks) > 1:
            g = _replace(g, blocks=g.blocks[:-1])
        elif g.d_model > SEARCH_D_MODELS[0]:
            d = max(x for x in SEARCH_D_MODELS if x < g.d_model)
            g = _replace(g, d_model=d, n_heads=_fit_heads(d, g.n_heads))
        else:
            break
    return g


def _cost_note(genome: Genome) -> str:
    params = count_params(genome, BUDGET_VOCAB_SIZE, BUDGET_SEQ_LEN)
    return (
        f"~{params / 1000:.0f}k parameters and ~{relative_cost(genome):.2f}x the baseline's "
        f"CPU step cost (vocab {BUDGET_VOCAB_SIZE}, seq_len {BUDGET_SEQ_LEN})"
    )


#: edits of the pool the surrogate screens per proposal (with a third as many random draws,
#: or a third as many crossovers); 96 did no better over 24 simulated searches of the search
#: benchmark (benchmarks/search_simulation.py: median trials to random's best of 64, 17.5
#: against 18) and costs ~3 ms more a proposal
SCREENED_EDITS = 48


class HeuristicBrain:
    """Evolutionary proposer over genomes; deterministic given the state of ``rng``."""

    def __init__(
        self,
        rng: random.Random,
        tournament_size: int = 3,
        crossover_rate: float = 0.25,
        random_rate: float = 0.1,
        max_attempts: int = 50,
        candidates: int = SCREENED_EDITS,
    ) -> None:
        if tournament_size < 1:
            raise ValueError("tournament_size must be >= 1")
        if not (0.0 <= crossover_rate <= 1.0 and 0.0 <= random_rate <= 1.0):
            raise ValueError("crossover_rate and random_rate must be in [0, 1]")
        if max_attempts < 1 or candidates < 1:
            raise ValueError("max_attempts and candidates must be >= 1")
        self.rng = rng
        self.tournament_size = tournament_size
        self.crossover_rate = crossover_rate
        self.random_rate = random_rate
        self.max_attempts = max_attempts
        #: children generated per mutation (and a third as many random draws beside them, or
        #: a third as many crossovers), of which the surrogate picks one
        self.candidates = candidates

    # -- proposing ---------------------------------------------------------------------------

    def propose(self, pool: Sequence[PoolEntry], seen: Container[str]) -> Proposal:
        """The next candidate: novel (key not in ``seen``) unless every bounded retry failed.

        Only entries with a genome are used as parents. With none, the baseline is proposed
        first (operator "seed"), then mutations of it or random genomes.
        """
        entries = [e for e in pool if e.genome is not None]
        proposal = self._propose_once(entries, seen)
        for _ in range(self.max_attempts - 1):
            if proposal.genome.key() not in seen:
                return proposal
            proposal = self._propose_once(entries, seen)
        # The neighbourhood of the pool looks exhausted: fall back to random restarts.
        for _ in range(self.max_attempts):
            if proposal.genome.key() not in seen:
                return proposal
            proposal = self.random_proposal(
                "Mutation and crossover of the pool kept producing architectures already in "
                "memory, so a random restart is the cheapest way to find something new."
            )
        return proposal  # still not novel; the caller can detect this via seen

    def _propose_once(self, entries: list[PoolEntry], seen: Container[str]) -> Proposal:
        if not entries:
            base = baseline_genome()
            if base.key() not in seen:
                return Proposal(
                    genome=base,
                    parent_ids=[],
                    operator="seed",
                    hypothesis=(
                        f"The small transformer baseline ({base.describe()}) sets the "
                        "reference score that every later architecture must beat."
                    ),
                    motivation="The experience memory holds no evolvable candidate yet, so "
                    "the search starts from a well-understood architecture.",
                    expected_effect=f"A reference score; {_cost_note(base)}.",
                )
            if self.rng.random() < self.random_rate:
                return self.random_proposal(
                    "The memory holds no evolvable candidate besides the already-evaluated "
                    "baseline; a random restart explores away from it."
                )
            return self._mutation_proposal(None, base, self._mutate(base), None)
        r = self.rng.random()
        if r < self.random_rate:
            return self.random_proposal(
                f"Random restarts (rate {self.random_rate:g}) keep the search from collapsing "
                "onto the family of the current best candidates."
            )
        model = Surrogate.fit([_genome(e) for e in entries], [_score(e) for e in entries])
        if r < self.random_rate + self.crossover_rate and len(entries) >= 2:
            pairs: list[tuple[Genome, tuple[PoolEntry, PoolEntry]]] = []
            for _ in range(max(1, self.candidates // 3)):
                a = self.tournament(entries)
                b = self.tournament([e for e in entries if e is not a])
                pairs.append((self.crossover(_genome(a), _genome(b)), (a, b)))
            what = f"{len(pairs)} crossovers of tournament winners"
            child, (a, b), pick = self._screen(pairs, model, seen, what)
            return self._crossover_proposal(a, b, child, pick)
        # Bigger steps (up to 4 edits, any width) while few candidates are scored: the
        # surrogate knows little then, and its picks should spread over the space.
        reach = 4 if len(entries) < _SMALL_POOL else 2
        options: list[tuple[Genome, tuple[PoolEntry, tuple[Genome, str, str]] | None]] = []
        for _ in range(self.candidates):
            parent = self.tournament(entries)
            edit = self._mutate(_genome(parent), reach)
            options.append((edit[0], (parent, edit)))
        what = f"{len(options)} edits of tournament winners"
        if model is not None and model.n >= 2:
            # Random draws reach what edits of the pool cannot (another width at another
            # depth, say); with one score the surrogate could only rank them by distance.
            draws = max(1, self.candidates // 3)
            options += [(self.random_genome(), None) for _ in range(draws)]
            what = f"{len(options)} candidates ({what} and {draws} random draws)"
        genome, origin, pick = self._screen(options, model, seen, what)
        if origin is None:
            return self._drawn_proposal(genome, pick)
        parent, edit = origin
        return self._mutation_proposal(parent, _genome(parent), edit, pick)

    def _screen(
        self,
        options: list[tuple[Genome, _T]],
        model: Surrogate | None,
        seen: Container[str],
        what: str,
    ) -> tuple[Genome, _T, _Pick | None]:
        """The novel option the surrogate expects to improve most on the best score (the
        first novel option without a surrogate; the top option if none is novel).

        Novelty is checked best first: ``seen`` may ask the memory one key at a time."""
        unique: dict[str, tuple[Genome, _T]] = {}
        for genome, why in options:
            unique.setdefault(genome.key(), (genome, why))
        keys = list(unique)
        if model is None:
            ranked: list[tuple[str, _Pick | None]] = [(key, None) for key in keys]
        else:
            predictions = model.predict([genome for genome, _ in unique.values()])
            order = sorted(range(len(keys)), key=lambda i: -predictions[i].improvement)
            ranked = [(keys[i], _Pick(predictions[i], what, model)) for i in order]
        key, pick = next(((k, p) for k, p in ranked if k not in seen), ranked[0])
        return (*unique[key], pick)

    def random_proposal(self, motivation: str) -> Proposal:
        g = self.random_genome()
        return Proposal(
            genome=g,
            parent_ids=[],
            operator="random",
            hypothesis=(
                f"The random architecture {g.describe()} may do well in a region of the "
                "search space that edits of the current pool would not reach."
            ),
            motivation=motivation,
            expected_effect=f"Unknown score, a long shot; {_cost_note(g)}.",
        )

    def _drawn_proposal(self, genome: Genome, pick: _Pick | None) -> Proposal:
        """A random draw that the surrogate preferred to every edit of the pool."""
        expectation = f" ({pick.expectation()})" if pick else ""
        return Proposal(
            genome=genome,
            parent_ids=[],
            operator="new",
            hypothesis=(
                f"The architecture {genome.describe()}, drawn at random, may beat the "
                "current best candidates from a region their edits do not reach."
            ),
            motivation=pick.note() if pick else "A random draw.",
            expected_effect=f"Score above the best so far{expectation}; {_cost_note(genome)}.",
        )

    def _mutation_proposal(
        self,
        parent: PoolEntry | None,
        genome: Genome,
        edit: tuple[Genome, str, str],
        pick: _Pick | None,
    ) -> Proposal:
        child, change, why = edit
        desc = genome.describe()
        if parent is None:
            parent_ids: list[str] = []
            motivation = (
                f"The baseline ({desc}) is already in memory but no evolvable candidate is, "
                "so the search explores the baseline's neighbourhood."
            )
            versus = "the baseline's score"
        else:
            parent_ids = [parent.candidate_id]
            motivation = (
                f"Parent {parent.candidate_id} ({desc}) scored {_fmt(parent.score)} and won a "
                f"tournament of {self.tournament_size}; edits of strong parents exploit what "
                "already works."
            )
            versus = f"the parent's {_fmt(parent.score)}"
        if pick is not None:
            motivation += " " + pick.note()
            versus += f" ({pick.expectation()})"
        return Proposal(
            genome=child,
            parent_ids=parent_ids,
            operator="mutate",
            hypothesis=f"Applying '{change}' to {desc} should help because {why}.",
            motivation=motivation,
            expected_effect=(
                f"Score above {versus}; the child {child.describe()} has {_cost_note(child)}."
            ),
        )

    def _crossover_proposal(
        self, a: PoolEntry, b: PoolEntry, child: Genome, pick: _Pick | None
    ) -> Proposal:
        ga, gb = _genome(a), _genome(b)
        motivation = (
            f"Parents {a.candidate_id} (score {_fmt(a.score)}) and {b.candidate_id} "
            f"(score {_fmt(b.score)}) both won tournaments of {self.tournament_size}; "
            "recombining good solutions can jump between families that single edits cannot."
        )
        expectation = ""
        if pick is not None:
            motivation += " " + pick.note()
            expectation = f" ({pick.expectation()})"
        return Proposal(
            genome=child,
            parent_ids=[a.candidate_id, b.candidate_id],
            operator="crossover",
            hypothesis=(
                f"Joining the early layers of {ga.describe()} with the late layers of "
                f"{gb.describe()} into {child.describe()} may combine what makes each "
                "parent work."
            ),
            motivation=motivation,
            expected_effect=(
                f"Score near or above max({_fmt(a.score)}, {_fmt(b.score)}){expectation}; "
                f"{_cost_note(child)}."
            ),
        )

    # -- operators ---------------------------------------------------------------------------

    def tournament(self, pool: Sequence[PoolEntry]) -> PoolEntry:
        """Best of ``tournament_size`` entries drawn without replacement (genome entries only)."""
        entries = [e for e in pool if e.genome is not None]
        if not entries:
            raise ValueError("tournament needs at least one pool entry with a genome")
        contestants = self.rng.sample(entries, min(self.tournament_size, len(entries)))
        return max(contestants, key=_score)

    def random_genome(self) -> Genome:
        """A random genome from the search space, within budget."""
        rng = self.rng
        g = baseline_genome()
        for _ in range(self.max_attempts):
            d = rng.choice(SEARCH_D_MODELS)
            n_blocks = rng.randint(1, SEARCH_MAX_BLOCKS)
            blocks = tuple(
                Block(mixer=rng.choice(MIXERS), channel=self._random_channel())
                for _ in range(n_blocks)
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
            if within_budget(g):
                return g
        return _fit_budget(g)

    def mutate(self, genome: Genome) -> tuple[Genome, str]:
        """1-2 random edits; returns the child and what changed (blocks numbered from 1).

        The child differs from ``genome`` (up to canonical form) and is within budget; if
        ``genome`` itself is over budget, the child is at least cheaper.
        """
        child, change, _ = self._mutate(genome)
        return child, change

    def _mutate(self, genome: Genome, reach: int = 2) -> tuple[Genome, str, str]:
        """Like :meth:`mutate`, with 1..``reach`` edits (1 or 2, mostly 1, at reach 2);
        beyond reach 2 a width edit may jump to any search width."""
        parent = genome.canonical()
        parent_over = not within_budget(parent)
        parent_cost = relative_cost(parent)
        for _ in range(self.max_attempts):
            child = parent
            changes: list[str] = []
            reasons: list[str] = []
            if reach <= 2:
                n_edits = 1 if self.rng.random() < 0.7 or reach < 2 else 2
            else:
                n_edits = self.rng.randint(1, reach)
            for _ in range(n_edits):
                child, change, why = self._edit(child, jump=reach > 2)
                changes.append(change)
                reasons.append(why)
            if child == parent:  # both canonical: equal fields, equal keys
                continue
            ok = relative_cost(child) < parent_cost if parent_over else within_budget(child)
            if ok:
                return child, "; ".join(changes), ", and ".join(reasons)
        # Practically unreachable: a norm flip always changes the genome at equal cost.
        other = "rmsnorm" if parent.norm == "layernorm" else "layernorm"
        child = _fit_budget(_replace(parent, norm=other))
        return child, f"norm {parent.norm} -> {other}", _NORM_WHY[other]

    def _edit(self, g: Genome, jump: bool = False) -> tuple[Genome, str, str]:
        """One random applicable edit: (child, what changed, why it might help); with
        ``jump`` a width edit may go to any search width, else at most 32 away."""
        rng = self.rng
        n = len(g.blocks)
        kinds = [k for k in _EDIT_WEIGHTS if self._applicable(g, k)]
        kind = rng.choices(kinds, weights=[_EDIT_WEIGHTS[k] for k in kinds])[0]
        if kind == "mixer":
            i = rng.randrange(n)
            old_m = g.blocks[i].mixer
            new_m = rng.choice([m for m in MIXERS if m != old_m])
            blocks = list(g.blocks)
            blocks[i] = Block(mixer=new_m, channel=blocks[i].channel)
            child = _replace(g, blocks=tuple(blocks))
            return child, f"block {i + 1} mixer {old_m} -> {new_m}", _MIXER_WHY[new_m]
        if kind == "channel":
            i = rng.randrange(n)
            old_c = g.blocks[i].channel
            new_c = rng.choice([c for c in CHANNELS if c != old_c])
            blocks = list(g.blocks)
            blocks[i] = Block(mixer=blocks[i].mixer, channel=new_c)
            child = _replace(g, blocks=tuple(blocks))
            return child, f"block {i + 1} channel {old_c} -> {new_c}", _CHANNEL_WHY[new_c]
        if kind == "add_block":
            i = rng.randint(0, n)
            block = Block(mixer=rng.choice(MIXERS), channel=self._random_channel())
            child = _replace(g, blocks=(*g.blocks[:i], block, *g.blocks[i:]))
            why = f"an extra {block.describe()} layer adds depth, and {_MIXER_WHY[block.mixer]}"
            return child, f"add block {i + 1} {block.describe()}", why
        if kind == "remove_block":
            i = rng.randrange(n)
            child = _replace(g, blocks=g.blocks[:i] + g.blocks[i + 1 :])
            why = "a shallower model takes cheaper steps and may converge further in a fixed budget"
            return child, f"remove block {i + 1} {g.blocks[i].describe()}", why
        if kind == "d_model":
            step = SEARCH_D_MODELS[-1] if jump else 32
            options = [x for x in SEARCH_D_MODELS if x != g.d_model and abs(x - g.d_model) <= step]
            d = rng.choice(options) if options else SEARCH_D_MODELS[-1]
            heads = _fit_heads(d, g.n_heads)
            child = _replace(g, d_model=d, n_heads=heads)
            change = f"d_model {g.d_model} -> {d}"
            if heads != g.n_heads:
                change += f" (n_heads {g.n_heads} -> {heads})"
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
            return _replace(g, n_heads=h), f"n_heads {g.n_heads} -> {h}", why
        if kind == "norm":
            other = "rmsnorm" if g.norm == "layernorm" else "layernorm"
            return _replace(g, norm=other), f"norm {g.norm} -> {other}", _NORM_WHY[other]
        if kind == "residual":
            other = "post_norm" if g.residual == "pre_norm" else "pre_norm"
            change = f"residual {g.residual} -> {other}"
            return _replace(g, residual=other), change, _RESIDUAL_WHY[other]
        if kind == "mlp_ratio":
            r = rng.choice([x for x in (1, 2, 3, 4) if x != g.mlp_ratio])
            why = (
                "wider MLPs store more per-token features"
                if r > g.mlp_ratio
                else "narrower MLPs free compute for the mixers"
            )
            return _replace(g, mlp_ratio=r), f"mlp_ratio {g.mlp_ratio} -> {r}", why
        # conv_kernel
        k = rng.choice([x for x in range(2, 9) if x != g.conv_kernel])
        why = (
            "a longer kernel widens the local receptive field"
            if k > g.conv_kernel
            else "a shorter kernel focuses on the nearest tokens"
        )
        return _replace(g, conv_kernel=k), f"conv_kernel {g.conv_kernel} -> {k}", why

    @staticmethod
    def _applicable(g: Genome, kind: str) -> bool:
        if kind == "add_block":
            return len(g.blocks) < SEARCH_MAX_BLOCKS
        if kind == "remove_block":
            return len(g.blocks) > 1
        if kind == "n_heads":
            return g.uses_heads and len(valid_heads(g.d_model)) > 1
        if kind == "mlp_ratio":
            return g.uses_mlp_ratio
        if kind == "conv_kernel":
            return g.uses_conv_kernel
        return True

    def crossover(self, a: Genome, b: Genome) -> Genome:
        """One-point crossover of the block stacks (a prefix of ``a`` + a suffix of ``b``);
        each global hyperparameter comes from either parent. Within budget, and different
        from both parents whenever the retries allow."""
        rng = self.rng
        parents = (a.canonical(), b.canonical())
        child = a.canonical()
        for _ in range(self.max_attempts):
            i = rng.randint(1, len(a.blocks))
            j = rng.randint(0, len(b.blocks) - 1)
            blocks = (a.blocks[:i] + b.blocks[j:])[:SEARCH_MAX_BLOCKS]
            d = rng.choice((a, b)).d_model
            if d > SEARCH_D_MODELS[-1]:
                d = SEARCH_D_MODELS[-1]
            heads = rng.choice((a, b)).n_heads
            candidate = _fit_budget(
                Genome(
                    d_model=d,
                    n_heads=_fit_heads(d, heads),
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

    def _random_channel(self) -> Channel:
        return self.rng.choices(_NEW_CHANNELS, weights=_NEW_CHANNEL_WEIGHTS)[0]
