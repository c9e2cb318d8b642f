"""The run's progress line: candidate n of N, the time left, the best so far and the stages
in flight, as the reporter draws it for a terminal (one line, cut to the width) and prints
it to a pipe (once per recorded candidate), in single-lane and lanes runs; and the stages
in flight as the memory keeps them for the web UI."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, cast

import pytest
from rich.console import Console

from archlab.config import RunSettings, load_settings
from archlab.memory import in_flight
from archlab.memory.store import MEMORY_FILE, Memory
from archlab.orchestration.budget import RunBudget
from archlab.orchestration.console import ProgressLine, Reporter
from archlab.orchestration.runs import discover, open_memory
from archlab.records import Candidate, Outcome, Verdict
from support import TINY_MQAR, FakeExecutor, Scripted

ACCEPT: Verdict = {"verdict": "accept", "reason": "better"}
REJECT: Verdict = {"verdict": "reject", "reason": "not confirmed"}
WIDTHS = (90, 72, 54, 45, 30)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _candidate(memory: Memory, cid: str, origin: str, score: float | None) -> Candidate:
    memory.save_candidate(
        candidate_id=cid, run_id="r", task="mqar", task_fingerprint="fp", source=f"# {cid}",
        source_hash=cid, parents=[], plan={"operator": origin}, brain="heuristic",
        origin=origin, status="pending",
    )  # fmt: skip
    if score is not None:
        memory.set_outcome(cid, status="ok", score=score)
    return cast(Candidate, {"candidate_id": cid, "origin": origin, "plan": {"operator": origin}})


def _ok(score: float) -> Outcome:
    return {"status": "ok", "score": score, "n_params": 1000, "wall_time_s": 1.0}


def test_the_line_counts_candidates_and_time_keeps_the_best_and_names_the_stages_in_flight(
    tmp_path: Path,
) -> None:
    memory = Memory(tmp_path / MEMORY_FILE)
    memory.start_run(run_id="r", task="mqar", task_fingerprint="fp", brain="heuristic",
                     seed=0, config={})  # fmt: skip
    # an earlier session of the run left a baseline and a scored proposal
    _candidate(memory, "base00000000", "baseline", 0.29)
    _candidate(memory, "earlier00000", "mutate", 0.25)
    budget = RunBudget(RunSettings(trials=12, minutes=5, lanes=2), memory, "r", 107.5)
    assert budget.glance()[0] == 2  # counted before a lane claims (once, "candidate 0 of 12")
    piped = io.StringIO()
    report = Reporter(Console(file=piped, width=100), budget, tmp_path / "trials")
    budget.hold(1)  # a lane resumed at a 3rd, unsaved
    assert budget.claim() is None  # the 4th candidate

    with report.running("fp"):  # a pipe: nothing live, the memory's best taken up
        assert re.fullmatch(
            r"candidate 4 of 12 · 3:1\d left · best 0\.2500 \(earlier0\), baseline 0\.2900",
            report.line(100),
        )
        report.recorded(0, _candidate(memory, "ab12cd34ef56", "mutate", None), _ok(0.31), ACCEPT)
        report.recorded(1, _candidate(memory, "low000000000", "random", None), _ok(0.2), ACCEPT)
        # a higher proxy score that was not confirmed: the accepted one stays the best
        report.recorded(0, _candidate(memory, "lucky0000000", "mutate", None), _ok(0.4), REJECT)
        failed: Outcome = {"status": "failed", "error_class": "nan", "message": "nan loss"}
        report.recorded(1, _candidate(memory, "nan000000000", "mutate", None), failed, ACCEPT)
        with (
            report.live("3a4b5c6d7e8f", "proxy", lane=0),
            report.live("9f0e1a2b3c4d", "confirm", lane=1),
        ):
            line = report.line(120)
            stages = in_flight.of_run(memory, "r")  # what the web UI reads meanwhile
            narrow = [report.line(width) for width in WIDTHS]
        after = report.line(120)
        assert in_flight.of_run(memory, "r") == []

    assert re.fullmatch(
        r"candidate 4 of 12 · 3:1\d left · best 0\.3100 \(ab12cd34\), baseline 0\.2900 · "
        r"2 in flight: 3a4b5c6d proxy, 9f0e1a2b confirm",
        line,
    )
    assert [(s["lane"], s["candidate_id"], s["stage"]) for s in stages] == [
        (0, "3a4b5c6d7e8f", "proxy"),
        (1, "9f0e1a2b3c4d", "confirm"),
    ]
    assert "in flight" not in after
    # a narrower line names the stages less, then drops them, the baseline, the time left
    assert narrow[0].endswith("baseline 0.2900 · 2 in flight")
    assert narrow[1].endswith("baseline 0.2900")
    assert re.fullmatch(r"candidate 4 of 12 · 3:1\d left · best 0\.3100 \(ab12cd34\)", narrow[2])
    assert narrow[3:] == [
        "candidate 4 of 12 · best 0.3100 (ab12cd34)",
        "candidate 4 of 12 · best 0.31…",
    ]
    assert all(len(n) <= w for n, w in zip(narrow, WIDTHS, strict=True))
    # a pipe got one progress line per recorded candidate, and no more
    progress = [ln for ln in piped.getvalue().splitlines() if ln.startswith("progress: ")]
    assert len(progress) == 4 and "best 0.3100 (ab12cd34)" in progress[-1]


def test_a_terminal_draws_one_line_that_fits_its_width(tmp_path: Path) -> None:
    memory = Memory(tmp_path / MEMORY_FILE)
    memory.start_run(run_id="r", task="mqar", task_fingerprint="fp", brain="heuristic",
                     seed=0, config={})  # fmt: skip
    budget = RunBudget(RunSettings(trials=3), memory, "r")
    terminal = Console(file=io.StringIO(), width=48, force_terminal=True, record=True)
    report = Reporter(terminal, budget, tmp_path / "trials")
    assert budget.claim() is None
    report.recorded(0, _candidate(memory, "ab12cd34ef56", "mutate", None), _ok(0.5), ACCEPT)
    terminal.export_text()  # the outcome's line: a terminal gets no printed progress line
    with report.live("9f0e1a2b3c4d", "verify"):
        terminal.print(ProgressLine(report))
    (drawn,) = terminal.export_text().splitlines()
    assert len(drawn) <= 48 and drawn[2:].startswith("candidate 1 of 3 · best 0.5000 (ab12cd34)")
    assert drawn[2:] == report.line(46)


def _settings(tmp_path: Path, **run: Any) -> Any:
    return load_settings(
        flags={
            "home": str(tmp_path / "home"),
            "run": {"task": "mqar", "trials": 5, **run},
            "tasks": {"mqar": TINY_MQAR},
        },
        environ={},
    )


@pytest.mark.parametrize("lanes", [1, 2])
def test_a_piped_run_prints_a_progress_line_as_each_candidate_is_recorded(
    tmp_path: Path, lanes: int
) -> None:
    settings = _settings(tmp_path, lanes=lanes)
    piped = io.StringIO()
    run_id = discover(settings, Console(file=piped, width=100), FakeExecutor({3: Scripted(0.75)}))

    lines = piped.getvalue().splitlines()
    progress = [ln for ln in lines if ln.startswith("progress: ")]
    assert len(progress) == 5  # one per candidate, nothing live
    assert all(re.match(r"progress: candidate [1-5] of 5 · ", ln) for ln in progress)
    assert all(len(ln) <= 100 for ln in progress)
    best = open_memory(settings.home_dir).best_of_run(run_id)
    assert best is not None and best["score"] == 0.75
    assert f"best 0.7500 ({best['candidate_id'][:8]}), baseline 0.5000" in progress[-1]
    assert "\x1b" not in piped.getvalue()  # no spinner, no cursor codes
    assert in_flight.of_run(open_memory(settings.home_dir), run_id) == []


def test_a_terminal_run_with_lanes_follows_it_on_one_line(tmp_path: Path) -> None:
    settings = _settings(tmp_path, lanes=2, minutes=10)
    terminal = io.StringIO()
    console = Console(file=terminal, width=80, force_terminal=True)
    discover(settings, console, FakeExecutor({3: Scripted(0.75)}))

    drawn = [ANSI.sub("", part) for part in re.split(r"[\r\n]", terminal.getvalue())]
    live = [part for part in drawn if re.match(r". candidate \d of 5 · \d:\d\d left", part)]
    assert live and all(len(part) <= 80 for part in live)
    assert not any(part.startswith("progress: ") for part in drawn)  # that is for pipes


def test_a_run_without_a_trial_limit_counts_its_candidates_alone(tmp_path: Path) -> None:
    memory = Memory(tmp_path / MEMORY_FILE)
    memory.start_run(run_id="r", task="mqar", task_fingerprint="fp", brain="heuristic",
                     seed=0, config={})  # fmt: skip
    budget = RunBudget(RunSettings(trials=0, minutes=5), memory, "r")
    report = Reporter(Console(file=io.StringIO(), width=100), budget, tmp_path / "trials")
    assert budget.claim() is None
    with report.running("fp"):
        assert re.fullmatch(r"candidate 1 · [45]:\d\d left · no score yet", report.line(100))
