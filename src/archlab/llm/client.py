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

import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, TypeVar

import openai
from pydantic import BaseModel

from archlab.config import ROLE_OUTPUT_TOKENS, LLMProfile, LLMRole
from archlab.errors import ArchlabError, Cancelled
from archlab.llm.answers import (
    Unusable,
    example_answer,
    read_json,
    split_think,
    strict_schema,
)
from archlab.llm.servers import (
    MAX_WAIT_S,
    assemble,
    error_body,
    error_detail,
    estimate_tokens,
    json_schema_refusal,
    overflow_of,
    retry_after,
    served_context,
    served_prompt_tokens,
)
from archlab.prompts import Prompts

T = TypeVar("T", bound=BaseModel)

#: sent as the key to servers that need none (the SDK insists on some string)
_NO_KEY = "no-key"
_CHARS_PER_TOKEN = 4  # estimate for servers that report no usage
#: the smallest room for an answer worth asking for
MIN_OUTPUT_TOKENS = 256
#: how often a waiting call looks whether the run was told to stop
_POLL_S = 0.1


class LLMError(ArchlabError):
    """The endpoint cannot be used: unreachable, a bad key, an unknown model, a refused request."""


class ContextOverflow(LLMError):
    """The prompt leaves no room for an answer in the server's context."""

    def __init__(self, message: str, context_tokens: int, prompt_tokens: int) -> None:
        super().__init__(message)
        self.context_tokens, self.prompt_tokens = context_tokens, prompt_tokens


class NoAnswer(Exception):
    """No usable answer within the profile's attempts."""


@dataclass(frozen=True)
class Question(Generic[T]):
    role: LLMRole
    purpose: str  # plan | write | repair | critique | check
    messages: list[dict[str, str]]
    answer: type[T]
    #: reads the answer text; None means the answer is JSON for `answer` (structured output)
    parse: Callable[[str], T] | None = None
    #: a soft check of a valid answer (e.g. novelty): its problem is fed back while attempts
    #: remain, and the last valid answer is kept when none passes
    check: Callable[[T], str | None] | None = None
    #: the JSON schema sent as response_format where the role knows more than the type
    #: says (the ids that exist); None: the type's own strict schema
    schema: dict[str, Any] | None = None
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
        cancel: threading.Event | None = None,
    ) -> None:
        self.name = name
        self.profile = profile
        self.prompts = prompts
        self.log = log
        #: set to stop a call at once (Ctrl-C): it raises Cancelled
        self.cancel = cancel or threading.Event()
        self._stream = profile.stream
        #: json_schema refused by the server: json_object with the schema beside it instead
        self._schema_in_json_object = False
        self._context: int | None = profile.context_tokens
        self._context_asked = profile.context_tokens is not None
        #: whether the server may count a prompt's tokens (until it is found not to)
        self._counts_tokens = True

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
        """Below json_schema mode the schema travels in the prompt: the answer type's own,
        shorter than the one a decoder is constrained by (the prompt says the rest)."""
        if question.parse is not None or self.profile.structured_output == "json_schema":
            return list(question.messages)
        schema = strict_schema(question.answer)
        *head, last = question.messages
        answer_format = self.prompts.render(
            "answer_format.j2",
            schema=json.dumps(schema),
            example=json.dumps(example_answer(schema), indent=1),
        )
        return [*head, {**last, "content": f"{last['content']}\n{answer_format}"}]

    def read(self, question: Question[T], reply: Reply) -> T:
        """The reply as the question's answer; Unusable says why it cannot be one."""
        if reply.finish_reason == "length":
            limit = reply.row["request"][self.profile.token_limit_field]
            raise Unusable(
                f"the answer was cut off at the limit of {limit} output tokens; answer "
                "again, complete and shorter"
            )
        if question.parse is not None:
            return question.parse(reply.content)
        return read_json(reply.content, question.answer)

    def context_tokens(self) -> int | None:
        """The server's context length: the profile's, the server's word, or the last
        overflow's; None where nothing tells."""
        if not self._context_asked:
            self._context_asked = True
            self._context = served_context(self._client, self.profile.model, self._key)
        return self._context

    def output_limit(self, role: LLMRole, messages: list[dict[str, str]]) -> int:
        """The role's output limit, within the room the prompt leaves in the context;
        ContextOverflow where it leaves too little."""
        p = self.profile
        limits = {**ROLE_OUTPUT_TOKENS, **p.role_output_tokens}
        limit = min(p.max_output_tokens, limits[role])
        context = self.context_tokens()
        if context is None:
            return limit
        prompt = estimate_tokens(messages)
        if context - prompt < limit:  # short by the estimate (high): the server's count decides
            prompt = self._counted_tokens(messages) or prompt
        room = context - prompt
        if room < min(limit, MIN_OUTPUT_TOKENS):
            raise ContextOverflow(self._overflow_message(context, prompt, limit), context, prompt)
        return min(limit, room)

    def _counted_tokens(self, messages: list[dict[str, str]]) -> int | None:
        if not self._counts_tokens:
            return None
        counted = served_prompt_tokens(self._client, self.profile.model, self._key, messages)
        self._counts_tokens = counted is not None
        return counted

    def _overflow_message(self, context: int | None, prompt: int, limit: int) -> str:
        size = f"of {context} tokens" if context else "(its size not given)"
        return (
            f"LLM endpoint {self.profile.base_url} (profile '{self.name}'): context overflow: "
            f"the prompt (about {prompt} tokens) and the answer's limit ({limit} tokens) do not "
            f"fit the server's context {size}; start the server with a bigger "
            "context (llama-server -c N, python -m llama_cpp.server --n_ctx N), or lower "
            f"[llm.{self.name}] role_output_tokens"
        )

    def _body(
        self, question: Question[Any], messages: list[dict[str, str]], limit: int
    ) -> dict[str, Any]:
        p = self.profile
        body: dict[str, Any] = {"model": p.model, "messages": messages, p.token_limit_field: limit}
        if self._stream:
            body.update(stream=True, stream_options={"include_usage": True})
        if p.temperature is not None:
            body["temperature"] = p.temperature
        if question.parse is not None:
            return body
        schema = question.schema or strict_schema(question.answer)
        if p.structured_output == "json_schema" and self._schema_in_json_object:
            # llama-cpp-python's server: JSON mode constrained by the schema
            body["response_format"] = {"type": "json_object", "schema": schema}
        elif p.structured_output == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": question.answer.__name__, "schema": schema},
            }
        elif p.structured_output == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    def complete(
        self, question: Question[Any], messages: list[dict[str, str]], attempt: int
    ) -> Reply:
        """One answer, retrying rate limits, server errors, timeouts and lost connections;
        ContextOverflow when the prompt does not fit, Cancelled when the run is stopped."""
        limit = self.output_limit(question.role, messages)
        row: dict[str, Any] = {
            "role": question.role,
            "purpose": question.purpose,
            "candidate_id": question.candidate_id,
            "step": question.step,
            "repair": question.repair,
            "attempt": attempt,
            "brain": self.brain,
            "model": self.profile.model,
            "base_url": self.profile.base_url,
        }
        retry = 0
        while True:
            body = self._body(question, messages, limit)
            row["request"] = {**body, **self.profile.extra_body}  # as sent
            started = time.monotonic()
            try:
                response = self._send(body)
            except openai.APIError as e:
                failed = {**row, "retry": retry, "latency_s": time.monotonic() - started}
                failed["response"] = error_body(e)
                refusal = json_schema_refusal(e, body)
                if refusal is not None:
                    self._schema_in_json_object = True
                    note = (
                        f"the server refused response_format json_schema ({refusal}): "
                        "from now on json_object with the schema"
                    )
                    self._save(failed, status="error", error=note)
                    continue
                overflow = overflow_of(e)
                if overflow is not None:
                    limit = self._after_overflow(failed, overflow, messages, limit)
                    continue
                message, wait = self._diagnose(e, retry)
                self._save(failed, status="error", error=self._scrub(message))
                if wait is None or retry >= self.profile.max_retries:
                    tries = f" (after {retry + 1} tries)" if wait is not None else ""
                    raise LLMError(self._scrub(message) + tries) from None
                self._sleep(wait)
                retry += 1
                continue
            return self._reply(
                response, {**row, "retry": retry, "latency_s": time.monotonic() - started}
            )

    def _after_overflow(
        self,
        row: dict[str, Any],
        overflow: tuple[int | None, int | None],
        messages: list[dict[str, str]],
        limit: int,
    ) -> int:
        """The output limit to ask again with, learnt from an overflow; ContextOverflow
        where the prompt leaves too little room (or a smaller limit did not help)."""
        context, prompt = overflow
        prompt = prompt or estimate_tokens(messages)
        self._context = context or self._context
        message = self._overflow_message(self._context, prompt, limit)
        self._save(row, status="error", error=message)
        if self._context is None or not MIN_OUTPUT_TOKENS <= self._context - prompt < limit:
            raise ContextOverflow(message, self._context or 0, prompt)
        return self._context - prompt

    def _sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise Cancelled("the run was told to stop while waiting to retry")

    def _send(self, body: dict[str, Any]) -> dict[str, Any]:
        """The response as JSON, streamed where the server streams. The request runs in a
        thread of its own so that a stop (Ctrl-C in any lane) ends the wait at once; the
        client's read timeout is the timeout on silence."""
        box: queue.Queue[tuple[str, Any]] = queue.Queue()
        extra = self.profile.extra_body or None

        def request() -> None:
            create = self._client.chat.completions.create
            try:
                if not body.get("stream"):
                    box.put(("done", create(**body, extra_body=extra).model_dump(mode="json")))
                    return
                with create(**body, extra_body=extra) as stream:
                    if "event-stream" not in stream.response.headers.get("content-type", ""):
                        box.put(("whole", stream.response.read()))  # it did not stream
                        return
                    for chunk in stream:
                        box.put(("chunk", chunk))
                box.put(("end", None))
            except Exception as e:
                box.put(("error", e))

        if not self.cancel.is_set():
            threading.Thread(target=request, name="llm-request", daemon=True).start()
        chunks: list[Any] = []
        while True:
            if self.cancel.is_set():
                raise Cancelled("the run was told to stop during an LLM call")
            try:
                kind, item = box.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if kind == "chunk":
                chunks.append(item)
            elif kind == "error":
                raise item
            elif kind == "done":
                return dict(item)
            elif kind == "whole":  # a server that answers a stream request with one response
                self._stream = False
                return dict(json.loads(item))
            else:
                return assemble(chunks)

    def _reply(self, response: dict[str, Any], row: dict[str, Any]) -> Reply:
        choice = (response.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        content, reasoning = self._split_reasoning(message)
        usage = response.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        estimated = prompt_tokens is None or completion_tokens is None
        if prompt_tokens is None or completion_tokens is None:
            # the budgets must hold with servers that report no usage
            prompt_chars = sum(len(m["content"]) for m in row["request"]["messages"])
            prompt_tokens = prompt_chars // _CHARS_PER_TOKEN
            completion_tokens = (len(content) + len(reasoning or "")) // _CHARS_PER_TOKEN
        p = self.profile
        cost = (prompt_tokens * p.usd_per_m_input + completion_tokens * p.usd_per_m_output) / 1e6
        row.update(
            response=response,
            content=content,
            reasoning=reasoning,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            tokens_estimated=estimated,
            cost_usd=cost,
        )
        return Reply(content, reasoning, row["finish_reason"], row)

    def _split_reasoning(self, message: dict[str, Any]) -> tuple[str, str | None]:
        content = message.get("content") or ""
        mode = self.profile.reasoning
        parts: list[str] = []
        fields = ("reasoning_content", "reasoning") if mode == "auto" else (mode,)
        for name in fields:
            value = message.get(name)
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
        status, detail = e.status_code, error_detail(e)
        if status in (408, 409, 429) or status >= 500:
            return f"{where} answered {status}: {detail}", retry_after(e) or backoff
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
        mode = self.profile.structured_output
        hint = ""
        if status in (400, 422) and mode != "prompt" and "format" in detail.lower():
            others = [m for m in ("json_schema", "json_object", "prompt") if m != mode]
            hint = (
                f"; if the server does not support structured_output = '{mode}', "
                f"try '{others[0]}' or '{others[1]}'"
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
