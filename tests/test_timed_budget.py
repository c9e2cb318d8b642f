"""Fixed-time budgets (`train_seconds`): every candidate trains for the same seconds of
training, measured inside the sandbox, so a faster architecture gets more steps."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from archlab.config import load_settings
from archlab.errors import ConfigError
from archlab.orchestration.runs import discover, open_memory
from archlab.tasks import get_task
from archlab.tasks.base import Budget
from archlab.tasks.mqar import MQAR
from support import EMBED, TINY_MQAR, sandbox_trial

#: a slow architecture: the smallest model, at most 4 steps a second
SLOW_FORWARD = "import time\n" + EMBED.replace(
    "return self.head(self.embed(x))", "time.sleep(0.25)\n        return self.head(self.embed(x))"
)


def test_train_seconds_times_the_proxy_and_scale_stages() -> None:
    steps = get_task("mqar", {"proxy_steps": 64})
    timed = get_task("mqar", {"proxy_steps": 64, "train_seconds": 30})
    assert timed.budgets["proxy"] == replace(
        steps.budgets["proxy"], seconds=30.0, time_limit_s=steps.budgets["proxy"].time_limit_s + 30
    )
    assert timed.budgets["scale"].seconds == 60.0
    assert timed.budgets["smoke"] == steps.budgets["smoke"]
    assert timed.fingerprint() != steps.fingerprint()


def test_an_untimed_budget_keeps_its_fingerprint() -> None:
    budget = Budget(steps=384, batch_size=64, eval_every=48, time_limit_s=180)
    assert budget.identity() == {
        "steps": 384, "batch_size": 64, "eval_every": 48, "time_limit_s": 180
    }  # fmt: skip
    assert "seconds" in budget.timed(5).identity()


@pytest.mark.parametrize("bad", [0, -3, "ten", True])
def test_train_seconds_must_be_a_positive_number(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"tasks\.mqar\.train_seconds: must be a positive number"):
        get_task("mqar", {"train_seconds": bad})


def test_a_timed_checkpoint_may_fall_on_any_step_but_not_beyond_the_count() -> None:
    timed = Budget(steps=16, batch_size=16, eval_every=8, time_limit_s=60, seconds=2)
    assert timed.checkpoints == 2
    assert timed.is_checkpoint(5, 0) and timed.is_checkpoint(13, 1)
    assert not timed.is_checkpoint(20, 2)
    untimed = replace(timed, seconds=None)
    assert untimed.is_checkpoint(8, 0) and not untimed.is_checkpoint(5, 0)


@pytest.mark.slow
def test_a_faster_architecture_gets_more_steps_in_the_same_seconds(
    tiny_task: MQAR, tmp_path: Path
) -> None:
    budget = tiny_task.budgets["proxy"].timed(2.0)
    reports = {
        name: sandbox_trial(tiny_task, tmp_path / name, source, budget=budget, stop=None)
        for name, source in (("fast", tiny_task.baseline_source()), ("slow", SLOW_FORWARD))
    }
    steps = {}
    for name, report in reports.items():
        assert report.status == "ok", report.message
        checkpoint_steps = [step for step, _ in report.checkpoints]
        assert len(checkpoint_steps) == budget.checkpoints == 2
        assert checkpoint_steps == sorted(set(checkpoint_steps))
        steps[name] = report.loss_curve[-1]["step"]
        assert steps[name] == checkpoint_steps[-1]
        # two seconds of training, evaluation and start-up excluded, well inside the limit
        assert 2.0 <= report.wall_time_s < budget.time_limit_s
    assert steps["slow"] <= 2.0 / 0.25 + 1
    assert steps["fast"] > 2 * steps["slow"]  # the tiny baseline: ~100 a second on one core


@pytest.mark.slow
def test_a_timed_run_records_the_steps_each_candidate_reached(tmp_path: Path) -> None:
    settings = load_settings(
        flags={
            "home": str(tmp_path / "home"),
            "run": {"task": "mqar", "trials": 2, "lanes": 1},
            "tasks": {"mqar": {**TINY_MQAR, "train_seconds": 1}},
        },
        environ={},
    )
    run_id = discover(settings, Console(quiet=True))
    memory = open_memory(settings.home_dir)
    trained = [c for c in memory.candidates(run_id) if c["metrics"]]
    assert trained, "no candidate trained"
    for candidate in trained:
        proxy = next(t for t in memory.trials(candidate["candidate_id"]) if t["stage"] == "proxy")
        assert proxy["budget"]["seconds"] == 1.0
        assert candidate["metrics"]["steps"] >= 1
