"""Runs whose model fails a step go on (compose mode: the offline brain proposes the step;
design mode: it is recorded without a plan) and stop after run.max_failed_steps in a row;
a planner whose prompt overflows a small context is shown fewer memory entries; Ctrl-C
during an LLM call stops the run at once, marked interrupted."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from archlab.config import load_settings
from archlab.llm.client import MIN_OUTPUT_TOKENS
from archlab.llm.servers import estimate_tokens
from archlab.orchestration.runs import discover, open_memory
from fake_llm import FakeLLM, Reply, as_json, prompt_tokens
from support import TINY_MQAR, archlab
from support import as_json as json_of

pytestmark = pytest.mark.slow

UNUSABLE = Reply("I would rather not say.")
GENOME = {"d_model": 32, "blocks": [{"mixer": "gated_recurrence", "channel": "none"}]}
GOOD_PLAN = {
    "motivation": "no recurrent candidate yet",
    "hypothesis": "a gated recurrence can carry the keys along",
    "operator": "new",
    "parents": [],
    "expected_effect": "lower than the baseline, cheaper",
    "genome": GENOME,
}


def settings(tmp_path: Path, fake: FakeLLM, roles: dict[str, str], **run: Any) -> Any:
    return load_settings(
        flags={
            "home": str(tmp_path / "home"),
            "run": {"lanes": 1, **run},
            "roles": roles,
            "llm": {"default": {"base_url": fake.base_url, "model": "fake-model"}},
            "tasks": {"mqar": TINY_MQAR},
            "search": {"random_samples": 0},
            "ladder": {"early_stop": False, "confirm_seeds": 1, "scale_top": 0},
        },
        environ={},
    )


def test_compose_mode_falls_back_to_the_offline_brain_then_stops_after_failures_in_a_row(
    fake: FakeLLM, tmp_path: Path
) -> None:
    # step 1 unusable, step 2 usable (the count starts again), steps 3 and 4 unusable
    fake.queue("planner", *[UNUSABLE] * 3, Reply(as_json(GOOD_PLAN)))
    fake.defaults["planner"] = UNUSABLE
    s = settings(tmp_path, fake, {"planner": "llm"}, trials=8, max_failed_steps=2)
    with pytest.raises(Exception, match="2 steps in a row without a usable answer") as raised:
        discover(s, Console(quiet=True))
    assert "run.max_failed_steps" in str(raised.value)

    memory = open_memory(s.home_dir)
    (run,) = memory.runs()
    assert run["status"] == "failed" and "2 steps in a row" in run["message"]
    candidates = sorted(memory.candidates(run["run_id"]), key=lambda c: c["created_at"])
    assert [c["origin"] for c in candidates] == ["baseline", "fallback", "proposed", "fallback"]
    fallback = candidates[1]
    assert fallback["brain"] == "heuristic" and fallback["status"] == "ok"
    assert "gave no usable answer in 3 attempts" in fallback["plan"]["motivation"]
    assert "the offline brain proposed this step" in fallback["plan"]["motivation"]
    assert candidates[2]["brain"] == "llm:default"
    # each failed step's answers are in the memory, step by step
    calls = memory.llm_calls(run["run_id"])
    failed_steps = {c["step"] for c in calls if c["status"] == "invalid"}
    assert len(failed_steps) == 3


def test_design_mode_records_a_step_without_a_plan_and_goes_on(
    fake: FakeLLM, tmp_path: Path
) -> None:
    fake.defaults["planner"] = UNUSABLE
    s = settings(
        tmp_path,
        fake,
        {"critic": "heuristic"},
        brain="llm",
        mode="design",
        trials=3,
        max_failed_steps=5,
    )
    run_id = discover(s, Console(quiet=True))

    memory = open_memory(s.home_dir)
    assert memory.get_run(run_id)["status"] == "finished"
    _, *skipped = sorted(memory.candidates(run_id), key=lambda c: c["created_at"])
    assert len(skipped) == 2
    for c in skipped:
        assert (c["status"], c["error_class"], c["plan"]["operator"]) == (
            "rejected",
            "answer",
            "none",
        )
        assert "gave no usable answer" in c["message"]
        assert memory.verdict(c["candidate_id"])["verdict"] == "reject"
    assert fake.bodies("coder") == []  # no plan, no code asked for


def test_design_mode_stops_after_steps_in_a_row_the_coder_could_not_write(
    fake: FakeLLM, tmp_path: Path
) -> None:
    ideas = itertools.count()
    fake.defaults["planner"] = lambda body: Reply(
        as_json({**GOOD_PLAN, "genome": None, "summary": f"idea {next(ideas)}"})
    )
    fake.defaults["coder"] = UNUSABLE
    s = settings(
        tmp_path, fake, {"critic": "heuristic"}, brain="llm", mode="design", trials=6,
        max_failed_steps=2,
    )  # fmt: skip
    with pytest.raises(Exception, match="2 steps in a row without a usable answer"):
        discover(s, Console(quiet=True))
    memory = open_memory(s.home_dir)
    (run,) = memory.runs()
    outcomes = [
        (c["origin"], c["status"], c["error_class"]) for c in memory.candidates(run["run_id"])
    ]
    assert sorted(outcomes) == [
        ("baseline", "ok", None),
        ("proposed", "rejected", "answer"),
        ("proposed", "rejected", "answer"),
    ], outcomes


def test_a_planner_prompt_too_long_for_the_context_shows_fewer_memory_entries(
    tmp_path: Path,
) -> None:
    with FakeLLM(context_tokens=10**6) as fake:
        home = tmp_path / "home"
        discover(settings(tmp_path, fake, {}, trials=4), Console(quiet=True))  # a memory
        fake.defaults["planner"] = Reply(as_json(GOOD_PLAN))
        discover(settings(tmp_path, fake, {"planner": "llm"}, trials=1), Console(quiet=True))
        (full,) = fake.bodies("planner")
        # a context one token short of the full prompt and the smallest answer worth asking
        fake.context_tokens = estimate_tokens(full["messages"]) + MIN_OUTPUT_TOKENS - 1
        fake.defaults["planner"] = Reply(
            as_json({**GOOD_PLAN, "genome": {**GENOME, "d_model": 48}})
        )
        discover(settings(tmp_path, fake, {"planner": "llm"}, trials=1), Console(quiet=True))
    _, shorter = fake.bodies("planner")
    assert len(shorter["messages"][-1]["content"]) < len(full["messages"][-1]["content"])
    assert prompt_tokens(shorter) + shorter["max_tokens"] <= fake.context_tokens
    run = open_memory(home).runs()[0]  # the newest
    (proposed,) = open_memory(home).candidates(run["run_id"])
    assert proposed["brain"] == "llm:default" and proposed["origin"] == "proposed"


def test_ctrl_c_during_an_llm_call_stops_the_run_at_once(lab_dir: Path) -> None:
    with FakeLLM() as fake:
        fake.defaults["planner"] = Reply(as_json(GOOD_PLAN), delay=120)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHLAB_")}
        env.update(ARCHLAB_HOME=str(lab_dir / "home"), ARCHLAB_ROLES__PLANNER="llm")
        args = ["run", "--trials", "5", "--lanes", "2", "--llm-base-url", fake.base_url]
        proc = subprocess.Popen(
            [sys.executable, "-m", "archlab", *args, "--llm-model", "m"],
            cwd=lab_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 120
        while not fake.bodies("planner"):
            assert time.monotonic() < deadline and proc.poll() is None, "the planner never asked"
            time.sleep(0.1)
        stopped = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert time.monotonic() - stopped < 15, "the LLM call held the run"
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    (run,) = json_of(archlab(lab_dir, "runs", "--json"))
    assert run["status"] == "interrupted"
    memory = open_memory(lab_dir / "home")
    assert not [c for c in memory.llm_calls(run["run_id"]) if c["status"] == "error"]
