"""A fake OpenAI-compatible model server for tests: a real HTTP server on 127.0.0.1 that
speaks /v1/chat/completions and /v1/models, answers each role from a script, and
misbehaves on cue (reasoning tags, fenced or prose-wrapped JSON, broken JSON, truncated
answers, 429 with Retry-After, 500s, answers slower than the client's timeout).

Like the real local servers, it streams server-sent events when asked (`streams=False`:
one response anyway), reports its context length at llama.cpp's /props (`context_tokens`),
counts a prompt's tokens at /tokenize as llama.cpp or vLLM does (`tokenizer`), answers a
request that does not fit that context with llama-cpp-python's 400, and refuses
response_format json_schema with that server's 500 (`refuses_json_schema`).

    with FakeLLM() as fake:
        fake.queue("planner", Reply(fenced(plan)), rate_limited(retry_after=1), ...)
        ... base_url=fake.base_url ...
        fake.requests  # what the client sent, role by role
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    content: str = ""
    finish_reason: str = "stop"
    reasoning_content: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: the body of an error answer
    error: str | None = None
    #: seconds to wait before answering
    delay: float = 0.0
    #: seconds between the streamed pieces of the answer (a slow model that is writing)
    chunk_delay: float = 0.0
    #: False: the answer carries no usage, as some local servers do
    usage: bool = True


#: a scripted answer, or a function of the request body that makes one
Responder = Reply | Callable[[dict[str, Any]], Reply]

_ROLE = re.compile(r"archlab (planner|coder|critic)")


def role_of(body: dict[str, Any]) -> str:
    """The role a request comes from, read from its system prompt ("check" without one)."""
    for message in body["messages"]:
        if message["role"] == "system":
            found = _ROLE.search(message["content"])
            if found:
                return found.group(1)
    return "check"


def prompt_text(body: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in body["messages"])


# --- misbehaviour on cue ------------------------------------------------------------------


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2)


def think(text: str) -> str:
    return f"<think>\nThe user wants JSON. Let me think about {{braces}} first.\n</think>\n{text}"


def fenced(value: Any, language: str = "json") -> str:
    return f"```{language}\n{as_json(value)}\n```"


def prose(value: Any) -> str:
    return f"Sure! Here is my answer:\n\n{as_json(value)}\n\nLet me know if you need more."


def trailing_commas(value: dict[str, Any]) -> str:
    return as_json(value).replace('"\n', '",\n').replace("\n}", ",\n}")


def truncated(value: Any) -> Reply:
    text = as_json(value)
    return Reply(text[: len(text) // 2], finish_reason="length")


def rate_limited(retry_after: float = 1) -> Reply:
    return Reply(status=429, headers={"Retry-After": f"{retry_after:g}"}, error="rate limited")


def server_error() -> Reply:
    return Reply(status=500, error="the model fell over")


def slow(reply: Reply, delay: float) -> Reply:
    return Reply(**{**reply.__dict__, "delay": delay})


def code_block(source: str) -> str:
    return f"Here is the module:\n\n```python\n{source}```\n"


def edit(search: str, replace: str) -> str:
    def lines(text: str) -> str:
        return text if text.endswith("\n") else text + "\n"

    return f"<<<<<<< SEARCH\n{lines(search)}=======\n{lines(replace)}>>>>>>> REPLACE\n"


# --- the server ---------------------------------------------------------------------------


#: the words of llama-cpp-python's server for a request that does not fit its context
def overflow_message(context: int, prompt: int, completion: int) -> str:
    return (
        f"This model's maximum context length is {context} tokens. However, you requested "
        f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the "
        "completion). Please reduce the length of the messages or completion."
    )


#: llama-cpp-python's server on response_format json_schema (pydantic's words, in a 500)
JSON_SCHEMA_REFUSAL = (
    "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input "
    "should be 'text' or 'json_object' [type=literal_error, input_value='json_schema', "
    "input_type=str]"
)


def prompt_tokens(body: dict[str, Any]) -> int:
    return len(prompt_text(body)) // 4


class FakeLLM:
    def __init__(
        self,
        api_key: str | None = None,
        model: str = "fake-model",
        *,
        context_tokens: int | None = None,
        tokenizer: str | None = None,
        streams: bool = True,
        refuses_json_schema: bool = False,
    ) -> None:
        self.api_key = api_key
        self.model = model
        self.context_tokens = context_tokens
        #: "llama.cpp" (text in, tokens out) or "vllm" (messages in, a count out)
        self.tokenizer = tokenizer
        self.streams = streams
        self.refuses_json_schema = refuses_json_schema
        self.script: dict[str, list[Responder]] = defaultdict(list)
        #: answers for a role once its script is used up
        self.defaults: dict[str, Responder] = {}
        #: (role, request body) of every chat request, in order
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def queue(self, role: str, *replies: Responder) -> None:
        self.script[role].extend(replies)

    def bodies(self, role: str) -> list[dict[str, Any]]:
        return [body for r, body in self.requests if r == role]

    def __enter__(self) -> FakeLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, body: dict[str, Any]) -> Reply:
        role = role_of(body)
        with self._lock:
            self.requests.append((role, body))
            script = self.script[role]
            responder = script.pop(0) if script else self.defaults.get(role)
        if responder is None:
            return Reply(status=500, error=f"the fake has no answer left for the {role}")
        return responder(body) if callable(responder) else responder

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/props" and fake.context_tokens:
                    settings = {"n_ctx": fake.context_tokens}
                    self._send(200, {"default_generation_settings": settings}, {})
                elif self.path.rstrip("/") == "/v1/models":
                    model = {"id": fake.model, "object": "model", "owned_by": "fake"}
                    self._send(200, {"object": "list", "data": [model]}, {})
                else:
                    self._send(404, {"error": {"message": "no such path"}}, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                given = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if fake.api_key is not None and given != fake.api_key:
                    # real providers echo (part of) the key they got; archlab must scrub it
                    message = f"Incorrect API key provided: {given}"
                    self._send(401, {"error": {"message": message}}, {})
                    return
                if self.path == "/tokenize" and fake.tokenizer:
                    self._send(200, self._tokenized(body), {})
                    return
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "no such path"}}, {})
                    return
                refusal = self._refusal(body)
                if refusal is not None:
                    with fake._lock:
                        fake.requests.append((role_of(body), body))
                    self._send(*refusal, {})
                    return
                reply = fake._answer(body)
                time.sleep(reply.delay)
                if reply.status != 200:
                    self._send(reply.status, {"error": {"message": reply.error}}, reply.headers)
                    return
                # the client may have given up waiting (a slow answer past its timeout)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    if body.get("stream") and fake.streams:
                        self._stream(body, reply)
                    else:
                        self._send(200, self._completion(body, reply), reply.headers)

            def _refusal(self, body: dict[str, Any]) -> tuple[int, Any] | None:
                """What llama-cpp-python's server refuses before any model runs."""
                kind = (body.get("response_format") or {}).get("type")
                if fake.refuses_json_schema and kind == "json_schema":
                    return 500, {"error": {"message": JSON_SCHEMA_REFUSAL}}
                limit = body.get("max_tokens") or body.get("max_completion_tokens") or 0
                prompt = prompt_tokens(body)
                if fake.context_tokens and prompt + limit > fake.context_tokens:
                    message = overflow_message(fake.context_tokens, prompt, limit)
                    return 400, {"error": {"message": message, "type": "invalid_request_error"}}
                return None

            def _tokenized(self, body: dict[str, Any]) -> dict[str, Any]:
                if fake.tokenizer == "vllm" and "messages" in body:
                    count = prompt_tokens(body)
                    return {
                        "count": count,
                        "max_model_len": fake.context_tokens,
                        "tokens": list(range(count)),
                    }
                # llama.cpp: a text's tokens; a request without one has none
                return {"tokens": list(range(len(body.get("content", "")) // 4))}

            def _usage(self, body: dict[str, Any], reply: Reply) -> dict[str, int]:
                prompt, completion = prompt_tokens(body), len(reply.content) // 4
                return {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                }

            def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
                message: dict[str, Any] = {"role": "assistant", "content": reply.content}
                if reply.reasoning_content is not None:
                    message["reasoning_content"] = reply.reasoning_content
                payload: dict[str, Any] = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "message": message, "finish_reason": reply.finish_reason}
                    ],
                }
                if reply.usage:
                    payload["usage"] = self._usage(body, reply)
                return payload

            def _stream(self, body: dict[str, Any], reply: Reply) -> None:
                """Server-sent events: the reasoning, then the answer, a few words a chunk."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()

                def event(choices: list[dict[str, Any]], **extra: Any) -> None:
                    chunk = {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "created": int(time.time()),
                        "model": body["model"],
                        "choices": choices,
                        **extra,
                    }
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()

                pieces = [("reasoning_content", p) for p in _pieces(reply.reasoning_content)]
                pieces += [("content", p) for p in _pieces(reply.content)]
                for name, piece in pieces:
                    event([{"index": 0, "delta": {name: piece}, "finish_reason": None}])
                    time.sleep(reply.chunk_delay)
                event([{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}])
                if reply.usage and (body.get("stream_options") or {}).get("include_usage"):
                    event([], usage=self._usage(body, reply))
                self.wfile.write(b"data: [DONE]\n\n")

        return Handler


def _pieces(text: str | None, size: int = 16) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text or ""), size)]
