"""Lanes, budgets across lanes and resumes, the human in the loop, and the memory's
integrity when runs are killed at random points or run thousands of trials."""

from __future__ import annotations

import io
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from archlab.config import LLMProfile, RunSettings, load_settings
from archlab.errors import ArchlabError
from archlab.llm.brains import Remembering
from archlab.llm.client import LLM, Question
from archlab.memory import leases
from archlab.memory.store import Memory
from archlab.orchestration.budget import RunBudget
from archlab.orchestration.runs import discover, open_memory, resume
from archlab.prompts import Prompts, task_brief
from archlab.roles import briefing
from archlab.roles.planner import ComposePlan, _steered
from archlab.roles.reviewer import primitives, read_steer
from archlab.search.genome import Block, Genome
from archlab.search.heuristic import HeuristicBrain, PoolEntry
from archlab.tasks.mqar import MQAR
from fake_llm import FakeLLM, Reply, fenced
from recorded_run import recorded_executor, soak_settings
from support import TINY_CONFIG, TINY_MQAR, archlab, as_json, start

# --- budgets --------------------------------------------------------------------------


def _candidate(memory: Memory, cid: str, run_id: str = "r") -> None:
    memory.save_candidate(
        candidate_id=cid, run_id=run_id, task="mqar", task_fingerprint="fp", source="",
        source_hash=cid, ast_hash=None, parents=[], plan={}, genome=None, genome_key=None,
        brain="heuristic", origin="proposed", status="pending",
    )  # fmt: skip


def test_the_trial_budget_counts_saved_candidates_and_claimed_slots(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "memory.duckdb")
    _candidate(memory, "earlier", run_id="r")  # a candidate an earlier session saved
    _candidate(memory, "other-run", run_id="someone-else")
    budget = RunBudget(RunSettings(trials=4), memory, "r")
    budget.hold(1)  # a lane resumed at a planned, unsaved candidate
    assert budget.claim() is None  # slot 3
    with budget.saving("new") as number:  # its number: the saved before it, and itself
        _candidate(memory, "new")
    assert number == 2
    with budget.saving("new") as number:  # the node re-ran after a crash: nothing to settle
        _candidate(memory, "new")
    assert number == 2
    assert budget.claim() is None  # slot 4
    assert budget.claim() == "trial budget spent (4 candidates)"
    budget.release()  # the planner gave up: the slot is free again
    assert budget.claim() is None


def test_the_time_budget_counts_earlier_sessions(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "memory.duckdb")
    memory.start_run(run_id="r", task="mqar", task_fingerprint="fp", brain="heuristic",
                     seed=0, config={})  # fmt: skip
    budget = RunBudget(RunSettings(trials=9, minutes=1), memory, "r", elapsed_before=59.5)
    assert budget.claim() is None
    time.sleep(0.6)
    assert budget.claim() == "time budget spent (1 minutes)"
    budget.save_elapsed()
    (run,) = memory.runs()
    assert run["elapsed_s"] >= 60


# --- steering -------------------------------------------------------------------------


def test_notes_read_as_preferences_and_exclusions() -> None:
    steer = read_steer(["Avoid softmax attention; try a gated recurrence", "no conv, and rmsnorm"])
    assert steer.avoid == {"softmax_attention", "causal_conv"}
    assert steer.prefer == {"gated_recurrence", "rmsnorm"}
    assert read_steer(["no linear-attention"]).avoid == {"linear_attention"}
    later = read_steer(["avoid gated recurrence", "let's use gated_recurrence after all"])
    assert later.prefer == {"gated_recurrence"} and not later.avoid
    assert not read_steer(["be creative"])


def test_steered_proposals_follow_the_notes() -> None:
    attention = Genome(d_model=64, blocks=(Block(mixer="softmax_attention", channel="mlp"),) * 2)
    pool = [PoolEntry(candidate_id="best", score=0.5, genome=attention)]
    steer = read_steer(["avoid softmax attention; use gated recurrence"])
    for seed in range(8):
        proposal = _steered(HeuristicBrain(random.Random(seed)), pool, set(), steer)
        used = primitives(proposal.genome)
        assert "softmax_attention" not in used and "gated_recurrence" in used
        assert "steered by the researcher's notes" in proposal.motivation


def test_a_model_planner_reads_the_notes_in_its_prompt(tmp_path: Path) -> None:
    context = briefing.planner_context(Memory(tmp_path / "memory.duckdb"), "fp", False)

    def prompt(notes: list[str]) -> str:
        return Prompts().render(
            "planner.j2", task=task_brief(MQAR()), mode="compose", mixers=["causal_conv"],
            channels=["mlp"], notes=notes, **context,
        )  # fmt: skip

    shown = prompt(["avoid conv", "try <b>wider</b> models"])
    assert "## The researcher's notes" in shown
    assert "- avoid conv\n- try <b>wider</b> models\n" in shown
    assert "researcher" not in prompt([])


# --- LLM answers are not paid twice -----------------------------------------------------


def test_a_question_answered_before_a_crash_is_not_asked_again(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "memory.duckdb")
    plan = {
        "motivation": "m", "hypothesis": "h", "operator": "new", "parents": [],
        "expected_effect": "e", "genome": {"d_model": 32, "blocks": [
            {"mixer": "gated_recurrence", "channel": "mlp"}]},
    }  # fmt: skip
    question = Question(
        role="planner",
        purpose="plan",
        messages=[
            {"role": "system", "content": "archlab planner"},
            {"role": "user", "content": "?"},
        ],
        answer=ComposePlan,
        step=3,
    )
    with FakeLLM() as fake:
        fake.defaults["planner"] = Reply(fenced(plan))
        profile = LLMProfile(base_url=fake.base_url, model="fake-model")
        llm = LLM("default", profile, Prompts(None), lambda row: memory.save_llm_call(
            run_id="r", **row))  # fmt: skip
        first = Remembering(llm, memory, "r").ask(question)
        again = Remembering(llm, memory, "r").ask(question)  # a new process, same question
        assert len(fake.requests) == 1
        assert again == first
        Remembering(llm, memory, "other-run").ask(question)  # another run pays for its own
        assert len(fake.requests) == 2


# --- lanes ----------------------------------------------------------------------------


def _settings(tmp_path: Path, **run: Any) -> Any:
    return load_settings(
        flags={
            "home": str(tmp_path / "home"),
            "run": run,
            "executor": {"workers": 2},
            "tasks": {"mqar": TINY_MQAR},
            "sandbox": {"memory_gb": 6},
        },
        environ={},
    )


@pytest.mark.slow
def test_lanes_share_one_memory_one_budget_and_one_baseline(tmp_path: Path) -> None:
    settings = _settings(tmp_path, trials=6, lanes=3)
    piped = io.StringIO()
    run_id = discover(settings, Console(file=piped, width=100))

    memory = open_memory(settings.home_dir)
    assert memory.get_run(run_id)["status"] == "finished"
    candidates = sorted(memory.candidates(run_id), key=lambda c: c["created_at"])
    assert len(candidates) == 6  # the budget holds across lanes
    # a progress line as each is recorded, naming what the other lanes train meanwhile
    progress = [ln for ln in piped.getvalue().splitlines() if ln.startswith("progress: ")]
    assert len(progress) == 6 and all(" of 6 · " in ln and "best" in ln for ln in progress)
    assert any(re.search(r" · (training|verifying|\d in flight)", ln) for ln in progress)
    assert candidates[0]["origin"] == "baseline"
    baseline_done = memory.verdict(candidates[0]["candidate_id"])["created_at"]
    assert all(c["created_at"] > baseline_done for c in candidates[1:])  # lanes wait for it
    assert {c["lane"] for c in candidates} == {0, 1, 2}
    steps = [c["step"] for c in candidates]
    assert len(set(steps)) == len(steps)  # every idea has its own step, whatever its lane
    keys = [c["genome_key"] for c in candidates if c["genome_key"]]
    assert len(set(keys)) == len(keys)  # no two lanes evaluated the same genome
    assert "pending" not in {c["status"] for c in candidates}
    conclusions = [s for s in memory.spans(run_id) if s["name"] == "conclude"]
    assert len(conclusions) == 1 and memory.get_run(run_id)["summary"]


# --- the human in the loop --------------------------------------------------------------


def _wait_for(what: str, check: Any, proc: subprocess.Popen[str], timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert proc.poll() is None, f"the run ended before {what}: {proc.stderr}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return found


def _query(home: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """A reader from the test process, through the memory's own locking."""
    with Memory(home / "memory.duckdb").connect(read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.mark.slow
def test_review_pauses_training_until_approved_or_rejected_and_steer_shapes_plans(
    lab_dir: Path,
) -> None:
    home = lab_dir / "home"
    proc = start(lab_dir, "run", "--review", "--trials", "4", ARCHLAB_SEARCH__RANDOM_SAMPLES="0")
    try:

        def waiting() -> list[tuple[Any, ...]]:
            if not (home / "memory.duckdb").exists():
                return []
            return _query(home, "SELECT candidate_id, run_id FROM reviews WHERE decision IS NULL")

        ((baseline, run_id),) = _wait_for("the baseline's review", waiting, proc)
        assert not _query(home, "SELECT * FROM trials WHERE stage = 'proxy'")  # it waits
        # and says so to readers of the memory (the web UI), as the stage in flight
        flight = "SELECT candidate_id, stage FROM in_flight WHERE run_id = ?"
        assert _query(home, flight, [run_id]) == [(baseline, "review")]
        archlab(lab_dir, "steer", run_id, "avoid softmax attention; try gated recurrence")
        assert archlab(lab_dir, "approve", run_id).stdout.strip() == f"approved {baseline}"

        def next_one() -> str | None:
            rows = waiting()
            return rows[0][0] if rows and rows[0][0] != baseline else None

        second = _wait_for("the second review", next_one, proc)
        rejected = archlab(lab_dir, "reject", run_id, "--candidate", second[:6],
                           "--reason", "too close to the baseline")  # fmt: skip
        assert rejected.stdout.strip() == f"rejected {second}"
        wrong = archlab(lab_dir, "approve", run_id, "--candidate", "nosuch", check=False)
        assert wrong.returncode == 2 and "waiting for review" in wrong.stderr
        for _ in range(2):
            third = _wait_for("a later review", next_one, proc)
            archlab(lab_dir, "approve", run_id, "--candidate", third)
        assert proc.wait(timeout=300) == 0, proc.stderr
    finally:
        proc.kill()

    memory = open_memory(home)
    outcome = memory.get_candidate(second)
    assert (outcome["status"], outcome["error_class"]) == ("rejected", "review")
    assert "too close to the baseline" in outcome["message"]
    assert [t["stage"] for t in memory.trials(second)] == ["smoke"]  # verified, not trained
    review = [c for c in memory.checks(second) if c["stage"] == "review"]
    assert review and review[0]["status"] == "failed"
    proposed = [c for c in memory.candidates(run_id) if c["origin"] == "proposed"]
    assert len(proposed) == 3
    for c in proposed:  # every proposal came after the note and follows it
        used = primitives(Genome.model_validate(c["genome"]))
        assert "softmax_attention" not in used and "gated_recurrence" in used


# --- integrity: kills at random points, and a soak --------------------------------------


def check_memory(home: Path, run_id: str, trials: int, final: bool) -> None:
    """What must hold in the memory at any moment of a run, and once it is finished."""

    def one(sql: str) -> Any:
        ((value,),) = _query(home, sql, [run_id])
        return value

    assert one("SELECT count(*) FROM candidates WHERE run_id = ?") <= trials
    assert (
        one(  # every trial, verdict and check belongs to a saved candidate
            "SELECT count(*) FROM (SELECT candidate_id FROM trials WHERE run_id = ? UNION ALL "
            "SELECT candidate_id FROM verdicts UNION ALL SELECT candidate_id FROM checks) x "
            "WHERE candidate_id NOT IN (SELECT candidate_id FROM candidates)"
        )
        == 0
    )
    assert (
        one(  # one idea per step, whatever the lane: no idea planned twice
            "SELECT count(*) - count(DISTINCT step) FROM candidates WHERE run_id = ? "
            "AND plan->>'$.repair_of' IS NULL"
        )
        == 0
    )
    assert (
        one(  # an LLM question answered is never paid for again
            "SELECT count(*) FROM (SELECT role, step, repair FROM llm_calls WHERE run_id = ? "
            "AND status = 'ok' GROUP BY ALL HAVING count(*) > 1)"
        )
        == 0
    )
    assert (
        one(  # a trained candidate has one proxy trial
            "SELECT count(*) FROM candidates c WHERE run_id = ? AND status = 'ok' AND "
            "(SELECT count(*) FROM trials t WHERE t.candidate_id = c.candidate_id "
            "AND stage = 'proxy') != 1"
        )
        == 0
    )
    if final:
        assert one("SELECT status FROM runs WHERE run_id = ?") == "finished"
        assert one("SELECT count(*) FROM candidates WHERE run_id = ?") == trials
        assert (
            one(
                "SELECT count(*) FROM candidates c WHERE run_id = ? AND (status = 'pending' "
                "OR candidate_id NOT IN (SELECT candidate_id FROM verdicts))"
            )
            == 0
        )
        assert one("SELECT summary IS NOT NULL FROM runs WHERE run_id = ?")


def kill_and_resume(
    home: Path,
    budget: int,
    launch: Callable[[str | None], subprocess.Popen[str]],
    progress: Callable[[subprocess.Popen[str], int], object],
    rng: random.Random,
    rounds: int,
    steps: tuple[int, int],
) -> int:
    """Start a run (`launch(None)`), SIGKILL it once it has made a random number of `steps`
    of progress (`progress(proc, n)` returns when it has made `n` more, or exited) and a
    random fraction of a second more, resume it (`launch(run_id)`) and kill it again,
    `rounds` times, with the memory's invariants checked after every kill; then let the last
    resume finish. How many kills landed. Kills follow the run's progress, not the clock:
    on a fast machine a clock would let the run finish before the kills began."""
    run_id, kills, finished = None, 0, False
    for attempt in range(rounds + 1):
        proc = launch(run_id)
        if attempt < rounds:
            progress(proc, rng.randint(*steps))
            time.sleep(rng.uniform(0, 0.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode in (0, -signal.SIGKILL), stderr
        if run_id is None and (home / "memory.duckdb").exists():
            run_id = (_query(home, "SELECT run_id FROM runs") or [(None,)])[0][0]
        if run_id is not None:
            check_memory(home, run_id, budget, final=False)
            # a kill may land after the run finished, while its process exits: a resume
            # would then be refused ("already finished"), rightly
            (status,) = _query(home, "SELECT status FROM runs WHERE run_id = ?", [run_id])[0]
            finished = status == "finished"
        if finished:
            break
        assert proc.returncode != 0, "the process exited cleanly with its run unfinished"
    assert run_id is not None and finished
    check_memory(home, run_id, budget, final=True)
    return kills


def _planner(body: dict[str, Any]) -> Reply:
    """A new architecture for every question, so that the novelty check never objects."""
    n = len(body["messages"]) + sum(map(ord, body["messages"][-1]["content"][-400:]))
    mixers = ["gated_recurrence", "causal_conv", "linear_attention", "softmax_attention"]
    blocks = [{"mixer": mixers[(n >> i) % 4], "channel": "mlp"} for i in range(1 + n % 3)]
    plan = {
        "motivation": "m", "hypothesis": "h", "operator": "new", "parents": [],
        "expected_effect": "e", "genome": {"d_model": 32 + 16 * (n % 8), "blocks": blocks},
    }  # fmt: skip
    return Reply(fenced(plan))


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_keeps_the_memory_consistent(
    lab_dir: Path,
) -> None:
    trials, home = 6, lab_dir / "home"
    with FakeLLM() as fake:
        fake.defaults["planner"] = _planner
        (lab_dir / "archlab.toml").write_text(
            TINY_CONFIG + f'\n[roles]\nplanner = "llm:default"\n\n[llm.default]\n'
            f'base_url = "{fake.base_url}"\nmodel = "fake-model"\n'
        )
        first = ["run", "--trials", str(trials), "--lanes", "2", "--workers", "2"]

        def reported(proc: subprocess.Popen[str], events: int) -> None:
            assert proc.stderr is not None  # the console's lines: the run's opening, then
            while events and (line := proc.stderr.readline()):  # the lanes' events ("L0 ...")
                events -= bool(re.match(r"(run|resuming|L\d+) ", line))

        kills = kill_and_resume(
            home,
            trials,
            lambda run_id: start(lab_dir, *(["resume", run_id] if run_id else first)),
            reported,
            rng=random.Random(11),
            rounds=10,
            steps=(1, 3),
        )
    assert kills >= 5
    (run,) = as_json(archlab(lab_dir, "runs", "--json"))
    assert run["status"] == "finished"


def test_a_run_lease_is_held_by_one_process_and_dropped_when_it_dies(tmp_path: Path) -> None:
    holder = (
        "import sys, time; from pathlib import Path; from archlab.memory import leases\n"
        "with leases.hold(Path(sys.argv[1]), 'r1'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    assert not leases.is_driven(tmp_path, "r1")
    child = subprocess.Popen(
        [sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        assert leases.is_driven(tmp_path, "r1")
        refused = f"still running \\(process {child.pid}\\)"
        with pytest.raises(ArchlabError, match=refused), leases.hold(tmp_path, "r1"):
            pass
        running = {"run_id": "r1", "status": "running"}
        assert leases.shown_status(tmp_path, running)["status"] == "running"
    finally:
        child.kill()
        child.wait()
    assert not leases.is_driven(tmp_path, "r1")
    assert leases.shown_status(tmp_path, running)["status"] == "killed"
    with leases.hold(tmp_path, "r1"):  # free again: this process drives it now
        assert leases.is_driven(tmp_path, "r1")


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    settings = soak_settings(home, 3)
    open_memory(home).start_run(  # all a run leaves when killed before its first node
        run_id="r-early", task="mqar", task_fingerprint="fp", brain="heuristic", seed=0,
        config=settings.model_dump(mode="json"),
    )  # fmt: skip
    resume(home, "r-early", Console(quiet=True), recorded_executor(settings))
    check_memory(home, "r-early", 3, final=True)


def test_an_eval_killed_before_its_first_checkpoint_says_to_evaluate_again(
    tmp_path: Path,
) -> None:
    """Its candidate's source was in the graph state alone: no fresh start as a discovery."""
    home = tmp_path / "home"
    settings = soak_settings(home, 3)
    open_memory(home).start_run(
        run_id="r-eval", task="mqar", task_fingerprint="fp", brain="manual", seed=0,
        config=settings.model_dump(mode="json"), kind="eval",
    )  # fmt: skip
    with pytest.raises(ArchlabError, match="evaluate the file again"):
        resume(home, "r-eval", Console(quiet=True), recorded_executor(settings))
    assert open_memory(home).get_run("r-eval")["status"] == "failed"


def test_damaged_checkpoints_are_one_clear_error_that_says_what_to_do(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = soak_settings(home, 3)
    open_memory(home).start_run(
        run_id="r-1", task="mqar", task_fingerprint="fp", brain="heuristic", seed=0,
        config=settings.model_dump(mode="json"),
    )  # fmt: skip
    (home / "checkpoints.sqlite").write_bytes(bytes(range(256)) * 20)  # not SQLite's
    with pytest.raises(ArchlabError, match=r"are damaged .*move the file aside"):
        resume(home, "r-1", Console(quiet=True), recorded_executor(settings))
    with pytest.raises(ArchlabError, match="are damaged"):  # a new run too: one file for all
        discover(settings, Console(quiet=True), recorded_executor(settings))


@pytest.mark.slow
def test_a_live_run_cannot_be_resumed_twice_and_a_killed_one_shows_as_killed(
    lab_dir: Path,
) -> None:
    home = lab_dir / "home"
    proc = start(lab_dir, "run", "--trials", "3")
    try:
        deadline = time.monotonic() + 120
        while not (home / "memory.duckdb").exists() or not _query(home, "SELECT 1 FROM runs"):
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.2)
        (run,) = as_json(archlab(lab_dir, "runs", "--json"))
        assert run["status"] == "running"
        second = archlab(lab_dir, "resume", run["run_id"], check=False)
        assert second.returncode == 2 and "is still running (process" in second.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (run,) = as_json(archlab(lab_dir, "runs", "--json"))
    assert run["status"] == "killed"
    archlab(lab_dir, "resume", run["run_id"])
    (run,) = as_json(archlab(lab_dir, "runs", "--json"))
    assert run["status"] == "finished" and run["n_candidates"] == 3


#: SOAK_TRIALS sets the real-trial soak's size (the conftest clears ARCHLAB_* variables,
#: hence the name); about 4 s a candidate here, so thousands take hours on 2 cores
SOAK_TRIALS = int(os.environ.get("SOAK_TRIALS", "16"))
#: candidates of the recorded-trial soak: three trials each (smoke, proxy, confirm), 2100 in all
RECORDED_SOAK_CANDIDATES = int(os.environ.get("RECORDED_SOAK_CANDIDATES", "700"))


@pytest.mark.slow
@pytest.mark.timeout(max(600, 10 * SOAK_TRIALS))
def test_soak_several_lanes_many_tiny_trials(tmp_path: Path) -> None:
    settings = soak_settings(tmp_path / "home", SOAK_TRIALS)
    run_id = discover(settings, Console(quiet=True))
    check_memory(settings.home_dir, run_id, SOAK_TRIALS, final=True)


@pytest.mark.slow
@pytest.mark.timeout(max(600, RECORDED_SOAK_CANDIDATES))
def test_soak_thousands_of_recorded_trials(tmp_path: Path) -> None:
    """Four lanes and two workers through thousands of trials, each kind's first trained in
    the sandbox and the rest answered from that recording (RecordedExecutor): every write
    of a real run, at the rate the lab alone can make them."""
    candidates = RECORDED_SOAK_CANDIDATES
    settings = soak_settings(tmp_path / "home", candidates)
    run_id = discover(settings, Console(quiet=True), recorded_executor(settings))
    check_memory(settings.home_dir, run_id, candidates, final=True)
    trials, stages, confirms = _query(
        settings.home_dir,
        "SELECT count(*), count(DISTINCT stage), count(*) FILTER (stage = 'confirm') "
        "FROM trials WHERE run_id = ?",
        [run_id],
    )[0]
    # a smoke and a proxy trial each, and a confirm seed for those promoted (the baseline)
    assert trials == 2 * candidates + confirms and confirms >= 1 and stages == 3
    ((duplicates,),) = _query(  # no trial written twice
        settings.home_dir,
        "SELECT count(*) FROM (SELECT candidate_id, stage, seed FROM trials WHERE run_id = ? "
        "GROUP BY ALL HAVING count(*) > 1)",
        [run_id],
    )
    assert duplicates == 0


@pytest.mark.slow
def test_a_kill_between_plans_saved_writes_and_its_checkpoint_keeps_the_budget(
    tmp_path: Path,
) -> None:
    """LangGraph saves a finished node's writes before the checkpoint that follows it, and a
    resume applies them instead of running the node again: the slot that plan claimed must
    still count (missed, the random kill test once saved 301 candidates on a budget of 300)."""
    candidates, home = 12, tmp_path / "home"
    argv = [sys.executable, str(Path(__file__).with_name("recorded_run.py")), str(home)]
    argv.append(str(candidates))
    died = subprocess.run(
        argv, env={**os.environ, "DIE_AFTER_PLAN": "7"}, capture_output=True, text=True
    )
    assert died.returncode == 137, died.stderr
    ((run_id,),) = _query(home, "SELECT run_id FROM runs")
    check_memory(home, run_id, candidates, final=False)
    resumed = subprocess.run([*argv, run_id], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    check_memory(home, run_id, candidates, final=True)


@pytest.mark.slow
def test_kill_9_during_recorded_trials_then_resume_keeps_the_memory_consistent(
    tmp_path: Path,
) -> None:
    """The kill -9 test at the rate the lab alone writes (trials answered from a
    recording): many more kills land in the middle of a memory write."""
    candidates = 300  # 601 trials: more than 15 sessions killed within 30 trials can answer
    home, script = tmp_path / "home", Path(__file__).with_name("recorded_run.py")

    def launch(run_id: str | None) -> subprocess.Popen[str]:
        argv = [sys.executable, str(script), str(home), str(candidates)]
        return subprocess.Popen(
            argv + ([run_id] if run_id else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def answered(proc: subprocess.Popen[str], trials: int) -> None:
        for _ in range(trials):  # a line for each trial answered; none once it exited
            assert proc.stdout is not None
            proc.stdout.readline()

    kills = kill_and_resume(
        home, candidates, launch, answered, rng=random.Random(5), rounds=15, steps=(1, 30)
    )
    assert kills >= 5
