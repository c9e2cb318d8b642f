"""The discovery graph through its public entry points (discover, resume) with trials
answered at once by FakeExecutor: routing, failed trainings, budgets, the repair loop and
resuming, read back from the memory. Each run takes a second or two: no trial runs."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from archlab.config import Settings, load_settings
from archlab.memory.store import Memory
from archlab.orchestration.runs import discover, evaluate_file, open_memory, resume
from archlab.sandbox.executor import TrialRequest
from archlab.tasks.mqar import MQAR
from fake_llm import FakeLLM, Reply, code_block
from support import TINY_MQAR, FakeExecutor, Scripted, design_plan

QUIET = Console(quiet=True)
CRASH = Scripted(failure="crash")


def _settings(tmp_path: Path, ladder: dict[str, Any] | None = None, **run: Any) -> Settings:
    return load_settings(
        flags={
            "home": str(tmp_path / "home"),
            "run": {"task": "mqar", "lanes": 1, **run},  # one lane unless a test says
            "ladder": ladder or {},
            "tasks": {"mqar": TINY_MQAR},
        },
        environ={},
    )


def _in_order(memory: Memory, run_id: str) -> list[dict[str, Any]]:
    return sorted(memory.candidates(run_id), key=lambda c: c["created_at"])


def _route(memory: Memory, run_id: str, candidate_id: str) -> list[str]:
    """The graph nodes that ran for the candidate, in order."""
    spans = [s for s in memory.spans(run_id) if s["candidate_id"] == candidate_id]
    return [s["name"] for s in sorted(spans, key=lambda s: s["started_at"])]


class _Slow(FakeExecutor):
    """Candidate `n`'s `stage` trials take `seconds`: they end after the run's minutes."""

    def __init__(self, script: dict[Any, Scripted], n: int, stage: str, seconds: float) -> None:
        super().__init__(script)
        self.n, self.stage, self.seconds = n, stage, seconds

    def run(self, request: TrialRequest) -> Any:
        report = super().run(request)
        if request.stage == self.stage and len(self.candidates) == self.n:
            time.sleep(self.seconds)
        return report


@pytest.mark.parametrize(
    ("stage", "before"), [("proxy", "its confirm seeds"), ("confirm", "its audit")]
)
def test_no_confirmation_or_audit_begins_once_the_minutes_are_spent(
    tmp_path: Path, stage: str, before: str
) -> None:
    """The run ends within its minutes and the trials in flight: a proposal that earns its
    confirm seeds, or (a gain beyond the audit ratio) its audit, only after the minutes
    are spent is not accepted, and says why."""
    settings = _settings(tmp_path, trials=0, minutes=0.05)  # 3 s
    fake = _Slow({1: Scripted(score=0.1), 2: Scripted(score=0.9)}, 2, stage, seconds=3.5)
    run_id = discover(settings, QUIET, fake)

    memory = open_memory(settings.home_dir)
    _, late = _in_order(memory, run_id)
    stages = [r.stage for r in fake.requests]
    assert stages.count("confirm") == (2 if stage == "proxy" else 4)  # the baseline's: 2
    assert not any(s.startswith("audit") for s in stages)
    verdict = memory.verdict(late["candidate_id"])
    assert verdict["verdict"] == "reject"
    assert verdict["reason"].endswith(
        f"but the run's time budget was spent before {before}; not accepted"
    )


def test_routing_trains_the_verified_skips_the_rejected_and_confirms_the_promising(
    tmp_path: Path,
) -> None:
    # (early stopping would end the 4th's proxy trial: test_a_proposal_that_cannot_catch...)
    settings = _settings(tmp_path, ladder={"early_stop": False}, trials=4)
    fake = FakeExecutor({2: CRASH, 3: Scripted(score=0.75)})  # 4th: the default 0.5
    run_id = discover(settings, QUIET, fake)

    memory = open_memory(settings.home_dir)
    baseline, crashed, better, same = _in_order(memory, run_id)
    confirmed = ["plan", "code", "verify", "train", "critique", "train", "critique", "record"]
    assert baseline["origin"] == "baseline" and baseline["score"] == 0.5
    assert _route(memory, run_id, baseline["candidate_id"]) == confirmed

    assert (crashed["status"], crashed["error_class"]) == ("rejected", "crash")
    assert _route(memory, run_id, crashed["candidate_id"]) == [
        "plan", "code", "verify", "critique", "record",
    ]  # fmt: skip
    assert [t["stage"] for t in memory.trials(crashed["candidate_id"])] == ["smoke"]
    assert memory.verdict(crashed["candidate_id"])["verdict"] == "reject"

    # above the baseline's mean: promoted to confirm, its seeds' mean becomes its score
    assert _route(memory, run_id, better["candidate_id"]) == confirmed
    assert [(t["stage"], t["seed"]) for t in memory.trials(better["candidate_id"])] == [
        ("smoke", 0), ("proxy", 0), ("confirm", 1), ("confirm", 2), ("scale", 0),
    ]  # fmt: skip
    assert better["status"] == "ok" and better["score"] == 0.75
    assert memory.verdict(better["candidate_id"])["verdict"] == "accept"

    # not above it: trained once, judged without confirming
    assert _route(memory, run_id, same["candidate_id"]) == [
        "plan", "code", "verify", "train", "critique", "record",
    ]  # fmt: skip
    assert [t["stage"] for t in memory.trials(same["candidate_id"])] == ["smoke", "proxy"]
    verdict = memory.verdict(same["candidate_id"])
    assert verdict["verdict"] == "reject" and "not confirmed" in verdict["reason"]

    run = memory.get_run(run_id)
    assert (run["status"], run["message"]) == ("finished", "trial budget spent (4 candidates)")
    assert run["summary"]["best"]["candidate_id"] == better["candidate_id"]


def test_a_proposal_that_cannot_catch_the_baseline_is_stopped_early_and_never_accepted(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        flags={
            "home": str(tmp_path / "home"),
            "run": {"task": "mqar", "trials": 4, "lanes": 1},
            "search": {"random_samples": 1},
            "tasks": {"mqar": TINY_MQAR},
        },
        environ={},
    )
    low = Scripted(score=0.25)  # flat curves: no curve of the task has ever risen
    fake = FakeExecutor({2: low, 3: low, 4: Scripted(score=0.75)})
    run_id = discover(settings, QUIET, fake)

    memory = open_memory(settings.home_dir)
    baseline, stopped, sample, better = _in_order(memory, run_id)
    assert sample["origin"] == "random" and stopped["origin"] == better["origin"] == "proposed"
    proxy = [t for t in memory.trials(stopped["candidate_id"]) if t["stage"] == "proxy"]
    budget = MQAR(**TINY_MQAR).budgets["proxy"]
    # stopped at the first checkpoint it may be (a quarter of them), its partial curve kept
    assert [(t["status"], len(t["curve"])) for t in proxy] == [("stopped", 2)]
    assert stopped["status"] == "stopped" and stopped["score"] == pytest.approx(0.25, abs=0.05)
    verdict = memory.verdict(stopped["candidate_id"])
    assert verdict["verdict"] == "reject"
    assert verdict["reason"].startswith(f"stopped at step {2 * budget.eval_every} of ")
    parent = f"parent {baseline['candidate_id']}"
    assert f"below 0.5000, what 3 seeds need to beat {parent}'s mean 0.5000" in verdict["reason"]
    # the baseline's and the yardstick's scores stay whole; a proposal above it trains on
    stops = {r.trial_id: r.stop for r in fake.requests if r.stage == "proxy"}
    assert stops[f"{baseline['candidate_id']}-proxy-s0"] is None
    assert stops[f"{sample['candidate_id']}-proxy-s0"] is None
    assert sample["status"] == "ok" and sample["score"] == pytest.approx(0.25, abs=0.05)
    assert stops[f"{better['candidate_id']}-proxy-s0"] is not None
    assert memory.verdict(better["candidate_id"])["verdict"] == "accept"


def test_a_failed_training_is_judged_without_confirming_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, trials=4)
    script = {(2, "proxy"): Scripted(failure="timeout"), (3, "smoke"): Scripted(failure="nan")}
    run_id = discover(settings, QUIET, FakeExecutor(script))

    memory = open_memory(settings.home_dir)
    _, timed_out, diverged, last = _in_order(memory, run_id)
    assert (timed_out["status"], timed_out["error_class"]) == ("failed", "timeout")
    assert _route(memory, run_id, timed_out["candidate_id"]) == [
        "plan", "code", "verify", "train", "critique", "record",
    ]  # fmt: skip
    proxy = [t for t in memory.trials(timed_out["candidate_id"]) if t["stage"] == "proxy"]
    assert [(t["status"], t["error_class"], t["score"]) for t in proxy] == [
        ("error", "timeout", None)
    ]
    assert memory.verdict(timed_out["candidate_id"])["verdict"] == "reject"
    assert (diverged["status"], diverged["error_class"]) == ("rejected", "nan")
    assert "train" not in _route(memory, run_id, diverged["candidate_id"])
    assert last["status"] == "ok" and last["score"] == 0.5
    assert memory.get_run(run_id)["status"] == "finished"


@pytest.mark.parametrize("lanes", [1, 2])
def test_the_trial_budget_stops_at_exactly_n_candidates(tmp_path: Path, lanes: int) -> None:
    settings = _settings(tmp_path, trials=5, lanes=lanes)
    fake = FakeExecutor()
    run_id = discover(settings, QUIET, fake)

    memory = open_memory(settings.home_dir)
    candidates = memory.candidates(run_id)
    assert len(candidates) == 5 and len(fake.candidates) == 5
    # lane 1 starts once the baseline is recorded: with instant trials, lane 0 may have
    # planned everything by then
    assert {c["lane"] for c in candidates} <= set(range(lanes))
    assert len({c["step"] for c in candidates}) == 5  # every idea its own step
    assert all(c["status"] == "ok" for c in candidates)
    trial_ids = [r.trial_id for r in fake.requests]
    assert len(set(trial_ids)) == len(trial_ids)  # no trial run twice
    run = memory.get_run(run_id)
    assert (run["status"], run["message"]) == ("finished", "trial budget spent (5 candidates)")


def test_design_mode_repairs_a_failing_candidate_at_most_max_repairs_times(
    tmp_path: Path,
) -> None:
    baseline = MQAR().baseline_source()
    attempts = [baseline.replace("n_heads: int = 1", f"n_heads: int = {n}") for n in (2, 4, 8)]
    # the baseline's trials pass; every attempt at the idea crashes
    fake_trials = FakeExecutor({2: CRASH, 3: CRASH, 4: CRASH})
    with FakeLLM() as fake:
        fake.defaults["planner"] = design_plan
        fake.queue("coder", *(Reply(code_block(source)) for source in attempts))
        settings = load_settings(
            flags={
                "home": str(tmp_path / "home"),
                "run": {"trials": 4, "mode": "design", "max_repairs": 2, "lanes": 1},
                "roles": {"planner": "llm:default", "coder": "llm:default"},
                "llm": {"default": {"base_url": fake.base_url, "model": "fake-model"}},
                "tasks": {"mqar": TINY_MQAR},
                "search": {"random_samples": 0},
            },
            environ={},
        )
        run_id = discover(settings, QUIET, fake_trials)

    memory = open_memory(settings.home_dir)
    base, *chain = _in_order(memory, run_id)
    assert base["origin"] == "baseline" and base["status"] == "ok"
    assert [c["source"] for c in chain] == attempts
    assert [c["plan"].get("repair_of") for c in chain] == [
        None, chain[0]["candidate_id"], chain[1]["candidate_id"],
    ]  # fmt: skip
    assert all((c["status"], c["error_class"]) == ("rejected", "crash") for c in chain)
    verdicts = [memory.verdict(c["candidate_id"])["verdict"] for c in chain]
    assert verdicts == ["repair", "repair", "reject"]  # two repairs, then given up
    write, *repairs = fake.bodies("coder")
    assert len(repairs) == 2
    assert all("the trial wrote no result" in b["messages"][-1]["content"] for b in repairs)
    assert "the trial wrote no result" not in write["messages"][-1]["content"]


@pytest.mark.parametrize("lanes", [1, 2])
def test_a_run_interrupted_mid_trial_resumes_to_exactly_its_budget(
    tmp_path: Path, lanes: int
) -> None:
    settings = _settings(tmp_path, trials=6, lanes=lanes)
    interrupted = FakeExecutor(interrupt_at=8)  # mid-way through the third candidate
    with pytest.raises(KeyboardInterrupt):
        discover(settings, QUIET, interrupted)
    memory = open_memory(settings.home_dir)
    (run,) = memory.runs()
    assert run["status"] == "interrupted"
    before = {c["candidate_id"] for c in memory.candidates(run["run_id"])}
    assert 0 < len(before) < 6

    resumed = FakeExecutor()
    assert resume(settings.home_dir, run["run_id"], QUIET, resumed) == run["run_id"]
    # the trial that was stopped runs again
    assert interrupted.interrupted in {r.trial_id for r in resumed.requests}
    candidates = memory.candidates(run["run_id"])
    assert len(candidates) == 6
    assert before <= {c["candidate_id"] for c in candidates}
    assert all(c["status"] == "ok" for c in candidates)
    keys = [c["genome_key"] for c in candidates]
    assert len(set(keys)) == len(keys)  # no idea evaluated twice
    _, twice = memory.read_only_sql(
        "SELECT candidate_id, stage, seed, count(*) AS n FROM trials "
        f"WHERE run_id = '{run['run_id']}' GROUP BY ALL HAVING count(*) > 1"
    )
    assert twice == []  # no trial recorded twice
    assert memory.get_run(run["run_id"])["status"] == "finished"


def test_an_evaluated_file_climbs_the_same_ladder_alone(tmp_path: Path) -> None:
    """`archlab eval`: one hand-written candidate, in a run of its own, with every stage's
    outcome; a module that does not parse stops at the static check, before any trial."""
    settings = _settings(tmp_path)
    good, broken = tmp_path / "good.py", tmp_path / "broken.py"
    good.write_text(MQAR().baseline_source())
    broken.write_text("def build_model(spec):\n    return (\n")
    fake = FakeExecutor()

    result = evaluate_file(settings, good, QUIET, fake)
    assert (result["status"], result["score"]) == ("ok", 0.5)
    stages = [(s["stage"], s["status"]) for s in result["stages"]]
    assert ("static", "passed") in stages and ("proxy", "passed") in stages
    memory = open_memory(settings.home_dir)
    (candidate,) = memory.candidates(result["run_id"])
    assert (candidate["origin"], candidate["brain"]) == ("manual", "manual")

    trials = len(fake.requests)
    result = evaluate_file(settings, broken, QUIET, fake)
    assert (result["status"], result["error_class"]) == ("rejected", "syntax")
    assert result["verdict"]["verdict"] == "reject"
    assert [(s["stage"], s["status"]) for s in result["stages"]] == [("static", "failed")]
    assert len(fake.requests) == trials  # no trial ran for it


class ScoredByCode(FakeExecutor):
    """Each candidate's score follows from its code, whichever lane asks first."""

    def answer(self, n: int, request: TrialRequest) -> Scripted:
        return Scripted(
            score=int(hashlib.sha256(request.source.encode()).hexdigest(), 16) % 97 / 100
        )


def _proposed(home: Path, seed: int, lanes: int) -> list[tuple[Any, ...]]:
    settings = load_settings(
        flags={
            "home": str(home),
            "run": {"task": "mqar", "trials": 9, "lanes": lanes, "seed": seed},
            "tasks": {"mqar": TINY_MQAR},
        },
        environ={},
    )
    run_id = discover(settings, QUIET, ScoredByCode())
    candidates = open_memory(settings.home_dir).candidates(run_id)
    return sorted((c["step"], c["origin"], c["genome_key"], c["score"]) for c in candidates)


@pytest.mark.parametrize("lanes", [1, 2])
def test_the_same_seed_proposes_the_same_candidates_in_fresh_homes(
    tmp_path: Path, lanes: int
) -> None:
    first = _proposed(tmp_path / "a", seed=7, lanes=lanes)
    assert len(first) == 9 and len({key for _, _, key, _ in first}) == 9
    assert _proposed(tmp_path / "b", seed=7, lanes=lanes) == first
    assert _proposed(tmp_path / "c", seed=8, lanes=lanes) != first
