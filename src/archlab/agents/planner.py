"""The planner: decides what to try next from what the memory holds.

The first candidate of a task is its baseline; after that the brain proposes children
of the best candidates of this task across every run, never one the memory already holds.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from archlab.agents.genome import Genome
from archlab.agents.heuristic import HeuristicBrain, PoolEntry
from archlab.agents.state import LabState, RunContext


def new_candidate_id() -> str:
    return uuid.uuid4().hex[:12]


def plan(ctx: RunContext, state: LabState) -> dict[str, Any]:
    if ctx.memory.baseline(ctx.task_fingerprint) is None:
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
    search = ctx.settings.search
    # A fresh generator per step, derived from the run seed and the step: the same run
    # replays the same proposals, and a resumed run needs no generator state.
    rng = random.Random(f"{ctx.settings.run.seed}:{ctx.run_id}:{state.get('evaluated', 0)}")
    brain = HeuristicBrain(
        rng,
        tournament_size=search.tournament_size,
        crossover_rate=search.crossover_rate,
        random_rate=search.random_rate,
    )
    pool = [
        PoolEntry(
            candidate_id=row["candidate_id"],
            score=row["score"],
            genome=Genome.model_validate(row["genome"]) if row["genome"] else None,
        )
        for row in ctx.memory.parent_pool(ctx.task_fingerprint)
    ]
    proposal = brain.propose(pool, ctx.memory.genome_keys(ctx.task_fingerprint))
    return {
        "candidate_id": new_candidate_id(),
        "origin": "proposed",
        "brain": "heuristic",
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
