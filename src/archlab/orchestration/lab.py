"""The run as its graph sees it: the roles' context, plus what only orchestration uses."""

from __future__ import annotations

from dataclasses import dataclass, field

from archlab.orchestration.budget import RunBudget
from archlab.orchestration.console import Reporter
from archlab.roles.context import RunContext


@dataclass
class Lab(RunContext):
    """Injected into every graph node as LangGraph's runtime context (`runtime.context`).

    The budget and the reporter are set once the run is registered (`runs.started`)."""

    #: the run's budgets, shared by its lanes
    budget: RunBudget = field(init=False)
    #: every line the run prints
    report: Reporter = field(init=False)
