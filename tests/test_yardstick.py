"""The yardstick a run is compared with: the planner's random samples of the genome space,
shared by every run of the task fingerprint, never the compared candidate nor a brain's
own random restarts; and the run's conclusion, in `show --json` and in words. Trials are
answered at once by FakeExecutor (the first candidate of a fresh run is the baseline,
then proposals on odd steps and random samples on even ones while fewer than 8 exist)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from archlab.config import Settings, load_settings
from archlab.memory.store import Memory
from archlab.orchestration.runs import discover, open_memory
from archlab.report import html_report
from archlab.roles.ladder import conclusion
from support import TINY_MQAR, FakeExecutor, Scripted, archlab

QUIET = Console(quiet=True)


def _settings(home: Path, **run: Any) -> Settings:
    # random_rate 1: every proposal of the heuristic brain is a random restart (operator
    # "random", origin "proposed"), which the yardstick must tell from its samples
    return load_settings(
        flags={
            "home": str(home),
            "run": {"task": "mqar", "lanes": 1, **run},  # the script numbers candidates in order
            "tasks": {"mqar": TINY_MQAR},
            "search": {"random_rate": 1.0},
        },
        environ={},
    )


def _in_order(memory: Memory, run_id: str) -> list[dict[str, Any]]:
    return sorted(memory.candidates(run_id), key=lambda c: c["created_at"])


def _proxy(memory: Memory, candidate: dict[str, Any]) -> float:
    """The candidate's proxy score (its first seed)."""
    return memory.seed_scores(candidate["candidate_id"])[0]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_the_yardstick_is_eight_random_samples_never_proposals_and_later_runs_reuse_them(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    # ordinals: 1 the baseline (0.5), 2..16 even proposals, 3..17 odd the 8 random samples
    samples = [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.2]
    script = {
        2: Scripted(score=0.75),  # the best: confirmed on 3 seeds, accepted
        **{n: Scripted(score=0.45) for n in range(4, 17, 2)},  # random restarts, rejected
        **{3 + 2 * i: Scripted(score=s) for i, s in enumerate(samples)},
    }
    first = discover(_settings(home, trials=17, minutes=10), QUIET, FakeExecutor(script))

    memory = open_memory(home)
    candidates = _in_order(memory, first)
    baseline, best = candidates[0], candidates[1]
    drawn = [c for c in candidates if c["origin"] == "random"]
    restarts = [c for c in candidates if c["origin"] == "proposed"]
    assert len(drawn) == 8 and all(c["plan"]["operator"] == "random" for c in drawn)
    assert len(restarts) == 8 and all(c["plan"]["operator"] == "random" for c in restarts)
    yardstick = memory.random_samples(baseline["task_fingerprint"])
    assert list(yardstick) == [c["candidate_id"] for c in drawn]  # no proposal among them

    summary = memory.get_run(first)["summary"]
    assert summary["improved"] is True and summary["best_id"] == best["candidate_id"]
    assert memory.verdict(best["candidate_id"])["verdict"] == "accept"
    best_seeds = memory.seed_scores(best["candidate_id"])
    baseline_seeds = memory.seed_scores(baseline["candidate_id"])
    assert len(best_seeds) == len(baseline_seeds) == 3
    vs_random, vs_baseline = summary["vs_random"], summary["vs_baseline"]
    random_mean = _mean([_proxy(memory, c) for c in drawn])
    assert vs_random["samples"] == 8 and vs_random["mean"] == pytest.approx(random_mean)
    assert vs_random["diff"] == pytest.approx(_mean(best_seeds) - random_mean)
    assert vs_baseline["diff"] == pytest.approx(_mean(best_seeds) - _mean(baseline_seeds))
    for d in (vs_random, vs_baseline):
        assert math.isfinite(d["lo"]) and math.isfinite(d["hi"])
        assert d["lo"] <= d["diff"] <= d["hi"]
    assert vs_random["lo"] > 0  # 0.75 on every seed against samples of 0.1 to 0.4
    assert summary["sentence"] == (
        f"found: candidate {best['candidate_id']} is {vs_baseline['diff']:+.4f} over the "
        f"baseline (95% CI {vs_baseline['lo']:+.4f} to {vs_baseline['hi']:+.4f}) and "
        f"{vs_random['diff']:+.4f} over random sampling (95% CI {vs_random['lo']:+.4f} to "
        f"{vs_random['hi']:+.4f}, 8 samples)"
    )

    # show --json: the keys scripts read, finite; the time as the budget counts it
    board = _strict_json(archlab(tmp_path, "show", first, "--json").stdout)
    shown = board["summary"]
    assert {"improved", "best_id", "vs_baseline", "vs_random", "elapsed_s", "budget_s"} <= set(
        shown
    )
    assert {"diff", "lo", "hi"} <= set(shown["vs_baseline"])
    assert {"diff", "lo", "hi", "samples"} <= set(shown["vs_random"])
    assert (shown["improved"], shown["best_id"]) == (True, best["candidate_id"])
    assert shown["vs_random"] == vs_random and shown["budget_s"] == 600
    assert shown["elapsed_s"] == memory.get_run(first)["elapsed_s"] > 0
    # the leaderboard ends with the sentence (wrapped at 80 columns), and the report says it
    printed = archlab(tmp_path, "show", first).stdout
    assert " ".join(printed.split()).endswith(" ".join(summary["sentence"].split()))
    page = html_report(memory, first)
    assert summary["sentence"] in page
    assert f"vs random sampling:\n{vs_random['diff']:+.4f} (95% CI " in page

    # A second run of the same task fingerprint draws no sample: it has its 8
    second = discover(_settings(home, trials=4), QUIET, FakeExecutor())
    later = memory.candidates(second)
    assert len(later) == 4 and {c["origin"] for c in later} == {"proposed"}
    again = memory.get_run(second)["summary"]
    assert again["improved"] is False
    assert (again["vs_random"]["samples"], again["vs_random"]["mean"]) == (
        8, pytest.approx(random_mean),
    )  # fmt: skip
    assert again["sentence"].startswith(
        "nothing found: no candidate beat the baseline on confirmed seeds; the best, "
    )
    assert "over random sampling (one seed: no interval, 8 samples)" in again["sentence"]
    assert again["budget_s"] is None  # no time limit


def test_a_random_sample_that_is_the_best_is_not_its_own_yardstick(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # ordinals: 1 the baseline, 2, 4, 6 proposals (0.5: not above the baseline), 3, 5, 7
    # random samples, the first of them the best
    script = {3: Scripted(score=0.8), 5: Scripted(score=0.2), 7: Scripted(score=0.3)}
    run_id = discover(_settings(home, trials=7), QUIET, FakeExecutor(script))

    memory = open_memory(home)
    candidates = _in_order(memory, run_id)
    best, others = candidates[2], [candidates[4], candidates[6]]
    assert [c["origin"] for c in (best, *others)] == ["random"] * 3
    summary = memory.get_run(run_id)["summary"]
    assert summary["improved"] is True and summary["best_id"] == best["candidate_id"]
    assert summary["best"]["origin"] == "random"
    vs_random = summary["vs_random"]
    assert vs_random["samples"] == 2  # the other two
    assert vs_random["mean"] == pytest.approx(_mean([_proxy(memory, c) for c in others]))
    assert math.isfinite(vs_random["lo"]) and math.isfinite(vs_random["hi"])
    assert summary["sentence"].startswith(
        f"found: candidate {best['candidate_id']} (a random sample) is +"
    )
    assert summary["sentence"].endswith(", 2 other samples)")


def test_with_fewer_than_two_samples_the_yardstick_says_it_is_not_ready(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # the baseline, a proposal at the baseline's score, one random sample below it
    run_id = discover(_settings(home, trials=3), QUIET, FakeExecutor({3: Scripted(score=0.3)}))

    memory = open_memory(home)
    _, proposal, sample = _in_order(memory, run_id)
    summary = memory.get_run(run_id)["summary"]
    assert summary["improved"] is False and summary["best_id"] == proposal["candidate_id"]
    assert summary["vs_random"] == {
        "diff": None, "lo": None, "hi": None, "mean": pytest.approx(_proxy(memory, sample)),
        "samples": 1, "wanted": 8, "ready": False,
    }  # fmt: skip
    assert summary["vs_baseline"]["lo"] is None  # the best has one seed: no interval
    assert summary["sentence"] == (
        "nothing found: no candidate beat the baseline on confirmed seeds; the best, "
        f"{proposal['candidate_id']}, scored 0.5000 on 1 seed and is +0.0000 over the "
        "baseline (one seed: no interval); random sampling is not ready as a yardstick "
        "(1 sample of the 8 wanted; an interval needs 2)"
    )
    page = html_report(memory, run_id)
    assert "not compared: the yardstick is not ready (1 of 8 samples; an interval needs 2)" in page


def _summary(**fields: Any) -> dict[str, Any]:
    d = {"diff": 0.2, "lo": 0.1, "hi": 0.3, "mean": 0.5}
    return {
        "improved": True,
        "best_id": "abc",
        "best": {
            "candidate_id": "abc",
            "origin": "proposed",
            "score": 0.7,
            "seeds": 3,
            "accepted": True,
            "verdict": "accept",
        },
        "vs_baseline": {**d, "seeds": 3},
        "vs_random": {
            **d,
            "diff": -0.05,
            "lo": -0.1,
            "hi": 0.0,
            "samples": 8,
            "wanted": 8,
            "ready": True,
        },
        **fields,
    }


def test_the_conclusion_in_words() -> None:
    assert conclusion(_summary()) == (
        "found: candidate abc is +0.2000 over the baseline (95% CI +0.1000 to +0.3000) and "
        "0.0500 below random sampling (95% CI -0.1000 to +0.0000, 8 samples)"
    )
    short = _summary()  # a run too short to have drawn them all
    short["vs_random"]["samples"] = 3
    assert conclusion(short).endswith("(95% CI -0.1000 to +0.0000, 3 of 8 samples)")
    assert "is not compared with the baseline (no scores to compare) and" in conclusion(
        _summary(vs_baseline=None)
    )
    switched_off = _summary(improved=False)
    switched_off["vs_random"].update(diff=None, lo=None, hi=None, samples=0, wanted=0, ready=False)
    assert conclusion(switched_off).endswith(
        "; no yardstick: random_samples is 0 (an interval needs 2)"
    )
    assert conclusion(_summary(best=None, best_id=None, improved=False)) == (
        "nothing found: no candidate besides the baseline trained in full"
    )
