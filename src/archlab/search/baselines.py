"""The standard search methods a NAS researcher compares against, over the same genome
space as the heuristic brain: regularized (aging) evolution and TPE.

Both propose from the task's history, its candidates in the order they were proposed,
and keep no state of their own: a brain built afresh from the memory at each step
proposes what it would have proposed had it run without a break, so a resumed run needs
nothing else.
"""

from __future__ import annotations

import math
import random
from collections.abc import Container, Sequence
from typing import TYPE_CHECKING, Any

from archlab.errors import ConfigError
from archlab.search import operators
from archlab.search.genome import CHANNELS, MIXERS, NORMS, RESIDUALS, Block, Genome
from archlab.search.heuristic import PoolEntry, Proposal, ranking_score
from archlab.search.space import REFERENCE, SearchSpace, fit_heads

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution


def _random(
    rng: random.Random, seen: Container[str], attempts: int, why: str, space: SearchSpace
) -> Proposal:
    genome = operators.random_genome(rng, attempts, space)
    for _ in range(attempts - 1):
        if genome.key() not in seen:
            break
        genome = operators.random_genome(rng, attempts, space)
    return Proposal(
        genome=genome,
        parent_ids=[],
        operator="random",
        hypothesis=f"The random architecture {genome.describe()} samples the search space.",
        motivation=why,
        expected_effect="Unknown score.",
    )


class RegularizedEvolution:
    """Aging evolution (Real et al., 2019): the population is the `population` most recent
    candidates; each proposal mutates the best of `tournament_size` of them drawn at
    random, and the oldest leaves as the child joins. Until the population is full, its
    members are random draws."""

    def __init__(
        self,
        rng: random.Random,
        population: int = 16,
        tournament_size: int = 3,
        max_attempts: int = 50,
        space: SearchSpace = REFERENCE,
    ) -> None:
        if population < 1 or tournament_size < 1 or max_attempts < 1:
            raise ValueError("population, tournament_size and max_attempts must be >= 1")
        self.rng = rng
        self.space = space
        self.population = population
        self.tournament_size = tournament_size
        self.max_attempts = max_attempts

    def propose(self, history: Sequence[PoolEntry], seen: Container[str]) -> Proposal:
        """`history`: the task's candidates in the order they were proposed."""
        members = [e for e in history if e.genome is not None][-self.population :]
        if len(members) < self.population:
            why = (
                f"Regularized evolution starts from a random population of {self.population}; "
                f"it holds {len(members)}."
            )
            return _random(self.rng, seen, self.max_attempts, why, self.space)
        for _ in range(self.max_attempts):
            contestants = self.rng.sample(members, min(self.tournament_size, len(members)))
            parent = max(contestants, key=ranking_score)
            origin = parent.genome
            assert origin is not None  # members all have one
            child, change, why = operators.mutate(
                origin, self.rng, self.max_attempts, space=self.space
            )
            if child.key() not in seen:
                return Proposal(
                    genome=child,
                    parent_ids=[parent.candidate_id],
                    operator="mutate",
                    hypothesis=f"Applying '{change}' to {origin.describe()} should help "
                    f"because {why}.",
                    motivation=f"Parent {parent.candidate_id} won a tournament of "
                    f"{len(contestants)} among the {len(members)} most recent candidates "
                    "(regularized evolution).",
                    expected_effect=f"Score above the parent's {parent.score:.4g}.",
                )
        why = "Mutations of the population kept producing architectures already in memory."
        return _random(self.rng, seen, self.max_attempts, why, self.space)


def _distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """TPE's view of the genome space: its parameters and their distributions (blocks,
    heads, MLP ratio and kernel only where the genome uses them)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    distributions: dict[str, BaseDistribution] = {
        "d_model": CategoricalDistribution(space.d_models),
        "depth": IntDistribution(1, space.max_blocks),
        "norm": CategoricalDistribution(NORMS),
        "residual": CategoricalDistribution(RESIDUALS),
        "n_heads": IntDistribution(1, 8),
        "mlp_ratio": IntDistribution(1, 4),
        "conv_kernel": IntDistribution(2, 8),
    }
    for i in range(space.max_blocks):
        distributions[f"mixer_{i}"] = CategoricalDistribution(MIXERS)
        distributions[f"channel_{i}"] = CategoricalDistribution(CHANNELS)
    return distributions


def _params(genome: Genome, space: SearchSpace) -> dict[str, Any] | None:
    """The genome's parameters in TPE's space, or None if it lies outside it (a model's
    proposal may be wider or deeper than the search goes)."""
    g = genome.canonical()
    if g.d_model not in space.d_models or len(g.blocks) > space.max_blocks:
        return None
    params: dict[str, Any] = {"d_model": g.d_model, "depth": len(g.blocks)}
    for i, block in enumerate(g.blocks):
        params[f"mixer_{i}"], params[f"channel_{i}"] = block.mixer, block.channel
    params.update(norm=g.norm, residual=g.residual)
    if g.uses_heads:
        params["n_heads"] = g.n_heads
    if g.uses_mlp_ratio:
        params["mlp_ratio"] = g.mlp_ratio
    if g.uses_conv_kernel:
        params["conv_kernel"] = g.conv_kernel
    return params


def _ask(
    trial: optuna.Trial, distributions: dict[str, BaseDistribution], space: SearchSpace
) -> Genome:
    """Define-by-run sampling of a genome, in the order `_params` lists the parameters."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    def suggest(name: str) -> Any:
        dist = distributions[name]
        if isinstance(dist, IntDistribution):
            return trial.suggest_int(name, dist.low, dist.high)
        assert isinstance(dist, CategoricalDistribution)
        return trial.suggest_categorical(name, dist.choices)

    d_model = suggest("d_model")
    blocks = tuple(
        Block(mixer=suggest(f"mixer_{i}"), channel=suggest(f"channel_{i}"))
        for i in range(suggest("depth"))
    )
    draft = Genome(
        d_model=d_model, blocks=blocks, norm=suggest("norm"), residual=suggest("residual")
    )
    changes: dict[str, Any] = {}
    if draft.uses_heads:
        changes["n_heads"] = fit_heads(d_model, suggest("n_heads"))
    if draft.uses_mlp_ratio:
        changes["mlp_ratio"] = suggest("mlp_ratio")
    if draft.uses_conv_kernel:
        changes["conv_kernel"] = suggest("conv_kernel")
    return space.fit_budget(draft.model_copy(update=changes))


def require_optuna() -> None:
    """ConfigError unless Optuna, the optional extra TPE runs on, is installed."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("the tpe brain needs Optuna: pip install 'archlab[tpe]'") from None


class TPE:
    """Tree-structured Parzen estimator (Optuna's TPESampler, its defaults: the first 10
    trials random) over the genome space; the study is rebuilt from `history` at each
    proposal, and `seed` fixes the sampler's draws."""

    def __init__(self, seed: int, max_attempts: int = 50, space: SearchSpace = REFERENCE) -> None:
        require_optuna()
        self.seed = seed
        self.space = space
        self.max_attempts = max_attempts

    def propose(self, history: Sequence[PoolEntry], seen: Container[str]) -> Proposal:
        """`history`: the task's candidates (those outside the space are left out)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        distributions = _distributions(self.space)
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=self.seed)
        )
        told = 0
        for entry in history:
            params = _params(entry.genome, self.space) if entry.genome is not None else None
            if params is None:
                continue
            score = ranking_score(entry)
            finite = math.isfinite(score)
            study.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    distributions={name: distributions[name] for name in params},
                    value=score if finite else None,
                    state=optuna.trial.TrialState.COMPLETE
                    if finite
                    else optuna.trial.TrialState.FAIL,
                )
            )
            told += 1
        for _ in range(self.max_attempts):
            trial = study.ask()
            genome = _ask(trial, distributions, self.space)
            if genome.key() not in seen:
                return Proposal(
                    genome=genome,
                    parent_ids=[],
                    operator="new",
                    hypothesis=f"{genome.describe()} is where TPE's density of good genomes "
                    "is highest against that of the rest.",
                    motivation=f"TPE (Optuna) fitted to the {told} candidates of the task "
                    "in its space.",
                    expected_effect="Score above the median of those tried.",
                )
            study.tell(trial, state=optuna.trial.TrialState.FAIL)  # not novel: ask again
        why = "TPE kept proposing architectures already in memory."
        return _random(random.Random(self.seed), seen, self.max_attempts, why, self.space)
