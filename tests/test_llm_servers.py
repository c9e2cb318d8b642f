"""The LLM client against the fake server behaving as the real local servers do (llama.cpp's
llama-server, llama-cpp-python's server): a small context reported at /props or learnt
from an overflow, streamed answers from slow models, json_schema refused with a 500,
errors worth reading whole, output limits per role, and a call stopped at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from archlab.config import LLMProfile, load_settings
from archlab.errors import Cancelled
from archlab.llm.check import check
from archlab.llm.client import LLM, MIN_OUTPUT_TOKENS, ContextOverflow, LLMError, Question
from archlab.memory.spans import spans_of
from archlab.memory.store import MEMORY_FILE, Memory
from archlab.prompts import Prompts
from archlab.roles.critic import Critique
from fake_llm import FakeLLM, Reply, as_json, prompt_tokens
from support import cli

GOOD = {
    "analysis": "0.61 against the parent's 0.58: within one seed's noise",
    "implements_plan": True,
    "verdict": "reject",
    "reason": "no clear gain over the parent",
    "insight": "a second attention head did not help at d=64",
}


def make_llm(
    fake: FakeLLM, rows: list[dict[str, Any]] | None = None, **profile: Any
) -> tuple[LLM, list[dict[str, Any]]]:
    rows = [] if rows is None else rows
    settings = {"base_url": fake.base_url, "model": "fake-model", "timeout_s": 1.0}
    return LLM("test", LLMProfile(**{**settings, **profile}), Prompts(), rows.append), rows


def critic_question(padding: int = 0) -> Question[Critique]:
    messages = [
        {"role": "system", "content": "You are the archlab critic."},
        {"role": "user", "content": "Judge candidate abc." + " memory entry" * padding},
    ]
    return Question(role="critic", purpose="critique", messages=messages, answer=Critique)


def limits(fake: FakeLLM) -> list[int]:
    return [body["max_tokens"] for _, body in fake.requests]


# --- the server's context -------------------------------------------------------------------


def test_the_output_limit_fits_the_context_the_server_reports_at_props() -> None:
    with FakeLLM(context_tokens=1100) as fake:
        fake.queue("critic", Reply(as_json(GOOD)))
        llm, rows = make_llm(fake)
        assert llm.ask(critic_question(padding=120)).verdict == "reject"
    (body,) = fake.bodies("critic")
    # the critic's own limit (1024) would overflow: what the prompt leaves, no more
    assert body["max_tokens"] < 1024
    assert prompt_tokens(body) + body["max_tokens"] <= 1100
    assert [r["status"] for r in rows] == ["ok"]


def test_the_context_tokens_setting_sizes_requests_where_the_server_tells_nothing(
    fake: FakeLLM,
) -> None:
    fake.queue("critic", Reply(as_json(GOOD)))
    llm, _ = make_llm(fake, context_tokens=800)
    llm.ask(critic_question(padding=100))
    (limit,) = limits(fake)
    assert limit < 800 - 100 * len(" memory entry") // 4


def test_an_overflow_is_learnt_from_and_asked_again_with_room() -> None:
    with FakeLLM(context_tokens=1100) as fake:
        fake.queue("critic", Reply(as_json(GOOD)))
        llm, rows = make_llm(fake)
        llm._context_asked = True  # a server that does not say its context up front
        assert llm.ask(critic_question(padding=200)).verdict == "reject"
    first, second = fake.bodies("critic")
    assert first["max_tokens"] == 1024 and second["max_tokens"] < 1024
    assert prompt_tokens(second) + second["max_tokens"] == 1100
    overflow, ok = rows
    assert overflow["status"] == "error" and ok["status"] == "ok"
    assert "context overflow" in overflow["error"] and "context of 1100 tokens" in overflow["error"]
    assert "structured_output" not in overflow["error"]


def test_a_prompt_the_context_cannot_hold_is_reported_as_an_overflow_with_its_numbers() -> None:
    with FakeLLM(context_tokens=300) as fake:
        llm, _ = make_llm(fake)
        with pytest.raises(ContextOverflow) as raised:
            llm.ask(critic_question(padding=200))
    message = str(raised.value)
    assert raised.value.context_tokens == 300 and raised.value.prompt_tokens > 300
    assert "context of 300 tokens" in message
    assert "-c N" in message and "--n_ctx N" in message  # the setting to change
    assert "structured_output" not in message
    assert fake.requests == []  # known beforehand: nothing sent


@pytest.mark.parametrize("tokenizer", ["llama.cpp", "vllm", None])
def test_a_prompt_the_estimate_overstates_is_sent_where_the_server_counts_its_tokens(
    tokenizer: str | None,
) -> None:
    """The estimate (3 characters a token, high for prose) would leave this prompt too
    little room in a 1100-token context; the server's own count says it fits."""
    with FakeLLM(context_tokens=1100, tokenizer=tokenizer) as fake:
        fake.queue("critic", Reply(as_json(GOOD)))
        llm, rows = make_llm(fake)
        question = critic_question(padding=190)
        if tokenizer is None:  # nothing counts but the estimate: refused rather than overflowed
            with pytest.raises(ContextOverflow):
                llm.ask(question)
            return
        assert llm.ask(question).verdict == "reject"
    (body,) = fake.bodies("critic")
    assert MIN_OUTPUT_TOKENS <= body["max_tokens"] < 1024
    assert prompt_tokens(body) + body["max_tokens"] <= 1100
    assert [r["status"] for r in rows] == ["ok"]


# --- streaming --------------------------------------------------------------------------------


def test_a_slow_model_that_keeps_writing_finishes_past_the_timeout(fake: FakeLLM) -> None:
    # ~20 pieces, 0.15 s apart: 3 s of writing against a 1 s timeout on silence
    fake.queue("critic", Reply(as_json(GOOD), chunk_delay=0.15))
    llm, rows = make_llm(fake)
    started = time.monotonic()
    assert llm.ask(critic_question()).insight == GOOD["insight"]
    assert time.monotonic() - started > 2 * llm.profile.timeout_s
    (body,) = fake.bodies("critic")
    assert body["stream"] is True
    (row,) = rows
    assert row["status"] == "ok" and row["response"]["streamed_chunks"] > 15
    assert row["completion_tokens"] == len(as_json(GOOD)) // 4  # the server's usage


def test_silence_past_the_timeout_is_retried(fake: FakeLLM) -> None:
    fake.queue("critic", Reply(as_json(GOOD), delay=1.5), Reply(as_json(GOOD)))
    llm, rows = make_llm(fake)
    assert llm.ask(critic_question()).verdict == "reject"
    assert [r["status"] for r in rows] == ["error", "ok"]
    assert "no answer within 1 s" in rows[0]["error"]


def test_a_server_that_does_not_stream_is_answered_without_streams() -> None:
    with FakeLLM(streams=False) as fake:
        fake.queue("critic", Reply(as_json(GOOD)), Reply(as_json(GOOD)))
        llm, _ = make_llm(fake)
        llm.ask(critic_question())
        llm.ask(critic_question())
    first, second = fake.bodies("critic")  # no answer asked twice
    assert first.get("stream") is True and second.get("stream") is None


# --- structured output on llama-cpp-python's server -------------------------------------------


def test_a_refused_json_schema_falls_back_to_json_object_with_the_schema_once() -> None:
    with FakeLLM(refuses_json_schema=True) as fake:
        fake.queue("critic", Reply(as_json(GOOD)), Reply(as_json(GOOD)))
        llm, rows = make_llm(fake)
        llm.ask(critic_question())
        llm.ask(critic_question())
    sent = [body["response_format"] for body in fake.bodies("critic")]
    assert sent[0]["type"] == "json_schema"
    schema = sent[0]["json_schema"]["schema"]
    assert sent[1:] == [{"type": "json_object", "schema": schema}] * 2
    errors = [r for r in rows if r["status"] == "error"]
    assert len(errors) == 1  # said once
    assert "Input should be 'text' or 'json_object'" in errors[0]["error"]
    assert "from now on json_object with the schema" in errors[0]["error"]


def test_a_500_body_is_shown_whole_enough_to_read(fake: FakeLLM) -> None:
    long = "Traceback (most recent call last):\n" + "  File 'server.py', line 1\n" * 40
    fake.defaults["critic"] = Reply(status=500, error=long + "ValueError: the real cause")
    llm, _ = make_llm(fake, max_retries=0)
    with pytest.raises(LLMError, match="the real cause"):
        llm.ask(critic_question())


def test_the_format_hint_names_the_other_modes_and_only_on_format_errors(fake: FakeLLM) -> None:
    fake.queue("critic", Reply(status=400, error="response_format json_object is not supported"))
    llm, _ = make_llm(fake, structured_output="json_object")
    with pytest.raises(LLMError) as raised:
        llm.ask(critic_question())
    assert "try 'json_schema' or 'prompt'" in str(raised.value)
    fake.queue("critic", Reply(status=400, error="temperature must be at most 1"))
    with pytest.raises(LLMError) as raised:
        llm.ask(critic_question())
    assert "structured_output" not in str(raised.value)


def test_llama_cpp_python_is_usable_with_the_llamacpp_preset_and_no_other_flag() -> None:
    with FakeLLM(refuses_json_schema=True, context_tokens=2048) as fake:
        fake.queue("check", Reply('{"word": "archlab", "number": 42}'))
        settings = load_settings(
            flags={"llm": {"llamacpp": {"base_url": fake.base_url, "model": "any"}}}, environ={}
        )
        report = check(LLM("llamacpp", settings.llm["llamacpp"], Prompts()))
    assert report.problem is None and report.structured == "honoured"
    assert [b["response_format"]["type"] for b in fake.bodies("check")] == [
        "json_schema",
        "json_object",
    ]
    assert all(b["max_tokens"] == 256 for b in fake.bodies("check"))  # the check's own limit


# --- output limits per role, and a stop ---------------------------------------------------------


def test_each_role_has_its_output_limit_under_the_profiles_cap(fake: FakeLLM) -> None:
    fake.defaults["critic"] = Reply(as_json(GOOD))
    llm, _ = make_llm(fake)
    llm.ask(critic_question())
    assert limits(fake) == [1024]
    capped, _ = make_llm(fake, max_output_tokens=300)
    capped.ask(critic_question())
    tuned, _ = make_llm(fake, role_output_tokens={"critic": 500})
    tuned.ask(critic_question())
    assert limits(fake) == [1024, 300, 500]


def test_a_stop_ends_a_call_at_once(fake: FakeLLM) -> None:
    fake.queue("critic", Reply(as_json(GOOD), delay=30))
    llm, _ = make_llm(fake, timeout_s=60)
    threading.Timer(0.5, llm.cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        llm.ask(critic_question())
    assert time.monotonic() - started < 3


# --- the command line and the trace -------------------------------------------------------------


def test_the_timeout_and_output_limit_flags_reach_the_request(
    fake: FakeLLM, tmp_path: Path
) -> None:
    fake.queue("check", Reply('{"word": "archlab", "number": 42}'))
    url = ["--llm-base-url", fake.base_url, "--llm-model", "m"]
    cli(tmp_path, "llm", "check", *url, "--llm-timeout", "7", "--llm-max-output-tokens", "100")
    assert limits(fake) == [100]


def test_the_trace_shows_tokens_per_second_per_call(fake: FakeLLM, tmp_path: Path) -> None:
    memory = Memory(tmp_path / MEMORY_FILE)
    memory.start_run(run_id="r1", task="mqar", task_fingerprint="f", brain="x", seed=0, config={})
    fake.queue("critic", Reply(as_json(GOOD), chunk_delay=0.05))
    llm = LLM(
        "test",
        LLMProfile(base_url=fake.base_url, model="m"),
        Prompts(),
        lambda row: memory.save_llm_call(run_id="r1", **row),
    )
    llm.ask(critic_question())
    (span,) = [s for s in spans_of(memory, "r1") if s["kind"] == "llm"]
    rate = span["attributes"]["archlab.tokens_per_s"]
    seconds = (span["end"] - span["start"]).total_seconds()
    assert rate == pytest.approx(span["attributes"]["gen_ai.usage.output_tokens"] / seconds, 0.1)
    assert f"{rate:g} tokens/s" in cli(tmp_path, "trace", "r1")
