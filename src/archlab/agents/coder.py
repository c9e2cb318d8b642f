"""The coder: turns a plan into the candidate module that is stored and run.

In compose mode the code is always the genome rendered through the templates, so what
is stored is exactly what ran."""

from __future__ import annotations

from typing import Any

from archlab.agents.genome import Genome, render
from archlab.agents.state import RunContext


def write_code(ctx: RunContext, candidate: dict[str, Any]) -> str:
    if candidate.get("source") is not None:  # hand-written (archlab eval)
        return str(candidate["source"])
    if candidate["origin"] == "baseline":
        return ctx.task.baseline_source()
    return render(Genome.model_validate(candidate["genome"]))


def genome_key(candidate: dict[str, Any]) -> str | None:
    genome = candidate.get("genome")
    return Genome.model_validate(genome).key() if genome else None
