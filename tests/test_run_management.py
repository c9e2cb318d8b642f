"""Managing runs: listings with whole ids, names, evaluations kept apart, filters, `rm`,
and runs continued with more budget or corrected LLM settings (issue 20, items 5 and 6).

Real memories and the real graph; trials answered at once by FakeExecutor, the model by
the fake HTTP server."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from archlab.cli import app
from archlab.cli.common import out
from archlab.config import Settings, load_settings
from archlab.errors import ArchlabError
from archlab.memory.removal import plan_removal
from archlab.memory.store import Memory
from archlab.orchestration.lanes import CHECKPOINT_FILE
from archlab.orchestration.runs import discover, evaluate_file, open_memory, resume
from fake_llm import FakeLLM
from support import EMBED, TINY_MQAR, FakeExecutor, Scripted, cli, hostile_plan

QUIET = Console(quiet=True)
#: every table with a run_id column, as the migrations made them
_RUN_TABLES = ("candidates", "trials", "verdicts", "llm_calls", "spans", "reviews", "notes",
               "weights", "in_flight", "run_changes")  # fmt: skip


def _settings(home: Path, random_samples: int = 0, **run: Any) -> Settings:
    return load_settings(
        flags={
            "home": str(home),
            "run": {"task": "mqar", "lanes": 1, "trials": 3, **run},
            "tasks": {"mqar": TINY_MQAR},
            "search": {"random_samples": random_samples},
            "ladder": {"confirm_seeds": 2, "scale_top": 0},
        },
        environ={},
    )


def _rows(memory: Memory, table: str, run_id: str) -> int:
    return len(memory._query(f"SELECT 1 FROM {table} WHERE run_id = ?", [run_id]))


def _checkpoints(home: Path, run_id: str) -> int:
    with sqlite3.connect(home / CHECKPOINT_FILE) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM checkpoints WHERE thread_id = ? OR thread_id LIKE ?",
            [run_id, f"{run_id}/lane%"],
        ).fetchone()
    return int(n)


# --- item 5: listings, names, evaluations, rm ------------------------------------------------


@pytest.fixture
def two_runs_and_an_eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    discover(_settings(home), QUIET, FakeExecutor(), name="first")
    discover(_settings(home, seed=1), QUIET, FakeExecutor())
    (tmp_path / "mine.py").write_text(EMBED)
    evaluate_file(_settings(home), tmp_path / "mine.py", QUIET, FakeExecutor())
    monkeypatch.setattr(out, "_width", 80)  # a narrow terminal, or a pipe
    return home


def test_runs_shows_whole_ids_at_80_columns_and_hides_evaluations(
    two_runs_and_an_eval: Path,
) -> None:
    home = two_runs_and_an_eval
    memory = open_memory(home)
    discovery = [r["run_id"] for r in memory.runs()]
    every = [r["run_id"] for r in memory.runs(evals=True)]
    assert len(discovery) == 2 and len(every) == 3
    (evaluation,) = set(every) - set(discovery)

    listing = cli(home, "runs")
    assert all(run_id in listing for run_id in discovery), listing
    assert evaluation not in listing and "first" in listing
    listing = cli(home, "runs", "--all")
    assert all(run_id in listing for run_id in every) and "(eval)" in listing


def test_runs_filters_by_task_and_status(two_runs_and_an_eval: Path) -> None:
    home = two_runs_and_an_eval
    assert len(open_memory(home).runs(task="mqar")) == 2
    assert open_memory(home).runs(task="charlm") == []
    assert len(open_memory(home).runs(status="finished")) == 2
    failed = cli(home, "runs", "--status", "failed")
    assert not any(r["run_id"] in failed for r in open_memory(home).runs(evals=True))
    assert open_memory(home).runs(status="failed") == []
    with pytest.raises(ArchlabError, match="no run status 'done': one of running, killed"):
        cli(home, "runs", "--status", "done")


def test_a_name_is_accepted_wherever_an_id_is(two_runs_and_an_eval: Path) -> None:
    home = two_runs_and_an_eval
    memory = open_memory(home)
    first = memory.get_run("first")
    assert first["name"] == "first" and first["kind"] == "discovery"
    assert f"run {first['run_id']}" in cli(home, "show", "first")
    with pytest.raises(ArchlabError, match="taken"):
        discover(_settings(home), QUIET, FakeExecutor(), name="first")
    with pytest.raises(ArchlabError, match="run name"):
        discover(_settings(home), QUIET, FakeExecutor(), name="two words")
    assert len(memory.runs(evals=True)) == 3  # the refused runs left nothing behind


def test_rm_deletes_what_is_only_the_runs_own_and_keeps_what_others_build_on(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    crashed = FakeExecutor({4: Scripted(failure="crash")})  # no run builds on it
    first = discover(_settings(home, trials=4), QUIET, crashed, name="first")
    second = discover(_settings(home, trials=4, seed=1), QUIET, FakeExecutor())
    memory = open_memory(home)
    own = {c["candidate_id"] for c in memory.candidates(first)}
    baseline = memory.baseline_id(memory.get_run(first)["task_fingerprint"])
    assert baseline in own  # the second run compares with the first run's baseline

    refused = CliRunner().invoke(app, ["--home", str(home), "rm", "first"], input="n\n")
    assert refused.exit_code == 1 and memory.get_run("first")["run_id"] == first

    output = cli(home, "rm", "first", "--yes")
    assert f"removed run {first}" in output
    with pytest.raises(ArchlabError, match="no run"):
        memory.get_run(first)
    kept = {c["candidate_id"] for c in memory._query(
        "SELECT candidate_id FROM candidates WHERE run_id = ?", [first])}  # fmt: skip
    assert baseline in kept and kept < own
    parents_of_second = {p for c in memory.candidates(second) for p in c["parents"]}
    assert parents_of_second & own <= kept  # the second run's lineage is whole
    for cid in own - kept:
        assert memory._query("SELECT 1 FROM trials WHERE candidate_id = ?", [cid]) == []
        assert memory._query("SELECT 1 FROM checks WHERE candidate_id = ?", [cid]) == []
        assert memory._query("SELECT 1 FROM verdicts WHERE candidate_id = ?", [cid]) == []
    for table in ("spans", "llm_calls", "notes", "in_flight", "run_changes"):
        assert _rows(memory, table, first) == 0, table
    assert memory._query("SELECT 1 FROM trials WHERE candidate_id = ?", [baseline])
    # the other run is untouched and still shows whole
    assert len(memory.candidates(second)) == 4
    assert f"run {second}" in cli(home, "show", second)


def test_rm_keeps_the_yardstick_other_runs_of_the_task_compare_with(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = discover(_settings(home, random_samples=2, trials=5), QUIET, FakeExecutor())
    memory = open_memory(home)
    fingerprint = memory.get_run(first)["task_fingerprint"]
    samples = memory.random_samples(fingerprint)
    assert len(samples) == 2
    discover(_settings(home, random_samples=2, trials=3, seed=1), QUIET, FakeExecutor())
    assert memory.random_samples(fingerprint) == samples  # the second run drew none of its own

    assert set(samples) <= set(plan_removal(memory, first).kept)
    cli(home, "rm", first, "--yes")
    assert memory.random_samples(fingerprint) == samples
    assert all(memory.trials(cid) for cid in samples)
    # a later run of the task compares with them, and draws none of its own
    third = discover(_settings(home, random_samples=2, trials=3, seed=2), QUIET, FakeExecutor())
    assert memory.random_samples(fingerprint) == samples
    assert not any(c["origin"] == "random" for c in memory.candidates(third))


def test_rm_deletes_the_runs_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    better = {n: Scripted(score=0.5 + n / 10) for n in (2, 3)}  # confirmed: weights kept
    run_id = discover(_settings(home), QUIET, FakeExecutor(better))
    memory = open_memory(home)
    weights = [home / w["path"] for w in memory._query("SELECT path FROM weights")]
    trial_files = home / "trials" / run_id  # a real executor's (FakeExecutor writes none)
    trial_files.mkdir(parents=True, exist_ok=True)
    (trial_files / "log.txt").write_text("a trial's log")
    assert weights and all(w.exists() for w in weights)
    assert _checkpoints(home, run_id) > 0

    cli(home, "rm", run_id, "--yes")
    assert not any(w.exists() for w in weights) and not trial_files.exists()
    assert _checkpoints(home, run_id) == 0
    for table in _RUN_TABLES:
        assert _rows(memory, table, run_id) == 0, table
    assert memory._query("SELECT 1 FROM checks") == []
    assert open_memory(home).runs(evals=True) == []


def test_rm_refuses_a_run_that_is_not_there(tmp_path: Path) -> None:
    home = tmp_path / "home"
    discover(_settings(home, trials=1), QUIET, FakeExecutor())
    result = CliRunner().invoke(app, ["--home", str(home), "rm", "nope", "--yes"])
    assert isinstance(result.exception, ArchlabError) and "no run" in str(result.exception)


# --- item 6: runs you can continue ---------------------------------------------------------


def test_a_finished_run_is_extended_and_the_change_recorded(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_id = discover(_settings(home, trials=3), QUIET, FakeExecutor(), name="ext")
    with pytest.raises(ArchlabError, match=r"already finished: trial budget spent.*--trials N"):
        resume(home, "ext", QUIET, FakeExecutor())

    resume(home, "ext", QUIET, FakeExecutor(), trials=2)
    memory = open_memory(home)
    run = memory.get_run(run_id)
    assert run["status"] == "finished" and memory.count_candidates(run_id) == 5
    assert run["config"]["run"]["trials"] == 5
    (change,) = memory.run_changes(run_id)
    assert (change["setting"], change["old"], change["new"]) == ("run.trials", 3, 5)
    steps = [c["step"] for c in memory.candidates(run_id) if c["step"] is not None]
    assert len(steps) == len(set(steps))  # the new candidates are new steps, not repeats


def test_minutes_alone_extend_the_time_and_lift_the_trial_limit(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_id = discover(_settings(home, trials=2), QUIET, FakeExecutor())
    # a time budget so small that it is spent as soon as the run goes on
    resume(home, run_id, QUIET, FakeExecutor(), minutes=0.0001)
    memory = open_memory(home)
    changes = {c["setting"]: (c["old"], c["new"]) for c in memory.run_changes(run_id)}
    assert changes["run.trials"] == (2, 0)
    assert changes["run.minutes"][0] == 0 and changes["run.minutes"][1] > 0
    assert "time budget spent" in memory.get_run(run_id)["message"]


def test_a_run_that_failed_on_its_llm_settings_resumes_with_corrected_ones(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    with FakeLLM() as fake:
        fake.queue("planner", hostile_plan(32))
        wrong = f"{fake.base_url}/nowhere"
        settings = load_settings(
            flags={
                "home": str(home),
                "run": {"task": "mqar", "lanes": 1, "trials": 2},
                "roles": {"planner": "llm:default"},
                "llm": {"default": {"base_url": wrong, "model": "fake-model"}},
                "tasks": {"mqar": TINY_MQAR},
                "search": {"random_samples": 0},
                "ladder": {"confirm_seeds": 2, "scale_top": 0},
            },
            environ={},
        )
        with pytest.raises(ArchlabError, match="404"):
            discover(settings, QUIET, FakeExecutor(), name="llm")
        memory = open_memory(home)
        assert memory.get_run("llm")["status"] == "failed"

        run_id = resume(
            home, "llm", QUIET, FakeExecutor(), flags={"llm.default.base_url": fake.base_url}
        )
        run = memory.get_run(run_id)
        assert run["status"] == "finished" and memory.count_candidates(run_id) == 2
        assert run["config"]["llm"]["default"]["base_url"] == fake.base_url
        (change,) = memory.run_changes(run_id)
        assert (change["setting"], change["old"], change["new"]) == (
            "llm.default.base_url",
            wrong,
            fake.base_url,
        )


def test_older_evaluations_are_marked_as_such(tmp_path: Path) -> None:
    """Migration 9: the runs `archlab eval` made before (brain manual) become kind eval."""
    import duckdb

    from archlab.memory.database import _migrations

    path = tmp_path / "m.duckdb"
    with duckdb.connect(str(path)) as con:  # a memory as version 8 left it
        con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                    "name VARCHAR NOT NULL, applied_at TIMESTAMP)")  # fmt: skip
        for version, name, sql in _migrations():
            if version <= 8:
                con.execute(sql)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
        for run_id, brain in (("e1", "manual"), ("d1", "heuristic")):
            con.execute("INSERT INTO runs (run_id, task, task_fingerprint, status, brain, seed, "
                        "config, started_at) VALUES (?, 'mqar', 'fp', 'finished', ?, 0, '{}', "
                        "now())", [run_id, brain])  # fmt: skip
    memory = Memory(path)
    assert [r["run_id"] for r in memory.runs()] == ["d1"]
    assert memory.get_run("e1")["kind"] == "eval"
