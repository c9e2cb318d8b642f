"""One brain interface per role. Each role asks its brain for what only a brain decides
(the planner: the next idea; the coder: the module of an idea that is not a genome; the
critic: the explanation of the ladder's decision); the heuristic brain, a model and a
replayed run are implementations of the same interface."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from archlab.config import Settings
from archlab.eval.stats import Judgement
from archlab.llm.brains import HEURISTIC, ROLES, role_askers
from archlab.memory.store import Memory
from archlab.prompts import Prompts
from archlab.records import Candidate, Outcome, Verdict
from archlab.roles import coder, critic, planner

if TYPE_CHECKING:
    from archlab.roles.context import RunContext


class PlannerBrain(Protocol):
    def propose(self, ctx: RunContext, step: int, notes: list[str]) -> Candidate:
        """The next idea to try (`notes`: the researcher's steering notes)."""
        ...


class CoderBrain(Protocol):
    #: whether it writes modules of its own, and so can repair one that failed
    writes_code: bool

    def write(self, ctx: RunContext, candidate: Candidate, failed: dict[str, Any] | None) -> str:
        """The module of a candidate that is no genome; `failed` asks for a repair."""
        ...


class CriticBrain(Protocol):
    def judge(
        self,
        ctx: RunContext,
        candidate: Candidate,
        outcome: Outcome,
        decision: Judgement,
        repairable: bool,
    ) -> Verdict:
        """The verdict on a trained candidate: the ladder's `decision`, explained."""
        ...


@dataclass
class Brains:
    names: dict[str, str]
    planner: PlannerBrain
    coder: CoderBrain
    critic: CriticBrain
    prompts: Prompts

    def describe(self) -> str:
        names = set(self.names.values())
        if len(names) == 1:
            return names.pop()
        return " ".join(f"{role}={self.names[role]}" for role in ROLES)


def build_brains(
    settings: Settings, memory: Memory, run_id: str, cancel: threading.Event | None = None
) -> Brains:
    """Every role's brain: a model's or a replay's where the configuration gives one,
    else the heuristic's; ConfigError names the key that is wrong. Setting `cancel` stops
    the model calls under way."""
    resolved = role_askers(settings, memory, run_id, cancel)
    askers = resolved.askers
    return Brains(
        names=resolved.names,
        planner=_planner(resolved.names["planner"], askers),
        coder=coder.ModelCoder(askers["coder"]) if "coder" in askers else coder.TemplateCoder(),
        critic=critic.ModelCritic(askers["critic"])
        if "critic" in askers
        else critic.HeuristicCritic(),
        prompts=resolved.prompts,
    )


def _planner(name: str, askers: dict[str, Any]) -> PlannerBrain:
    if "planner" in askers:
        return planner.ModelPlanner(askers["planner"])
    return planner.HeuristicPlanner() if name == HEURISTIC else planner.BaselinePlanner(name)
