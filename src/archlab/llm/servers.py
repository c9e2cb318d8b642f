"""What OpenAI-compatible servers say beyond the API's types, read the same way for every
server: the context length a local server reports, its overflow and refusal messages, error
bodies, Retry-After, and a streamed answer put back together as one response."""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections import defaultdict
from typing import Any

import httpx
import openai

#: longest Retry-After honoured; a provider asking for more is waited on this long, then retried
MAX_WAIT_S = 60.0
#: a prompt's tokens when sizing the answer's limit: fewer characters per token than the
#: usage estimate (code and JSON tokenize densely), plus the chat template's per message
_SIZING_CHARS_PER_TOKEN = 3
_TEMPLATE_TOKENS = 8
#: how long the server is given to say its context length
_ASK_S = 10.0
#: an error body is shown up to this length
_DETAIL_CHARS = 2000


def _native(client: openai.OpenAI, key: str) -> tuple[str, dict[str, str]]:
    """Where a server's own endpoints lie (beside /v1), and the headers that reach them."""
    return str(client.base_url).rstrip("/").removesuffix("/v1"), {"Authorization": f"Bearer {key}"}


def served_context(client: openai.OpenAI, model: str, key: str) -> int | None:
    """The context length the server reports: llama.cpp's /props (beside /v1), vLLM's
    max_model_len; None where it says neither."""
    root, headers = _native(client, key)
    try:
        props = httpx.get(f"{root}/props", headers=headers, timeout=_ASK_S).json()
        settings = props.get("default_generation_settings") or {}
        n_ctx = settings.get("n_ctx") or props.get("n_ctx")
        if isinstance(n_ctx, int) and n_ctx > 0:
            return n_ctx
    except (httpx.HTTPError, ValueError, AttributeError):
        pass
    try:
        for served in client.with_options(timeout=_ASK_S).models.list():
            n_ctx = (served.model_extra or {}).get("max_model_len")
            if served.id == model and isinstance(n_ctx, int) and n_ctx > 0:
                return n_ctx
    except openai.APIError:
        pass
    return None


def served_prompt_tokens(
    client: openai.OpenAI, model: str, key: str, messages: list[dict[str, str]]
) -> int | None:
    """The prompt's tokens as the server's own tokenizer counts them: vLLM's /tokenize
    takes the messages (its chat template included), llama.cpp's takes text (the template's
    tokens estimated per message); None where the server counts none."""
    root, headers = _native(client, key)
    text = "\n".join(m["content"] for m in messages)
    try:
        chat = {"model": model, "messages": messages}
        said = httpx.post(f"{root}/tokenize", json=chat, headers=headers, timeout=_ASK_S).json()
        if isinstance(said.get("count"), int):
            return int(said["count"])
        plain = {"content": text}
        said = httpx.post(f"{root}/tokenize", json=plain, headers=headers, timeout=_ASK_S).json()
        tokens = said.get("tokens")
        if isinstance(tokens, list) and tokens:
            return len(tokens) + _TEMPLATE_TOKENS * len(messages)
    except (httpx.HTTPError, ValueError, AttributeError):
        pass
    return None


def error_detail(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message", error) if isinstance(error, dict) else error
        body = message if isinstance(message, str) else json.dumps(message)
    text = str(body or e.message)
    return text if len(text) <= _DETAIL_CHARS else text[:_DETAIL_CHARS] + " [...]"


def json_schema_refusal(e: openai.APIError, body: dict[str, Any]) -> str | None:
    """What the server said, if it refused response_format json_schema: llama-cpp-python's
    server answers it with a 500 that names json_object, the type it takes instead."""
    if not isinstance(e, openai.APIStatusError) or e.status_code not in (400, 422, 500):
        return None
    sent = (body.get("response_format") or {}).get("type")
    detail = error_detail(e)
    return detail if sent == "json_schema" and "json_object" in detail else None


#: an overflow's message: OpenAI, vLLM and llama-cpp-python's words; llama-server's type
_CONTEXT_LENGTH = re.compile(r"maximum context length is (\d+)")
_PROMPT_LENGTH = re.compile(r"\((\d+) in the messages")


def overflow_of(e: openai.APIError) -> tuple[int | None, int | None] | None:
    """(context, prompt tokens), either None where not said, if `e` is a context overflow."""
    if not isinstance(e, openai.APIStatusError) or e.status_code != 400:
        return None
    body = e.body if isinstance(e.body, dict) else {}
    error = body.get("error", body)
    error = error if isinstance(error, dict) else {}
    detail = error_detail(e)
    if error.get("type") == "exceed_context_size_error":
        n_ctx, n_prompt = error.get("n_ctx"), error.get("n_prompt_tokens")
        return (
            n_ctx if isinstance(n_ctx, int) else None,
            n_prompt if isinstance(n_prompt, int) else None,
        )
    context = _CONTEXT_LENGTH.search(detail)
    if context is None:
        return None
    prompt = _PROMPT_LENGTH.search(detail)
    return int(context.group(1)), int(prompt.group(1)) if prompt else None


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """A prompt's tokens, estimated high, for sizing the answer's limit."""
    chars = sum(len(m["content"]) for m in messages)
    return chars // _SIZING_CHARS_PER_TOKEN + _TEMPLATE_TOKENS * len(messages)


def assemble(chunks: list[Any]) -> dict[str, Any]:
    """A streamed answer as the one response a server would have sent instead."""
    texts: dict[str, list[str]] = defaultdict(list)
    finish_reason, usage = None, None
    for chunk in chunks:
        usage = chunk.usage.model_dump(mode="json") if chunk.usage else usage
        for choice in chunk.choices[:1]:
            finish_reason = choice.finish_reason or finish_reason
            delta = choice.delta.model_dump(mode="json")
            for name in ("content", "reasoning_content", "reasoning"):
                if isinstance(delta.get(name), str):
                    texts[name].append(delta[name])
    message = {"role": "assistant", **{name: "".join(parts) for name, parts in texts.items()}}
    return {
        "id": chunks[0].id if chunks else None,
        "object": "chat.completion",
        "created": chunks[0].created if chunks else None,
        "model": chunks[0].model if chunks else None,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage,
        "streamed_chunks": len(chunks),
    }


def error_body(e: openai.APIError) -> Any:
    if isinstance(e, openai.APIStatusError):
        return {"status": e.status_code, "body": e.body}
    return None


def retry_after(e: openai.APIStatusError) -> float | None:
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
