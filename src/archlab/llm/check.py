"""`archlab llm check`: one small structured request, to see that a profile works."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from archlab.llm.answers import Unusable, prose
from archlab.llm.client import LLM, Question


class Ping(BaseModel):
    """The small structured answer `archlab llm check` asks for."""

    word: str = prose("the word asked for", 40)
    number: int


@dataclass(frozen=True)
class CheckReport:
    latency_s: float
    #: honoured | repaired (archlab could read it) | not honoured
    structured: str
    problem: str | None
    reasoning_chars: int
    prompt_tokens: int
    completion_tokens: int


def check(llm: LLM) -> CheckReport:
    """Send one small structured request; LLMError if the endpoint cannot be used."""
    question = Question(
        role="check",
        purpose="check",
        messages=[{"role": "user", "content": llm.prompts.render("check.j2")}],
        answer=Ping,
    )
    reply = llm.complete(question, llm.messages_for(question), attempt=1)
    row = reply.row
    problem = None
    try:
        Ping.model_validate_json(reply.content)
        structured = "honoured"
    except ValidationError:
        structured = "repaired"
    try:
        ping = llm.read(question, reply)
        if (ping.word, ping.number) != ("archlab", 42):
            problem = f"the model answered {ping.word!r} and {ping.number}, not 'archlab' and 42"
    except Unusable as e:
        structured, problem = "not honoured", str(e)
    return CheckReport(
        latency_s=row["latency_s"],
        structured=structured,
        problem=problem,
        reasoning_chars=len(reply.reasoning or ""),
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
    )
