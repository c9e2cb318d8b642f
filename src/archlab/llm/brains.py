"""Which brain powers each role: `heuristic` (offline, no model), `llm:PROFILE` (any
OpenAI-compatible endpoint) or `replay:RUN` (the answers a past run acted on, no model).

Roles on a model or a replay get an :class:`Asker`; heuristic roles get none, and the
roles wrap each in their brain (`archlab.roles.brains`).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from archlab.config import Settings
from archlab.errors import ConfigError
from archlab.llm.client import LLM, NoAnswer, Question
from archlab.memory.store import Memory
from archlab.prompts import Prompts

T = TypeVar("T", bound=BaseModel)

ROLES = ("planner", "coder", "critic")
HEURISTIC = "heuristic"
#: the brains that need no model: the heuristic, and the standard search methods
#: (regularized evolution, Optuna's TPE), which differ from it in the planner alone
OFFLINE = (HEURISTIC, "evolution", "tpe")


class Asker(Protocol):
    @property
    def brain(self) -> str: ...

    def ask(self, question: Question[T]) -> T: ...


class ReplayExhausted(NoAnswer):
    """The replayed run holds no answer for this role at this step."""


class ReplayBrain:
    """Answers from a past run's log, by (role, step, repair); never calls a model.

    Semantic checks (novelty) are not re-applied: the decision is re-played as it was made.
    """

    def __init__(
        self,
        run_id: str,
        answers: dict[tuple[str, int, int], Any],
        log: Callable[[dict[str, Any]], None],
    ) -> None:
        self.brain = f"replay:{run_id}"
        self._answers = answers
        self._log = log

    def ask(self, question: Question[T]) -> T:
        key = (question.role, question.step, question.repair)
        if key not in self._answers:
            raise ReplayExhausted(
                f"{self.brain} holds no {question.role} answer for step {question.step}"
                + (f", repair {question.repair}" if question.repair else "")
            )
        value = question.answer.model_validate(self._answers[key])
        self._log(
            {
                "call_id": uuid.uuid4().hex[:16],
                "role": question.role,
                "purpose": question.purpose,
                "candidate_id": question.candidate_id,
                "step": question.step,
                "repair": question.repair,
                "attempt": 1,
                "retry": 0,
                "brain": self.brain,
                "model": "replay",
                "request": {"messages": question.messages},
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "tokens_estimated": False,
                "cost_usd": 0.0,
                "latency_s": 0.0,
                "status": "ok",
                "answer": value.model_dump(mode="json"),
            }
        )
        return value


class Remembering:
    """A model asker that first looks for the answer this run already received to the same
    question (role, step, repair): a node re-run after a crash does not pay for it twice."""

    def __init__(self, asker: Asker, memory: Memory, run_id: str) -> None:
        self.asker, self.memory, self.run_id = asker, memory, run_id

    @property
    def brain(self) -> str:
        return self.asker.brain

    def ask(self, question: Question[T]) -> T:
        answer = self.memory.remembered_answer(
            self.run_id, question.role, question.step, question.repair
        )
        if answer is not None:
            return question.answer.model_validate(answer)
        return self.asker.ask(question)


def parse_brain(spec: str) -> tuple[str, str]:
    """An offline brain (`heuristic`, `evolution`, `tpe`), `llm` (the default profile),
    `llm:NAME`, `replay:RUN`, or a bare NAME."""
    if spec in OFFLINE:
        return spec, ""
    kind, sep, arg = spec.partition(":")
    if sep and kind in ("llm", "replay") and arg:
        return kind, arg
    if spec == "llm":
        return "llm", "default"
    return "llm", spec


def _role_brain(settings: Settings, role: str) -> tuple[str, str]:
    """The config key that gives the role its brain, and the brain it gives."""
    spec = getattr(settings.roles, role)
    return (f"roles.{role}", spec) if spec else ("run.brain", settings.run.brain)


def profiles_in_use(settings: Settings) -> list[str]:
    """The LLM profiles the roles use, or every profile when no role uses one."""
    used = []
    for role in ROLES:
        kind, arg = parse_brain(_role_brain(settings, role)[1])
        if kind == "llm" and arg not in used:
            used.append(arg)
    return used or list(settings.llm)


@dataclass
class RoleAskers:
    """What each role's brain is called, and the asker of each role that has a model (or a
    replay) behind it."""

    names: dict[str, str]
    askers: dict[str, Asker]
    prompts: Prompts


def role_askers(
    settings: Settings, memory: Memory, run_id: str, cancel: threading.Event | None = None
) -> RoleAskers:
    """Resolve every role's brain; ConfigError names the key that is wrong. Setting
    `cancel` stops the model calls under way."""
    prompts = Prompts(settings.prompts_dir)

    def log(row: dict[str, Any]) -> None:
        memory.save_llm_call(run_id=run_id, **row)

    names: dict[str, str] = {}
    askers: dict[str, Asker] = {}
    shared: dict[str, Asker] = {}  # one client per profile, one log reader per replayed run
    for role in ROLES:
        key, spec = _role_brain(settings, role)
        kind, arg = parse_brain(spec)
        if kind in OFFLINE:
            names[role] = kind
            continue
        if kind == "llm":
            if arg not in settings.llm:
                how = " or give --llm-base-url and --llm-model" if arg == "default" else ""
                raise ConfigError(f"{key}: no [llm.{arg}] profile in the configuration{how}")
            name = f"llm:{arg}"
            if name not in shared:
                llm = LLM(arg, settings.llm[arg], prompts, log, cancel)
                shared[name] = Remembering(llm, memory, run_id)
        else:
            past = memory.get_run(arg)["run_id"]
            name = f"replay:{past}"
            if name not in shared:
                shared[name] = ReplayBrain(past, memory.accepted_answers(past), log)
        names[role], askers[role] = name, shared[name]
    if settings.run.mode == "design":
        offline = [role for role in ("planner", "coder") if role not in askers]
        if offline:
            raise ConfigError(
                f"design mode needs a model (or a replay) for the {' and '.join(offline)}: "
                "set [roles] or --brain, or use mode = 'compose'"
            )
    return RoleAskers(names, askers, prompts)
