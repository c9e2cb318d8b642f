"""The discovery graph in-process: it records failures and goes on, honours its budgets,
and leaves a checkpoint per step."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from rich.console import Console

from archlab.config import load_settings
from archlab.orchestration.lanes import CHECKPOINT_FILE
from archlab.orchestration.runs import discover, open_memory
from archlab.tasks import BUILTIN_TASKS
from archlab.tasks.mqar import MQAR
from support import TINY_MQAR

pytestmark = pytest.mark.slow


class BrokenBaselineMQAR(MQAR):
    name = "broken-baseline"

    def baseline_source(self) -> str:
        return "raise ImportError('no such layer')\ndef build_model(spec): ...\n"


def _settings(tmp_path: Path, task: str, trials: int, minutes: float = 0):
    return load_settings(
        flags={
            "home": str(tmp_path / "home"),
            "run": {"task": task, "trials": trials, "minutes": minutes},
            "tasks": {task: TINY_MQAR},
        },
        environ={},
    )


def test_a_failed_candidate_is_recorded_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(BUILTIN_TASKS, "broken-baseline", BrokenBaselineMQAR)
    settings = _settings(tmp_path, "broken-baseline", trials=3)
    run_id = discover(settings, Console(quiet=True))

    memory = open_memory(settings.home_dir)
    assert memory.get_run(run_id)["status"] == "finished"
    candidates = memory.candidates(run_id)
    assert len(candidates) == 3
    baseline = next(c for c in candidates if c["origin"] == "baseline")
    assert (baseline["status"], baseline["error_class"]) == ("rejected", "import")
    assert "no such layer" in baseline["message"]
    assert memory.verdict(baseline["candidate_id"])["verdict"] == "reject"
    proposed = [c for c in candidates if c["origin"] == "proposed"]
    assert all(c["status"] == "ok" and c["score"] is not None for c in proposed)
    assert all(c["genome"] and c["plan"]["hypothesis"] for c in proposed)
    smoke = memory.trials(baseline["candidate_id"])
    assert [t["stage"] for t in smoke] == ["smoke"] and smoke[0]["isolation"] in ("basic", "strict")


def test_time_budget_stops_the_run(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "mqar", trials=50, minutes=0.0001)
    run_id = discover(settings, Console(quiet=True))
    memory = open_memory(settings.home_dir)
    assert memory.get_run(run_id)["status"] == "finished"
    assert len(memory.candidates(run_id)) <= 1


def test_every_step_is_checkpointed(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "mqar", trials=2)
    run_id = discover(settings, Console(quiet=True))
    with sqlite3.connect(settings.home_dir / CHECKPOINT_FILE) as con:
        (n,) = con.execute(
            "SELECT count(*) FROM checkpoints WHERE thread_id = ?", (run_id,)
        ).fetchone()
    # two candidates through plan, code, verify, train, critique, record, and a final plan
    assert n >= 13


def test_the_same_seed_reproduces_a_real_run_candidates_and_scores(tmp_path: Path) -> None:
    """Real trials on both cores (two lanes, one thread each): the same seed in fresh
    homes proposes the same candidates in the same order and they score the same."""

    def run(home: str, seed: int) -> list[tuple[object, ...]]:
        settings = load_settings(
            flags={
                "home": str(tmp_path / home),
                "run": {"task": "mqar", "trials": 5, "lanes": 2, "seed": seed},
                "executor": {"workers": 2},
                "tasks": {"mqar": TINY_MQAR},
            },
            environ={},
        )
        run_id = discover(settings, Console(quiet=True))
        candidates = open_memory(settings.home_dir).candidates(run_id)
        rows = sorted(candidates, key=lambda c: c["step"])
        return [(c["step"], c["origin"], c["source_hash"], c["status"], c["score"]) for c in rows]

    first = run("a", seed=3)
    assert len(first) == 5 and all(row[4] is not None for row in first)
    assert run("b", seed=3) == first
