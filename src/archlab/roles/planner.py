"""The planner: decides what to try next from what the memory holds.

The first candidate of a task is its baseline; after that the brain proposes children
of the best candidates of this task across every run, never one the memory already holds:
the heuristic brain by evolving genomes, a model from a bounded summary of the memory.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Container
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from archlab.llm.answers import prose, strict_schema
from archlab.llm.brains import Asker, ReplayExhausted
from archlab.llm.client import ContextOverflow, NoAnswer, Question
from archlab.memory import queries, reviews
from archlab.prompts import task_brief
from archlab.records import Candidate, Origin
from archlab.roles import briefing
from archlab.roles.context import RunContext
from archlab.roles.reviewer import Steer, read_steer
from archlab.search.baselines import TPE, RegularizedEvolution, require_optuna
from archlab.search.genome import (
    CHANNELS,
    MIXERS,
    Genome,
    baseline_genome,
    count_params,
    transformer_source,
)
from archlab.search.heuristic import HeuristicBrain, PoolEntry, Proposal
from archlab.search.space import SearchSpace
from archlab.tasks.base import TokenTask

_PARENTS = {"mutate": 1, "crossover": 2, "new": 0}


class PlanAnswer(BaseModel):
    """What a model proposes; the fields come in the order worth thinking them through."""

    motivation: str = prose("what in the memory led to this idea", 500, min_chars=1)
    hypothesis: str = prose(
        "one or two sentences: what changes, and why it should help", 500, min_chars=1
    )
    operator: Literal["mutate", "crossover", "new"] = Field(
        description="mutate: change one parent; crossover: combine two; new: from scratch"
    )
    parents: list[str] = Field(
        default_factory=list,
        description="ids of the candidates this builds on: 1 for mutate, 2 for crossover, "
        "none for new",
    )
    expected_effect: str = prose(
        "the score and cost you expect, against the parents", 300, min_chars=1
    )

    @model_validator(mode="after")
    def _parents_fit_operator(self) -> PlanAnswer:
        wanted = _PARENTS[self.operator]
        if len(self.parents) != wanted:
            raise ValueError(f"{self.operator} takes {wanted} parent id(s), not {self.parents}")
        return self


class DesignPlan(PlanAnswer):
    summary: str = Field(
        min_length=1,
        max_length=120,
        description="a short name for the architecture, unlike any candidate in memory",
    )


class ComposePlan(PlanAnswer):
    genome: Genome


def plan_schema(answer: type[PlanAnswer], ids: list[str]) -> dict[str, Any]:
    """The plan's JSON schema with the rules the validator checks: each operator with its
    number of parents, taken from the ids the prompt shows (none shown: only `new`)."""
    schema = strict_schema(answer)
    defs = schema.pop("$defs", None)
    variants = []
    for operator, n in _PARENTS.items():
        if n and not ids:
            continue
        properties = {
            **schema["properties"],
            "operator": {"const": operator},
            "parents": {"type": "array", "items": {"enum": ids}, "minItems": n, "maxItems": n},
        }
        variants.append({**schema, "properties": properties})
    return {"oneOf": variants, **({"$defs": defs} if defs else {})}


def new_candidate_id() -> str:
    return uuid.uuid4().hex[:12]


def plan(ctx: RunContext, step: int) -> Candidate:
    if ctx.baseline_id() is None:
        return {
            "candidate_id": new_candidate_id(),
            "origin": "baseline",
            "brain": "baseline",
            "parents": [],
            "genome": None,
            "plan": {
                "operator": "baseline",
                "hypothesis": f"the {ctx.task.name} baseline sets the bar every proposal must beat",
                "motivation": "no baseline result for this task configuration in memory yet",
                "expected_effect": "a reference score",
                "summary": f"the {ctx.task.name} baseline",
            },
        }
    if step % 2 == 0 and _random_samples(ctx) < ctx.settings.search.random_samples:
        # The honest yardstick, whatever the brain: the average architecture sampled at
        # random from the same space, trained by the same script (every other step, so
        # that a short run still shows the brain at work), never one the memory holds.
        search = _search(ctx, step)
        why = "random samples of the genome space are the yardstick any search must beat"
        sample = search.random_proposal(why)
        with ctx.memory.connect():
            known = _known(ctx)
            for _ in range(_NOVEL_TRIES):
                if sample.genome.key() not in known:
                    break
                sample = search.random_proposal(why)
        return _candidate(sample, origin="random", brain="random")
    return ctx.brains.planner.propose(ctx, step, reviews.notes(ctx.memory, ctx.run_id))


#: random draws before a yardstick sample is taken even if the memory holds its genome
_NOVEL_TRIES = 100


def _search(ctx: RunContext, step: int) -> HeuristicBrain:
    """The genome search of one step. A fresh generator per step, derived from the run's
    seed and the step (which differs between lanes) alone: the same seed proposes the same
    candidates (what a step sees of the memory is fixed too: RunContext.turns), and a
    resumed run needs no generator state."""
    search = ctx.settings.search
    return HeuristicBrain(
        random.Random(f"{ctx.settings.run.seed}:{step}"),
        tournament_size=search.tournament_size,
        crossover_rate=search.crossover_rate,
        random_rate=search.random_rate,
        space=search_space(ctx),
    )


def search_space(ctx: RunContext) -> SearchSpace:
    """The genome space of the run's task on the hardware its trials get."""
    return SearchSpace.for_task(ctx.task, ctx.settings.executor.gpus_per_trial)


class HeuristicPlanner:
    """The offline brain: children of the memory's best genomes, screened by a surrogate
    of their scores (`archlab.search`)."""

    def propose(self, ctx: RunContext, step: int, notes: list[str]) -> Candidate:
        with ctx.memory.connect():  # one open of the file for the pool and the novelty checks
            pool = _entries(
                ctx, ctx.memory.parent_pool(ctx.task_fingerprint, horizon=ctx.horizon(step))
            )
            proposal = _steered(_search(ctx, step), pool, _known(ctx), read_steer(notes))
        return _candidate(proposal, origin="proposed", brain="heuristic")


#: candidates of the task's history TPE's study is rebuilt from (Optuna's sampling grows
#: with them; the last 500 hold the search's present)
_TPE_HISTORY = 500


def _entries(ctx: RunContext, rows: list[dict[str, Any]]) -> list[PoolEntry]:
    """Candidates as the search sees them. The packaged transformer baseline is the small
    transformer that baseline_genome() describes: the search sees it as that genome, a
    parent already tried, not a new idea."""
    as_genome = _baseline_genome(ctx.task)
    baseline = ctx.baseline_id()
    return [
        PoolEntry(
            candidate_id=row["candidate_id"],
            score=row["score"],
            genome=Genome.model_validate(row["genome"])
            if row["genome"]
            else (as_genome if row["candidate_id"] == baseline else None),
        )
        for row in rows
    ]


class BaselinePlanner:
    """A standard search method as the offline brain (`archlab.search.baselines`):
    `evolution` (regularized evolution) or `tpe` (Optuna's TPE), over the genome space
    of the heuristic brain, rebuilt at each step from the task's history."""

    def __init__(self, method: str) -> None:
        if method == "tpe":
            require_optuna()  # before the run starts, not at its first proposal
        self.method = method

    def propose(self, ctx: RunContext, step: int, notes: list[str]) -> Candidate:
        search = ctx.settings.search
        rng = random.Random(f"{ctx.settings.run.seed}:{step}")  # as _search: resumable
        brain: RegularizedEvolution | TPE
        space = search_space(ctx)
        if self.method == "tpe":
            brain, limit = TPE(rng.randrange(2**32), space=space), _TPE_HISTORY
        else:
            brain = RegularizedEvolution(
                rng, search.population, search.tournament_size, space=space
            )
            limit = search.population
        with ctx.memory.connect():
            rows = queries.history(ctx.memory, ctx.task_fingerprint, ctx.horizon(step), limit)
            proposal = brain.propose(_entries(ctx, rows), _known(ctx))
        return _candidate(proposal, origin="proposed", brain=self.method)


class ModelPlanner:
    """A model (or a replayed run) proposes from a bounded summary of the memory. A step
    it gives no usable answer for is not the run's end: in compose mode the offline brain
    proposes it (origin `fallback`), in design mode it is recorded without a plan."""

    def __init__(self, asker: Asker) -> None:
        self.asker = asker

    def propose(self, ctx: RunContext, step: int, notes: list[str]) -> Candidate:
        try:
            return _ask_model(ctx, self.asker, step, notes)
        except ReplayExhausted:
            raise
        except NoAnswer as e:
            ctx.failed_steps.failed(ctx.settings.run.max_failed_steps, str(e))
            if ctx.settings.run.mode == "compose":
                return _fallback(HeuristicPlanner().propose(ctx, step, notes), str(e))
            return _unplanned(self.asker.brain, str(e))


def _fallback(candidate: Candidate, problem: str) -> Candidate:
    plan = candidate["plan"]
    motivation = f"{problem}; the offline brain proposed this step: {plan['motivation']}"
    return {**candidate, "origin": "fallback", "plan": {**plan, "motivation": motivation}}


def _unplanned(brain: str, problem: str) -> Candidate:
    return {
        "candidate_id": new_candidate_id(),
        "origin": "proposed",
        "brain": brain,
        "parents": [],
        "genome": None,
        "plan": {
            "operator": "none",
            "hypothesis": "none: the planner gave no usable answer",
            "motivation": problem,
            "expected_effect": "none",
            "summary": "no plan (the planner gave no usable answer)",
        },
        "unplanned": problem,
    }


def _random_samples(ctx: RunContext) -> int:
    """Random samples of the task's space drawn so far, whatever became of them (in flight
    included): the count must not change as they finish, for steps to plan the same."""
    drawn = queries.random_samples_drawn(ctx.memory, ctx.task_fingerprint)
    return len(drawn | ctx.inflight.ids("random"))


def _known(ctx: RunContext) -> _Known:
    """Genomes a proposal must not repeat (inside an open `ctx.memory.connect()`)."""
    as_genome = _baseline_genome(ctx.task)
    return _Known(
        queries.KnownGenomes(ctx.memory, ctx.task_fingerprint),
        ctx.inflight.genome_keys() | ({as_genome.key()} if as_genome else set()),
    )


def _baseline_genome(task: TokenTask) -> Genome | None:
    """The genome the task's baseline is, when it is the packaged small transformer."""
    return baseline_genome() if task.baseline_source() == transformer_source() else None


class _Known:
    """Genomes the memory holds, and those other lanes are evaluating right now (or tried
    in another form: the baseline)."""

    def __init__(self, memory: Container[str], in_flight: set[str]) -> None:
        self.memory, self.in_flight = memory, in_flight

    def __contains__(self, key: object) -> bool:
        return key in self.in_flight or key in self.memory


#: proposals drawn, then random genomes, before a steering note is given up as unsatisfiable
_STEER_TRIES = 24


def _steered(
    brain: HeuristicBrain, pool: list[PoolEntry], known: Container[str], steer: Steer
) -> Proposal:
    """The brain's proposal that the researcher's notes allow, if one can be found."""
    proposal = brain.propose(pool, known)
    if not steer:
        return proposal
    why = f"steered by the researcher's notes ({steer.describe()})"
    for _ in range(_STEER_TRIES):
        if steer.allows(proposal.genome):
            return replace(proposal, motivation=f"{proposal.motivation}; {why}")
        proposal = brain.propose(pool, known)
    for _ in range(_STEER_TRIES):
        sample = brain.random_proposal(why)
        if steer.allows(sample.genome) and sample.genome.key() not in known:
            return sample
    return replace(proposal, motivation=f"{proposal.motivation}; no proposal satisfied {why}")


def _candidate(proposal: Proposal, origin: Origin, brain: str) -> Candidate:
    return {
        "candidate_id": new_candidate_id(),
        "origin": origin,
        "brain": brain,
        "parents": list(proposal.parent_ids),
        "genome": proposal.genome.model_dump(mode="json"),
        "plan": {
            "operator": proposal.operator,
            "hypothesis": proposal.hypothesis,
            "motivation": proposal.motivation,
            "expected_effect": proposal.expected_effect,
            "summary": proposal.genome.describe(),
        },
    }


def _ask_model(ctx: RunContext, asker: Asker, step: int, notes: list[str]) -> Candidate:
    mode = ctx.settings.run.mode
    prompts = ctx.brains.prompts
    answer_type = ComposePlan if mode == "compose" else DesignPlan
    context: dict[str, Any] | None = briefing.planner_context(
        ctx.memory, ctx.task_fingerprint, mode == "design"
    )
    while context is not None:
        question = Question(
            role="planner",
            purpose="plan",
            messages=[
                {"role": "system", "content": prompts.render("planner_system.j2", mode=mode)},
                {
                    "role": "user",
                    "content": prompts.render(
                        "planner.j2",
                        task=task_brief(ctx.task),
                        mode=mode,
                        mixers=MIXERS,
                        channels=CHANNELS,
                        notes=notes,
                        **context,
                    ),
                },
            ],
            answer=answer_type,
            schema=plan_schema(answer_type, briefing.shown_ids(context)),
            check=lambda answer: _problem(ctx, answer),
            step=step,
        )
        try:
            answer = asker.ask(question)
            break
        except ContextOverflow:  # show fewer of the memory's entries, down to none
            shorter = briefing.shortened(context)
            if shorter is None:
                raise
            context = shorter
    genome = answer.genome.canonical() if isinstance(answer, ComposePlan) else None
    summary = genome.describe() if genome else getattr(answer, "summary", "")
    return {
        "candidate_id": new_candidate_id(),
        "origin": "proposed",
        "brain": asker.brain,
        # an answer kept after failing its checks may name ids that do not exist
        "parents": sorted(
            queries.known_ids(ctx.memory, ctx.task_fingerprint, answer.parents),
            key=answer.parents.index,
        ),
        "genome": genome.model_dump(mode="json") if genome else None,
        "plan": {
            "operator": answer.operator,
            "hypothesis": answer.hypothesis,
            "motivation": answer.motivation,
            "expected_effect": answer.expected_effect,
            "summary": summary,
        },
    }


def _problem(ctx: RunContext, answer: PlanAnswer) -> str | None:
    """Why a valid proposal should be reconsidered: unknown parents, or not novel."""
    fp = ctx.task_fingerprint
    unknown = set(answer.parents) - queries.known_ids(ctx.memory, fp, answer.parents)
    if unknown:
        return f"no candidate has the id(s) {sorted(unknown)}: use ids shown in the memory"
    if isinstance(answer, ComposePlan):
        genome = answer.genome.canonical()
        same = queries.with_genome(ctx.memory, fp, genome.key())
        if same:
            return f"candidate {same} already has this genome: propose an architecture not tried"
        spec = ctx.task.spec
        params = count_params(genome, spec["vocab_size"], spec["seq_len"])
        limit = ctx.task.max_params
        if params > limit:
            return f"this genome has {params:,} parameters, over the limit of {limit:,}"
    elif isinstance(answer, DesignPlan):
        same = queries.same_summary(ctx.memory, fp, answer.summary)
        if same:
            return f"candidate {same} already has this summary: propose something not tried"
    return None
