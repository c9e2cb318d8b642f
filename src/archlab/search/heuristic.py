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

The genomes come from the edits of :mod:`archlab.search.operators`, so everything it
produces stays within the compute budget of its :class:`~archlab.search.space.SearchSpace`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import TypeVar

from archlab.search import operators
from archlab.search.genome import Genome, baseline_genome
from archlab.search.motifs import MOTIFS, Motif
from archlab.search.space import REFERENCE, SearchSpace
from archlab.search.surrogate import Prediction, Surrogate

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


def ranking_score(entry: PoolEntry) -> float:
    """Score for ranking; NaN or None (a failed evaluation) ranks below everything."""
    s = entry.score
    return float(s) if isinstance(s, int | float) and not math.isnan(s) else -math.inf


def _fmt(score: float) -> str:
    return f"{score:.4g}" if isinstance(score, int | float) else str(score)


def _cost_note(genome: Genome, space: SearchSpace) -> str:
    return (
        f"~{space.params(genome) / 1000:.0f}k parameters and "
        f"~{space.relative_cost(genome):.2f}x the baseline's CPU step cost (vocab "
        f"{space.vocab_size}, seq_len {space.seq_len})"
    )


#: edits of the pool the surrogate screens per proposal (with a third as many random draws,
#: or a third as many crossovers); 96 did no better over 24 simulated searches of the search
#: benchmark (its cached-landscape replay: median trials to random's best of 64, 17.5
#: against 18) and costs ~3 ms more a proposal
SCREENED_EDITS = 48


#: failures beyond its successes that set a published improvement aside: one proxy score is
#: one seed's, and an edit that hurts the baseline may help a wider genome (set aside after
#: one failure each, on MAD selective copying, the search benchmark's median trials to
#: random's best of 64 went from 5 to 9.5)
MOTIF_FAILURES = 2


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
        space: SearchSpace = REFERENCE,
        motifs: Sequence[Motif] = MOTIFS,
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
        #: what it draws from, and the budget its proposals stay within
        self.space = space
        #: the published improvements it tries on the best genome before editing it
        self.motifs = motifs

    # -- proposing ---------------------------------------------------------------------------

    def propose(self, pool: Sequence[PoolEntry], seen: Container[str]) -> Proposal:
        """The next candidate: novel (key not in ``seen``) unless every bounded retry failed.

        Only entries with a genome are used as parents. With none, the baseline is proposed
        first (operator "seed"), then mutations of it or random genomes. Either way the
        published improvements (search.motifs) of the best genome come before its edits
        (not before random restarts: at random_rate 1 the brain is random search).
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
                    expected_effect=f"A reference score; {_cost_note(base, self.space)}.",
                )
            if self.rng.random() < self.random_rate:
                return self.random_proposal(
                    "The memory holds no evolvable candidate besides the already-evaluated "
                    "baseline; a random restart explores away from it."
                )
            motif = self._motif(None, base, entries, seen)
            if motif is not None:
                return motif
            return self._mutation_proposal(
                None,
                base,
                operators.mutate(base, self.rng, self.max_attempts, space=self.space),
                None,
            )
        r = self.rng.random()
        if r < self.random_rate:
            return self.random_proposal(
                f"Random restarts (rate {self.random_rate:g}) keep the search from collapsing "
                "onto the family of the current best candidates."
            )
        best = max(entries, key=ranking_score)
        motif = self._motif(best, _genome(best), entries, seen)
        if motif is not None:
            return motif
        model = Surrogate.fit([_genome(e) for e in entries], [ranking_score(e) for e in entries])
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
            edit = operators.mutate(_genome(parent), self.rng, self.max_attempts, reach, self.space)
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

    def _motif(
        self,
        parent: PoolEntry | None,
        genome: Genome,
        entries: Sequence[PoolEntry],
        seen: Container[str],
    ) -> Proposal | None:
        """The first published improvement (search.motifs) of `genome` (the best
        candidate's, or the baseline's without a parent) not yet tried, within the space's
        budget, and not set aside for what `entries` show of it (`_hurts`); None once each
        was tried or set aside."""
        for motif in self.motifs:
            edited = motif.edit(genome, self.space)
            if edited is None:
                continue
            child, change = edited
            fits = len(child.blocks) <= self.space.max_blocks and self.space.within_budget(child)
            if fits and child.key() not in seen and not self._hurts(motif, entries):
                return self._mutation_proposal(parent, genome, (child, change, motif.why), None)
        return None

    def _hurts(self, motif: Motif, entries: Sequence[PoolEntry]) -> bool:
        """Whether the candidates in `entries` that the motif made of others there scored
        below their originals at least MOTIF_FAILURES times more often than above: what
        helps one task may not help another, and a motif re-tried on every new best would
        spend the search on it."""
        scores = {_genome(e).key(): ranking_score(e) for e in entries}
        worse = better = 0
        for entry in entries:
            edited = motif.edit(_genome(entry), self.space)
            child_score = None if edited is None else scores.get(edited[0].key())
            if child_score is not None:
                helped = child_score > ranking_score(entry)
                better, worse = better + helped, worse + (not helped)
        return worse >= better + MOTIF_FAILURES

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
            expected_effect=f"Unknown score, a long shot; {_cost_note(g, self.space)}.",
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
            expected_effect=f"Score above the best so far{expectation}; "
            f"{_cost_note(genome, self.space)}.",
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
                f"Score above {versus}; the child {child.describe()} has "
                f"{_cost_note(child, self.space)}."
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
                f"{_cost_note(child, self.space)}."
            ),
        )

    # -- selection and edits ------------------------------------------------------------------

    def tournament(self, pool: Sequence[PoolEntry]) -> PoolEntry:
        """Best of ``tournament_size`` entries drawn without replacement (genome entries only)."""
        entries = [e for e in pool if e.genome is not None]
        if not entries:
            raise ValueError("tournament needs at least one pool entry with a genome")
        contestants = self.rng.sample(entries, min(self.tournament_size, len(entries)))
        return max(contestants, key=ranking_score)

    def random_genome(self) -> Genome:
        """A random genome from the search space, within budget."""
        return operators.random_genome(self.rng, self.max_attempts, self.space)

    def mutate(self, genome: Genome) -> tuple[Genome, str]:
        """1-2 random edits; returns the child and what changed (blocks numbered from 1).

        The child differs from ``genome`` (up to canonical form) and is within budget; if
        ``genome`` itself is over budget, the child is at least cheaper.
        """
        child, change, _ = operators.mutate(genome, self.rng, self.max_attempts, space=self.space)
        return child, change

    def crossover(self, a: Genome, b: Genome) -> Genome:
        """One-point crossover of the block stacks (a prefix of ``a`` + a suffix of ``b``);
        each global hyperparameter comes from either parent. Within budget, and different
        from both parents whenever the retries allow."""
        return operators.crossover(a, b, self.rng, self.max_attempts, self.space)
