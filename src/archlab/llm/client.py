"""The LLM transport: any OpenAI-compatible endpoint, and answers read into pydantic models.

A :class:`Question` carries the messages and the type of answer wanted. :meth:`LLM.ask`
sends it, keeps the reasoning apart (``reasoning_content``, ``reasoning``, ``<think>``),
reads the answer (JSON pulled out of fences or prose and repaired, see
:mod:`archlab.llm.answers`, or a custom parser such as the coder's), validates it, and
re-asks with what was wrong, a bounded number of times. Rate limits, 5xx and timeouts back
off; every HTTP request is logged whole. The API key is read from the profile's environment
variable when the client is first used, and never logged: error texts are scrubbed of it.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, TypeVar

import openai
from pydantic import BaseModel

from archlab.config import LLMProfile
from archlab.errors import ArchlabError
from archlab.llm.answers import Unusable, read_json, split_think
from archlab.prompts import Prompts

T = TypeVar("T", bound=BaseModel)

#: longest Retry-After honoured; a provider asking for more is waited on this long, then retried
MAX_WAIT_S = 60.0
#: sent as the key to servers that need none (the SDK insists on some string)
_NO_KEY = "no-key"
_CHARS_PER_TOKEN = 4  # estimate for servers that report no usage


class LLMError(ArchlabError):
    """The endpoint cannot be used: unreachable, a bad key, an unknown model, a refused request."""


class NoAnswer(Exception):
    """No usable answer within the profile's attempts."""


@dataclass(frozen=True)
class Question(Generic[T]):
    role: str  # planner | coder | critic | check
    purpose: str  # plan | write | repair | critique | check
    messages: list[dict[str, str]]
    answer: type[T]
    #: reads the answer text; None means the answer is JSON for `answer` (structured output)
    parse: Callable[[str], T] | None = None
    #: a soft check of a valid answer (e.g. novelty): its problem is fed back while attempts
    #: remain, and the last valid answer is kept when none passes
    check: Callable[[T], str | None] | None = None
    candidate_id: str | None = None
    step: int = 0
    repair: int = 0


@dataclass
class Reply:
    content: str
    reasoning: str | None
    finish_reason: str | None
    #: the log row for this request, completed by `ask` with the verdict on the answer
    row: dict[str, Any] = field(default_factory=dict)


class LLM:
    """One profile's endpoint. `log` receives a row per HTTP request (see migration 002)."""

    def __init__(
        self,
        name: str,
        profile: LLMProfile,
        prompts: Prompts,
        log: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.name = name
        self.profile = profile
        self.prompts = prompts
        self.log = log

    @property
    def brain(self) -> str:
        return f"llm:{self.name}"

    @cached_property
    def _key(self) -> str:
        env = self.profile.api_key_env
        return (os.environ.get(env) if env else None) or _NO_KEY

    @cached_property
    def _client(self) -> openai.OpenAI:
        # Retries are ours (max_retries=0): each one is logged and Retry-After is honoured.
        return openai.OpenAI(
            base_url=self.profile.base_url,
            api_key=self._key,
            timeout=self.profile.timeout_s,
            max_retries=0,
        )

    def ask(self, question: Question[T]) -> T:
        """The first usable answer; NoAnswer when every attempt was unusable."""
        messages = self.messages_for(question)
        kept: tuple[T, dict[str, Any]] | None = None
        problem = ""
        for attempt in range(1, self.profile.max_attempts + 1):
            reply = self.complete(question, messages, attempt)
            try:
                value = self.read(question, reply)
            except Unusable as e:
                problem = str(e)
                self._save(reply.row, status="invalid", error=problem)
            else:
                problem = (question.check(value) if question.check else None) or ""
                if not problem:
                    self._save(reply.row, status="ok", answer=value.model_dump(mode="json"))
                    return value
                kept = (value, reply.row)
                self._save(reply.row, status="invalid", error=problem)
            messages = [
                *messages,
                {"role": "assistant", "content": reply.content},
                {"role": "user", "content": self.prompts.render("reask.j2", problem=problem)},
            ]
        if kept is not None:
            value, row = kept
            note = f"kept: no later answer passed the check ({row['error']})"
            self._save(row, status="ok", error=note, answer=value.model_dump(mode="json"))
            return value
        raise NoAnswer(
            f"the {question.role} ({self.brain}) gave no usable answer in "
            f"{self.profile.max_attempts} attempts; the last problem: {problem}"
        )

    def messages_for(self, question: Question[Any]) -> list[dict[str, str]]:
        """Below json_schema mode the schema travels in the prompt."""
        if question.parse is not None or self.profile.structured_output == "json_schema":
            return list(question.messages)
        schema = json.dumps(question.answer.model_json_schema())
        *head, last = question.messages
        text = last["content"] + "\n" + self.prompts.render("answer_format.j2", schema=schema)
        return [*head, {**last, "content": text}]

    def read(self, question: Question[T], reply: Reply) -> T:
        """The reply as the question's answer; Unusable says why it cannot be one."""
        if reply.finish_reason == "length":
            raise Unusable(
                f"the answer was cut off at the limit of {self.profile.max_output_tokens} "
                "output tokens; answer again, complete and shorter"
            )
        if question.parse is not None:
            return question.parse(reply.content)
        return read_json(reply.content, question.answer)

    def _body(self, question: Question[Any], messages: list[dict[str, str]]) -> dict[str, Any]:
        p = self.profile
        body: dict[str, Any] = {
            "model": p.model,
            "messages": messages,
            p.token_limit_field: p.max_output_tokens,
        }
        if p.temperature is not None:
            body["temperature"] = p.temperature
        if question.parse is None and p.structured_output == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": question.answer.__name__,
                    "schema": question.answer.model_json_schema(),
                },
            }
        elif question.parse is None and p.structured_output == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    def complete(
        self, question: Question[Any], messages: list[dict[str, str]], attempt: int
    ) -> Reply:
        """One answer, retrying rate limits, server errors, timeouts and lost connections."""
        body = self._body(question, messages)
        row = {
            "role": question.role,
            "purpose": question.purpose,
            "candidate_id": question.candidate_id,
            "step": question.step,
            "repair": question.repair,
            "attempt": attempt,
            "brain": self.brain,
            "model": self.profile.model,
            "base_url": self.profile.base_url,
            "request": {**body, **self.profile.extra_body},  # as sent
        }
        retry = 0
        while True:
            started = time.monotonic()
            try:
                completion = self._client.chat.completions.create(
                    **body, extra_body=self.profile.extra_body or None
                )
            except openai.APIError as e:
                message, wait = self._diagnose(e, retry)
                latency = time.monotonic() - started
                self._save(
                    {**row, "retry": retry, "latency_s": latency, "response": _error_body(e)},
                    status="error",
                    error=self._scrub(message),
                )
                if wait is None or retry >= self.profile.max_retries:
                    tries = f" (after {retry + 1} tries)" if wait is not None else ""
                    raise LLMError(self._scrub(message) + tries) from None
                time.sleep(wait)
                retry += 1
                continue
            return self._reply(
                completion, {**row, "retry": retry, "latency_s": time.monotonic() - started}
            )

    def _reply(self, completion: Any, row: dict[str, Any]) -> Reply:
        choice = completion.choices[0] if completion.choices else None
        message = choice.message if choice else None
        content, reasoning = self._split_reasoning(message)
        usage = completion.usage
        estimated = usage is None or None in (usage.prompt_tokens, usage.completion_tokens)
        if estimated:  # the budgets must hold with servers that report no usage
            prompt_chars = sum(len(m["content"]) for m in row["request"]["messages"])
            prompt_tokens = prompt_chars // _CHARS_PER_TOKEN
            completion_tokens = (len(content) + len(reasoning or "")) // _CHARS_PER_TOKEN
        else:
            prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens
        p = self.profile
        cost = (prompt_tokens * p.usd_per_m_input + completion_tokens * p.usd_per_m_output) / 1e6
        row.update(
            response=completion.model_dump(mode="json"),
            content=content,
            reasoning=reasoning,
            finish_reason=choice.finish_reason if choice else None,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            tokens_estimated=estimated,
            cost_usd=cost,
        )
        return Reply(content, reasoning, row["finish_reason"], row)

    def _split_reasoning(self, message: Any) -> tuple[str, str | None]:
        content = (message.content if message else None) or ""
        mode = self.profile.reasoning
        parts: list[str] = []
        fields = ("reasoning_content", "reasoning") if mode == "auto" else (mode,)
        for name in fields:
            value = getattr(message, name, None)
            if isinstance(value, str) and value.strip():
                parts.append(value.strip())
        if mode in ("auto", "think_tags"):
            content, thoughts = split_think(content)
            parts.extend(thoughts)
        return content.strip(), "\n\n".join(parts) or None

    def _diagnose(self, e: openai.APIError, retry: int) -> tuple[str, float | None]:
        """What went wrong, in words, and how long to wait before retrying (None: do not)."""
        where = f"LLM endpoint {self.profile.base_url} (profile '{self.name}')"
        backoff = min(0.5 * 2**retry, MAX_WAIT_S)
        if isinstance(e, openai.APITimeoutError):
            return f"{where} sent no answer within {self.profile.timeout_s:g} s", backoff
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e
            return f"cannot reach {where}: {cause}", backoff
        if not isinstance(e, openai.APIStatusError):
            return f"{where}: {e}", None
        status, detail = e.status_code, _detail(e)
        if status in (408, 409, 429) or status >= 500:
            return f"{where} answered {status}: {detail}", _retry_after(e) or backoff
        if status in (401, 403):
            env = self.profile.api_key_env
            if env and self._key == _NO_KEY:
                hint = f"${env} is not set"
            elif env:
                hint = f"check the key in ${env}"
            else:
                hint = "the profile sends no key: set api_key_env"
            return f"{where} refused the API key ({status}): {hint}", None
        if status == 404:
            return (
                f"{where} answered 404 for model '{self.profile.model}' ({detail}): check "
                f"base_url and model{self._served_models()}",
                None,
            )
        hint = ""
        if status in (400, 422) and self.profile.structured_output != "prompt":
            hint = (
                "; if the server does not support structured_output = "
                f"'{self.profile.structured_output}', try 'json_object' or 'prompt'"
            )
        return f"{where} rejected the request ({status}): {detail}{hint}", None

    def _served_models(self) -> str:
        """What the endpoint serves, for a model name that was not found."""
        try:
            names = sorted(m.id for m in self._client.models.list())
        except openai.APIError:
            return ""
        return f"; it serves: {', '.join(names[:20])}" if names else ""

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key != _NO_KEY else text

    def _save(self, row: dict[str, Any], **verdict: Any) -> None:
        row.update(verdict)
        if self.log is None:
            return
        defaults = {
            "content": None,
            "reasoning": None,
            "finish_reason": None,
            "response": None,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "tokens_estimated": False,
            "cost_usd": 0.0,
            "answer": None,
            "error": None,
        }
        row.setdefault("call_id", uuid.uuid4().hex[:16])
        if row["response"] is not None:
            row["response"] = json.loads(self._scrub(json.dumps(row["response"])))
        self.log({**defaults, **row})


def _detail(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
        return str(message)[:300]
    return str(body or e.message)[:300]


def _error_body(e: openai.APIError) -> Any:
    if isinstance(e, openai.APIStatusError):
        return {"status": e.status_code, "body": e.body}
    return None


def _retry_after(e: openai.APIStatusError) -> float | None:
    headers = e.response.headers
    try:
        if "retry-after-ms" in headers:
            return min(float(headers["retry-after-ms"]) / 1000, MAX_WAIT_S)
        if "retry-after" in headers:
            value = headers["retry-after"]
            try:
                seconds = float(value)
            except ValueError:
                when = email.utils.parsedate_to_datetime(value)
                seconds = when.timestamp() - time.time()
            return min(max(seconds, 0.0), MAX_WAIT_S)
    except (ValueError, TypeError):
        return None
    return None
