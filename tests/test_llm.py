"""The LLM layer against a fake OpenAI-compatible server on loopback, through the real
`openai` client: the repair loop, back-off, errors, structured-output modes, logging."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from archlab.config import LLMProfile
from archlab.llm.answers import extract_json, split_think
from archlab.llm.client import LLM, LLMError, NoAnswer, Question
from archlab.memory.store import Memory
from archlab.prompts import Prompts
from archlab.roles.critic import Critique
from fake_llm import (
    FakeLLM,
    Reply,
    as_json,
    fenced,
    prose,
    rate_limited,
    server_error,
    slow,
    think,
    trailing_commas,
    truncated,
)

GOOD = {
    "analysis": "0.61 against the parent's 0.58: within one seed's noise",
    "implements_plan": True,
    "verdict": "reject",
    "reason": "no clear gain over the parent",
    "insight": "a second attention head did not help at d=64",
}


def make_llm(fake: FakeLLM, rows: list[dict[str, Any]] | None = None, **profile: Any) -> LLM:
    settings = {"base_url": fake.base_url, "model": "fake-model", "timeout_s": 1.0}
    log = rows.append if rows is not None else None
    return LLM("test", LLMProfile(**{**settings, **profile}), Prompts(), log)


def critic_question(**extra: Any) -> Question[Critique]:
    messages = [
        {"role": "system", "content": "You are the archlab critic."},
        {"role": "user", "content": "Judge candidate abc."},
    ]
    return Question(role="critic", purpose="critique", messages=messages, answer=Critique, **extra)


# misbehaviour -> (answers the fake plays, answer attempts, HTTP requests)
RECOVERIES = {
    "plain JSON": ([Reply(as_json(GOOD))], 1, 1),
    "<think> block": ([Reply(think(as_json(GOOD)))], 1, 1),
    "reasoning_content": ([Reply(as_json(GOOD), reasoning_content="weighing it")], 1, 1),
    "fenced JSON": ([Reply(fenced(GOOD))], 1, 1),
    "JSON in prose": ([Reply(prose(GOOD))], 1, 1),
    "trailing commas": ([Reply(trailing_commas(GOOD))], 1, 1),
    "reasoning + fence + commas": ([Reply(think(f"```json\n{trailing_commas(GOOD)}\n```"))], 1, 1),
    "schema violation": (
        [Reply(as_json({**GOOD, "verdict": "maybe"})), Reply(as_json(GOOD))],
        2,
        2,
    ),
    "missing field": ([Reply(as_json({"verdict": "accept"})), Reply(as_json(GOOD))], 2, 2),
    "no JSON at all": ([Reply("I would rather not say."), Reply(as_json(GOOD))], 2, 2),
    "truncated answer": ([truncated(GOOD), Reply(as_json(GOOD))], 2, 2),
    "429 + Retry-After": ([rate_limited(retry_after=0.3), Reply(as_json(GOOD))], 1, 2),
    "500": ([server_error(), Reply(as_json(GOOD))], 1, 2),
    "slower than the timeout": ([slow(Reply(as_json(GOOD)), 1.5), Reply(as_json(GOOD))], 1, 2),
    "everything at once": (
        [server_error(), Reply(prose({"verdict": "accept"})), truncated(GOOD), Reply(fenced(GOOD))],
        3,
        4,
    ),
}


@pytest.mark.parametrize("case", RECOVERIES)
def test_the_repair_loop_recovers(fake: FakeLLM, case: str) -> None:
    replies, attempts, requests = RECOVERIES[case]
    fake.queue("critic", *replies)
    rows: list[dict[str, Any]] = []
    answer = make_llm(fake, rows).ask(critic_question(candidate_id="abc", step=4))
    assert answer == Critique.model_validate(GOOD)
    assert len(fake.requests) == requests
    assert len(rows) == requests, "every HTTP request is logged"
    assert max(r["attempt"] for r in rows) == attempts
    final = rows[-1]
    assert final["status"] == "ok" and final["answer"] == GOOD
    assert (final["role"], final["candidate_id"], final["step"]) == ("critic", "abc", 4)
    assert all(r["status"] != "ok" for r in rows[:-1])
    assert "<think>" not in final["content"]


def test_a_reasked_question_carries_the_problem(fake: FakeLLM) -> None:
    fake.queue("critic", Reply(as_json({**GOOD, "verdict": "maybe"})), Reply(as_json(GOOD)))
    make_llm(fake).ask(critic_question())
    first, second = fake.bodies("critic")
    assert len(second["messages"]) == len(first["messages"]) + 2
    assert second["messages"][-2]["role"] == "assistant"
    assert "verdict" in second["messages"][-1]["content"]
    assert "'accept', 'reject' or 'repair'" in second["messages"][-1]["content"]


def test_reasoning_is_kept_apart_and_logged(fake: FakeLLM) -> None:
    fake.queue("critic", Reply(think(as_json(GOOD)), reasoning_content="field reasoning"))
    rows: list[dict[str, Any]] = []
    make_llm(fake, rows).ask(critic_question())
    assert "field reasoning" in rows[0]["reasoning"] and "braces" in rows[0]["reasoning"]
    assert rows[0]["content"].startswith("{")


def test_retry_after_is_honoured(fake: FakeLLM) -> None:
    fake.queue("critic", rate_limited(retry_after=1), Reply(as_json(GOOD)))
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    make_llm(fake, rows).ask(critic_question())
    assert time.monotonic() - started >= 1.0
    assert [(r["retry"], r["status"]) for r in rows] == [(0, "error"), (1, "ok")]
    assert "429" in rows[0]["error"]


def test_no_usable_answer_gives_up_after_the_attempts(fake: FakeLLM) -> None:
    fake.queue("critic", *[Reply("no idea")] * 3)
    rows: list[dict[str, Any]] = []
    with pytest.raises(NoAnswer, match="3 attempts"):
        make_llm(fake, rows, max_attempts=3).ask(critic_question())
    assert [r["status"] for r in rows] == ["invalid"] * 3


def test_a_soft_check_is_fed_back_and_the_last_valid_answer_kept(fake: FakeLLM) -> None:
    fake.queue("critic", Reply(as_json(GOOD)), Reply(as_json({**GOOD, "reason": "second"})))
    rows: list[dict[str, Any]] = []
    answer = make_llm(fake, rows, max_attempts=2).ask(
        critic_question(check=lambda a: "already in memory")
    )
    assert answer.reason == "second"
    assert "already in memory" in fake.bodies("critic")[1]["messages"][-1]["content"]
    final = {r["call_id"]: r for r in rows}  # the kept answer's row is saved again, as ok
    assert [r["status"] for r in final.values()] == ["invalid", "ok"]
    assert "kept" in rows[-1]["error"] and rows[-1]["answer"]["reason"] == "second"


def test_a_passing_check_ends_the_loop(fake: FakeLLM) -> None:
    fake.queue("critic", Reply(as_json(GOOD)), Reply(as_json({**GOOD, "reason": "fresh"})))
    answer = make_llm(fake).ask(
        critic_question(check=lambda a: None if a.reason == "fresh" else "not novel")
    )
    assert answer.reason == "fresh"


def test_a_bad_key_is_one_clear_error_and_never_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = "sk-test-4f8a1c"
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-wrong-0000")
    with FakeLLM(api_key=key) as fake:
        rows: list[dict[str, Any]] = []
        llm = make_llm(fake, rows, api_key_env="FAKE_LLM_KEY")
        with pytest.raises(LLMError) as err:
            llm.ask(critic_question())
    assert "refused the API key (401)" in str(err.value) and "$FAKE_LLM_KEY" in str(err.value)
    assert len(rows) == 1, "a refused key is not retried"
    assert "sk-wrong-0000" not in str(err.value) and "sk-wrong-0000" not in str(rows)


def test_a_missing_key_is_named(fake: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAKE_LLM_KEY", raising=False)
    with (
        FakeLLM(api_key="sk-x") as fake,
        pytest.raises(LLMError, match=r"\$FAKE_LLM_KEY is not set"),
    ):
        make_llm(fake, api_key_env="FAKE_LLM_KEY").ask(critic_question())


def test_the_key_goes_to_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-right")
    with FakeLLM(api_key="sk-right") as fake:
        fake.queue("critic", Reply(as_json(GOOD)))
        make_llm(fake, api_key_env="FAKE_LLM_KEY").ask(critic_question())


def test_an_unreachable_endpoint_is_one_clear_error() -> None:
    with FakeLLM() as fake:
        url = fake.base_url  # a port nothing listens on once the fake is gone
    llm = LLM("gone", LLMProfile(base_url=url, model="m", max_retries=1), Prompts())
    with pytest.raises(LLMError, match=r"cannot reach LLM endpoint .*profile 'gone'.*2 tries"):
        llm.ask(critic_question())


def test_an_unknown_model_says_so_and_what_is_served(fake: FakeLLM) -> None:
    fake.queue("critic", Reply(status=404, error="model 'qwen3:8x' not found"))
    with pytest.raises(LLMError, match=r"404 for model 'qwen3:8x'.*it serves: fake-model"):
        make_llm(fake, model="qwen3:8x").ask(critic_question())


@pytest.mark.parametrize(
    ("mode", "response_format", "schema_in_prompt"),
    [
        ("json_schema", "json_schema", False),
        ("json_object", "json_object", True),
        ("prompt", None, True),
    ],
)
def test_structured_output_modes(
    fake: FakeLLM, mode: str, response_format: str | None, schema_in_prompt: bool
) -> None:
    fake.queue("critic", Reply(as_json(GOOD)))
    make_llm(fake, structured_output=mode).ask(critic_question())
    (body,) = fake.bodies("critic")
    assert (body.get("response_format") or {}).get("type") == response_format
    assert ('"implements_plan"' in body["messages"][-1]["content"]) == schema_in_prompt
    if mode == "json_schema":
        schema = body["response_format"]["json_schema"]["schema"]
        assert set(schema["required"]) == set(GOOD)


def test_profile_fields_shape_the_request(fake: FakeLLM) -> None:
    fake.queue("critic", Reply(as_json(GOOD)))
    make_llm(
        fake,
        token_limit_field="max_completion_tokens",
        max_output_tokens=777,
        temperature=0.2,
        extra_body={"top_k": 20},
    ).ask(critic_question())
    (body,) = fake.bodies("critic")
    assert body["max_completion_tokens"] == 777 and "max_tokens" not in body
    assert body["temperature"] == 0.2 and body["top_k"] == 20


def test_usage_and_cost_are_logged_and_estimated_when_missing(fake: FakeLLM) -> None:
    fake.queue("critic", Reply(as_json(GOOD)), Reply(as_json(GOOD), usage=False))
    rows: list[dict[str, Any]] = []
    llm = make_llm(fake, rows, usd_per_m_input=1000.0, usd_per_m_output=2000.0)
    llm.ask(critic_question())
    llm.ask(critic_question())
    reported, estimated = rows
    assert not reported["tokens_estimated"] and estimated["tokens_estimated"]
    for row in rows:
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
        expected = (row["prompt_tokens"] * 1000 + row["completion_tokens"] * 2000) / 1e6
        assert row["cost_usd"] == pytest.approx(expected)


def test_calls_are_stored_whole_in_the_memory(fake: FakeLLM, tmp_path: Path) -> None:
    memory = Memory(tmp_path / "memory.duckdb")
    fake.queue("critic", Reply("nothing"), Reply(as_json(GOOD)))
    llm = make_llm(fake, None)
    llm.log = lambda row: memory.save_llm_call(run_id="r1", **row)
    llm.ask(critic_question(candidate_id="c1", step=2, repair=1))
    first, second = memory.llm_calls("r1")
    assert (first["status"], second["status"]) == ("invalid", "ok")
    assert first["request"]["messages"][0]["content"].startswith("You are the archlab critic")
    assert second["response"]["choices"][0]["message"]["content"] == as_json(GOOD)
    assert second["answer"] == GOOD and second["latency_s"] >= 0
    assert memory.accepted_answers("r1") == {("critic", 2, 1): GOOD}
    tokens, _ = memory.llm_usage("r1")
    assert tokens == sum(r["prompt_tokens"] + r["completion_tokens"] for r in (first, second))


def test_extract_json_and_split_think() -> None:
    assert extract_json('noise {"a": [1, 2,],} noise') == {"a": [1, 2]}
    assert extract_json('```json\n{"a": 1}\n```\nand {"b": 2}') == {"a": 1}
    assert split_think("<think>x</think>\n{}") == ("{}", ["x"])
    assert split_think("swallowed opening</think>{}") == ("{}", ["swallowed opening"])
    assert split_think("<think>cut off before the answer") == ("", ["cut off before the answer"])
