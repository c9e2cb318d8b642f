"""Short LLM-driven discoveries against the fake server: design mode with repairs, a model
per role in compose mode, replay, budgets, and an unreachable endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from rich.console import Console

from archlab.config import load_settings
from archlab.orchestration.runs import discover, open_memory
from archlab.tasks.mqar import MQAR
from fake_llm import (
    FakeLLM,
    Reply,
    as_json,
    code_block,
    edit,
    fenced,
    prose,
    rate_limited,
    think,
)
from support import TINY_CONFIG, TINY_MQAR, design_plan

pytestmark = pytest.mark.slow

BASELINE = MQAR().baseline_source()
HEAD = "        return self.head(self.norm(x))\n"
CRITIQUE = {
    "analysis": "beats the baseline by more than the usual seed noise",
    "implements_plan": True,
    "verdict": "accept",
    "reason": "higher accuracy at the same cost",
    "insight": "two heads help recall at d=64",
}


def settings(tmp_path: Path, fake: FakeLLM, **run: Any) -> Any:
    return load_settings(
        flags={
            "home": str(tmp_path / "home"),
            # one lane: the fake model's answers are queued in the order it is asked
            "run": {"trials": 3, "lanes": 1, **run},
            "llm": {"default": {"base_url": fake.base_url, "model": "fake-model"}},
            "tasks": {"mqar": TINY_MQAR},
            # these runs are about the models: no random samples of the genome space, and
            # every proposal trained in full
            "search": {"random_samples": 0},
            "ladder": {"early_stop": False},
        },
        environ={},
    )


def test_design_mode_repairs_from_feedback_and_replays(fake: FakeLLM, tmp_path: Path) -> None:
    fake.queue("planner", design_plan)
    fake.queue(
        "coder",
        # an edit whose SEARCH text is not in the parent, then one that breaks the output shape
        Reply(edit("        return self.lm_head(x)\n", HEAD)),
        rate_limited(retry_after=0.2),
        Reply(edit(HEAD, "        return self.head(self.norm(x))[:, -1]\n")),
        # the repair: the whole module, fixed, with two heads
        Reply(think(code_block(BASELINE.replace("n_heads: int = 1", "n_heads: int = 2")))),
    )
    fake.defaults["critic"] = Reply(prose(CRITIQUE))
    s = settings(tmp_path, fake, brain="llm", mode="design")
    run_id = discover(s, Console(quiet=True))

    memory = open_memory(s.home_dir)
    assert memory.get_run(run_id)["status"] == "finished"
    assert memory.get_run(run_id)["message"] == "trial budget spent (3 candidates)"
    baseline, broken, fixed = sorted(memory.candidates(run_id), key=lambda c: c["created_at"])
    assert baseline["origin"] == "baseline" and baseline["status"] == "ok"
    assert (broken["status"], broken["error_class"]) == ("rejected", "shape")
    assert memory.verdict(broken["candidate_id"])["verdict"] == "repair"
    assert fixed["status"] == "ok" and "n_heads: int = 2" in fixed["source"]
    assert fixed["plan"]["repair_of"] == broken["candidate_id"]
    assert fixed["parents"] == broken["parents"] == [baseline["candidate_id"]]
    assert {broken["brain"], fixed["brain"]} == {"llm:default"}
    verdict = memory.verdict(fixed["candidate_id"])
    assert verdict["brain"] == "llm:default" and verdict["insight"] == CRITIQUE["insight"]

    # The coder saw why its edit did not apply, and the repair saw the shape error.
    write1, write2, _, repair = fake.bodies("coder")
    assert BASELINE in write1["messages"][-1]["content"]
    assert "not in the code" in write2["messages"][-1]["content"]
    assert "shape" in repair["messages"][-1]["content"]
    assert "[:, -1]" in repair["messages"][-1]["content"]

    calls = memory.llm_calls(run_id)
    coder = [
        (c["step"], c["repair"], c["attempt"], c["retry"], c["status"])
        for c in calls
        if c["role"] == "coder"
    ]
    assert coder == [
        (1, 0, 1, 0, "invalid"),
        (1, 0, 2, 0, "error"),
        (1, 0, 2, 1, "ok"),
        (1, 1, 1, 0, "ok"),
    ]
    assert {c["role"] for c in calls} == {"planner", "coder", "critic"}
    assert all(c["request"]["model"] == "fake-model" for c in calls)

    # Replay: the same decisions from the log, no model called.
    sent = len(fake.requests)
    replay_id = discover(
        settings(tmp_path, fake, brain=f"replay:{run_id}", mode="design"), Console(quiet=True)
    )
    assert len(fake.requests) == sent
    replayed = sorted(memory.candidates(replay_id), key=lambda c: c["created_at"])
    assert [c["source"] for c in replayed] == [broken["source"], fixed["source"]]
    assert memory.get_run(replay_id)["message"].startswith("replay complete")
    assert {c["brain"] for c in memory.llm_calls(replay_id)} == {f"replay:{run_id}"}


def compose_plan(d_model: int) -> Reply:
    plan = {
        "motivation": "recurrences are cheap",
        "hypothesis": f"a gated recurrence at width {d_model} recalls well enough",
        "operator": "new",
        "parents": [],
        "expected_effect": "a lower cost at a similar score",
        "genome": {"d_model": d_model, "blocks": [{"mixer": "gated_recurrence", "channel": "mlp"}]},
    }
    return Reply(fenced(plan))


def test_a_model_per_role_in_compose_mode(fake: FakeLLM, tmp_path: Path) -> None:
    # the second proposal repeats the first: the novelty check sends it back
    fake.queue("planner", compose_plan(32), compose_plan(32), compose_plan(48))
    s = load_settings(
        flags={
            "home": str(tmp_path / "home"),
            "run": {"trials": 3, "lanes": 1},
            "roles": {"planner": "llm:planner_model"},
            "llm": {
                "planner_model": {
                    "base_url": fake.base_url,
                    "model": "planner-7b",
                    "structured_output": "json_object",
                }
            },
            "tasks": {"mqar": TINY_MQAR},
            # these runs are about the models: no random samples of the genome space, and
            # every proposal trained in full
            "search": {"random_samples": 0},
            "ladder": {"early_stop": False},
        },
        environ={},
    )
    run_id = discover(s, Console(quiet=True))

    memory = open_memory(s.home_dir)
    run = memory.get_run(run_id)
    assert run["brain"] == "planner=llm:planner_model coder=heuristic critic=heuristic"
    _, first, second = sorted(memory.candidates(run_id), key=lambda c: c["created_at"])
    assert {first["brain"], second["brain"]} == {"llm:planner_model"}
    assert [first["genome"]["d_model"], second["genome"]["d_model"]] == [32, 48]
    assert first["status"] == second["status"] == "ok"
    assert memory.verdict(second["candidate_id"])["brain"] == "heuristic"
    bodies = fake.bodies("planner")
    assert len(bodies) == 3
    assert (
        f"candidate {first['candidate_id']} already has this genome"
        in (bodies[2]["messages"][-1]["content"])
    )
    assert all(b["response_format"] == {"type": "json_object"} for b in bodies)
    assert all('"genome"' in b["messages"][1]["content"] for b in bodies)  # the schema
    assert all(b["model"] == "planner-7b" for b in bodies)


def test_a_token_budget_stops_the_run_cleanly(fake: FakeLLM, tmp_path: Path) -> None:
    fake.defaults["critic"] = Reply(as_json(CRITIQUE))
    s = settings(tmp_path, fake, brain="llm", trials=5, max_tokens=100)
    run_id = discover(s, Console(quiet=True))
    memory = open_memory(s.home_dir)
    run = memory.get_run(run_id)
    assert run["status"] == "finished" and run["message"].startswith("token budget spent")
    (baseline,) = memory.candidates(run_id)
    assert baseline["status"] == "ok" and memory.verdict(baseline["candidate_id"])
    tokens, _ = memory.llm_usage(run_id)
    assert tokens >= 100 and len(fake.requests) == 1


def test_an_unreachable_endpoint_fails_the_run_with_one_line(lab_dir: Path) -> None:
    with FakeLLM() as gone:
        url = gone.base_url
    (lab_dir / "archlab.toml").write_text(TINY_CONFIG + "\n[llm.default]\nmax_retries = 0\n")
    env = {**os.environ, "ARCHLAB_HOME": str(lab_dir / "home"), "OPENAI_API_KEY": "sk-never-shown"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "archlab",
            "run",
            "--trials",
            "2",
            "--brain",
            "llm",
            "--llm-base-url",
            url,
            "--llm-model",
            "m",
        ],
        cwd=lab_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach LLM endpoint" in errors[0]
    assert "Traceback" not in proc.stderr
    con = duckdb.connect(str(lab_dir / "home" / "memory.duckdb"), read_only=True)
    try:
        status, message = con.execute("SELECT status, message FROM runs").fetchone()
        (calls,) = con.execute("SELECT count(*) FROM llm_calls WHERE status = 'error'").fetchone()
        (trials,) = con.execute("SELECT count(*) FROM trials").fetchone()
    finally:
        con.close()
    assert status == "failed" and "cannot reach" in message
    # the baseline's smoke, proxy and two confirm seeds ran before the planner's call failed
    assert calls == 1 and trials == 4, "what ran before the failure is kept"
    # the key reached neither the memory nor any trial's files (the sandbox gets no environment)
    for path in (lab_dir / "home").rglob("*"):
        assert not path.is_file() or b"sk-never-shown" not in path.read_bytes(), path
