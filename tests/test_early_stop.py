"""Early stopping of proxy trials: the bound on a partial curve (eval.stopping), and a real
trial that its stop rule ends, with the checkpoints the harness streamed so far."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from archlab.eval.fitness import Fitness
from archlab.eval.stats import difference
from archlab.eval.stopping import MIN_SHARE, EarlyStop, fastest_rates
from archlab.roles.ladder import promotion_bar
from archlab.sandbox.basic import BasicLauncher
from archlab.sandbox.process import MAX_RECORD_BYTES, RECORD_PREFIX, _CappedLog
from archlab.sandbox.trial import run_trial
from archlab.tasks.base import Budget
from archlab.tasks.mqar import MQAR
from support import EMBED, TINY_MQAR, _predictions

TASK = MQAR(**TINY_MQAR)
DATA = TASK.data(0)
BUDGET = Budget(steps=80, batch_size=8, eval_every=10, time_limit_s=60)  # 8 checkpoints


def _rule(target: float, rate: float | None = None, curves: tuple = ()) -> EarlyStop:
    """The rule with `curves` seen, or with one short curve whose accuracy rose by `rate`."""
    if rate is not None:
        curves = ([{"step": 10, "accuracy": 0.0}, {"step": 20, "accuracy": rate}],)
    return EarlyStop(
        task=TASK, data=DATA, fitness=Fitness.for_task(TASK), budget=BUDGET, n_params=1000,
        target=target, target_name=f"the baseline's mean {target:.4f}", curves=curves,
    )  # fmt: skip


def _curve(accuracies: list[float]) -> list[dict[str, float]]:
    return [{"step": 10 * (i + 1), "accuracy": a} for i, a in enumerate(accuracies)]


def _checkpoints(accuracies: list[float]) -> list[tuple[int, np.ndarray]]:
    vocab = TASK.spec["vocab_size"]
    return [
        (BUDGET.eval_every * (i + 1), _predictions(DATA.eval_y, a, vocab))
        for i, a in enumerate(accuracies)
    ]


def test_fastest_rates_are_the_largest_gain_between_checkpoints_in_the_better_direction() -> None:
    curves = [
        [{"step": 1, "accuracy": 0.1, "loss": 3.0}, {"step": 2, "accuracy": 0.4, "loss": 2.0}],
        [{"step": 1, "accuracy": 0.0, "loss": 2.5}, {"step": 2, "accuracy": 0.2, "loss": 0.5}],
    ]
    assert fastest_rates(curves, higher_is_better=True) == pytest.approx(
        {"accuracy": 0.3, "loss": 0.0}
    )
    assert fastest_rates(curves, higher_is_better=False)["loss"] == pytest.approx(2.0)


def test_a_flat_curve_is_stopped_once_even_twice_the_fastest_learning_cannot_catch_up() -> None:
    rule = _rule(target=0.5, rate=0.05)
    assert BUDGET.checkpoints == 8
    first = int(max(2, MIN_SHARE * 8))
    assert rule(_checkpoints([0.0] * (first - 1))) is None  # too early to tell
    # at 0 after 2 of 8: six more at +0.1 each reach an area of 2.1 / 8 < 0.5
    reason = rule(_checkpoints([0.0] * first))
    assert reason is not None and reason.startswith(f"stopped at step {10 * first} of 80")
    assert "below the baseline's mean 0.5000" in reason


def test_a_curve_that_could_still_catch_up_trains_on() -> None:
    # the same start, but the task has seen curves jump by 0.4 a checkpoint
    assert _rule(target=0.5, rate=0.4)(_checkpoints([0.0, 0.0])) is None
    # already above the target
    assert _rule(target=0.3, rate=0.0)(_checkpoints([0.4, 0.4])) is None


def test_no_rule_decides_without_a_whole_curve_to_learn_from_nor_on_the_last_checkpoint() -> None:
    assert _rule(target=0.9)(_checkpoints([0.0] * 4)) is None
    assert _rule(target=0.9, rate=0.0)(_checkpoints([0.0] * 8)) is None


def test_the_bound_extrapolates_from_the_best_value_reached() -> None:
    rule = _rule(target=0.5, rate=0.1)
    curve = [{"step": 10, "accuracy": 0.3}, {"step": 20, "accuracy": 0.1}]
    # from 0.3: 0.5, 0.7, ... 1.5 over the six missing checkpoints (2x the rate of 0.1)
    expected = (0.3 + 0.1 + sum(0.3 + 0.2 * j for j in range(1, 7))) / 8
    assert rule.bound(curve) == pytest.approx(expected)


# Held-out accuracy at the 8 checkpoints of the default MQAR's proxy (seed 0), measured
BASELINE = (  # 2 x (attention + MLP), 1 head, on 3 seeds
    [0.01, 0.01, 0.06, 0.07, 0.08, 0.09, 0.09, 0.09],
    [0.01, 0.01, 0.06, 0.08, 0.1, 0.1, 0.1, 0.11],
    [0.01, 0.02, 0.07, 0.08, 0.1, 0.1, 0.11, 0.11],
)
DUDS = (  # other edits of it
    [0.01] * 8,
    [0.01] * 5 + [0.02] * 3,
    [0.01, 0.01, 0.0, 0.04, 0.06, 0.09, 0.09, 0.1],
    [0.01, 0.02, 0.06, 0.1, 0.12, 0.14, 0.14, 0.14],
)
FINDS = (
    [0.01, 0.01, 0.02, 0.07, 0.54, 0.9, 0.98, 1.0],  # a short convolution added first
    [0.01, 0.01, 0.06, 0.25, 0.96, 0.99, 1.0, 1.0],  # the first block's mixer made one
)


def test_a_find_that_trails_the_baseline_until_it_jumps_is_never_stopped() -> None:
    """The 5x finds on MQAR stand at or below the baseline's curves, and every dud's,
    until a third of the budget: a rule that ranked them there would stop them all."""
    rule = _rule(target=0.11, curves=tuple(map(_curve, BASELINE + DUDS)))
    for find in FINDS:
        assert [rule.verdict(_curve(find[:n])) for n in range(2, 8)] == [None] * 6
    assert rule.verdict(_curve(DUDS[0][:6])) is not None  # while a flat dud stops


HOSTILE_RECORDS = (
    EMBED
    + """
def build_model(spec):
    # records the harness did not write: malformed, off the schedule, of the wrong shape
    for line in ['{"step": 5', '{"step": 3, "outputs": {}}', '{"step": 16, "outputs": 1}']:
        print("\\x1earchlab-record " + line, flush=True)
    print("the candidate's own output", flush=True)
    return Model(spec)
"""
)


@pytest.mark.parametrize("stop_after", [2, None])
def test_a_stop_rule_ends_a_real_trial_with_the_checkpoints_streamed_so_far(
    tmp_path: Path, stop_after: int | None
) -> None:
    seen: list[list[int]] = []

    def rule(checkpoints: list[tuple[int, np.ndarray]]) -> str | None:
        seen.append([step for step, _ in checkpoints])
        return "hopeless" if len(checkpoints) == stop_after else None

    budget = replace(BUDGET, steps=40, eval_every=8)
    report = run_trial(
        launcher=BasicLauncher(), trial_dir=tmp_path / "trial", task=TASK, data=DATA,
        source=textwrap.dedent(HOSTILE_RECORDS), stage="proxy", seed=0, threads=1,
        memory_bytes=4 * 2**30, budget=budget, stop=rule,
    )  # fmt: skip
    # the forged records were ignored: the rule saw the harness's checkpoints only
    assert all(steps == [8, 16, 24, 32, 40][: len(steps)] for steps in seen)
    if stop_after is None:
        assert (report.status, report.exit_reason) == ("ok", "ok")
        assert [step for step, _ in report.checkpoints] == [8, 16, 24, 32, 40]
    else:
        assert (report.status, report.exit_reason, report.message) == (
            "stopped", "stopped", "hopeless"
        )  # fmt: skip
        assert [step for step, _ in report.checkpoints] == [8, 16]
    assert "the candidate's own output" in report.log_tail
    assert "archlab-record" not in report.log_tail  # records never reach the log


def test_records_are_taken_out_of_the_output_wherever_the_pipe_cuts_them(tmp_path: Path) -> None:
    records: list[bytes] = []
    stream = b"text 1\n" + RECORD_PREFIX + b'{"step": 8}\ntext 2\n' + RECORD_PREFIX + b"[2]\n"
    for cut in range(len(stream)):  # every split of the stream into two reads
        records.clear()
        log = _CappedLog(tmp_path / "log.txt", 2**20, 2**10, on_record=records.append)
        log.write(stream[:cut])
        log.write(stream[cut:])
        assert (records, log.close()) == ([b'{"step": 8}', b"[2]"], "text 1\ntext 2\n")


def test_a_record_too_long_to_be_one_is_logged_as_text(tmp_path: Path) -> None:
    records: list[bytes] = []
    log = _CappedLog(tmp_path / "log.txt", cap=2**20, tail_bytes=64, on_record=records.append)
    log.write(RECORD_PREFIX + b"x" * (MAX_RECORD_BYTES + 1))
    log.write(b"\nafter\n")
    assert records == [] and log.close().endswith("xxx\nafter\n")


def test_the_promotion_bar_is_where_seeds_scoring_as_the_proxy_would_be_accepted() -> None:
    seeds = [0.068, 0.110, 0.109]  # the default MQAR baseline's, as measured
    bar, what = promotion_bar(("the baseline", seeds), confirm_seeds=3)
    # 3 seeds at the bar, with the baseline's spread, give an interval just above zero
    assert difference([bar - 1e-3, bar, bar + 1e-3], seeds).low == pytest.approx(0, abs=0.01)
    assert what == f"{bar:.4f}, what 3 seeds need to beat the baseline's mean 0.0957"
    assert promotion_bar(("parent a", [0.5, 0.5]), 3)[0] == 0.5  # no spread: its mean
    assert promotion_bar(("parent a", [0.4]), 3) == (0.4, "parent a's mean 0.4000")
