import math

import numpy as np
import pytest

from archlab.errors import ConfigError
from archlab.eval.fitness import Fitness
from archlab.eval.stats import difference, summarize, t95
from archlab.eval.verify import (
    causality_check,
    causality_probe,
    complexity_check,
    time_exponent,
)
from archlab.tasks.mqar import MQAR


def test_t_quantiles_are_conservative_between_table_rows() -> None:
    assert t95(2) == pytest.approx(4.303)
    assert t95(11.7) == pytest.approx(2.228)  # uses df 10's larger value
    assert t95(10_000) == pytest.approx(1.96)


def test_summary_interval_contains_the_mean_and_shrinks_with_agreement() -> None:
    loose, tight = summarize([0.1, 0.3, 0.2]), summarize([0.19, 0.21, 0.2])
    assert loose.mean == pytest.approx(0.2) and tight.mean == pytest.approx(0.2)
    assert loose.ci.low < tight.ci.low < 0.2 < tight.ci.high < loose.ci.high
    single = summarize([0.5])
    assert single.ci.low == -math.inf and single.ci.high == math.inf


def test_one_lucky_seed_does_not_make_a_difference() -> None:
    baseline = [0.10, 0.11, 0.09]
    lucky = [0.30, 0.08, 0.10]  # one great seed, two ordinary ones
    steady = [0.20, 0.21, 0.19]
    assert not difference(lucky, baseline).excludes_zero_above()
    assert difference(steady, baseline).excludes_zero_above()
    assert not difference([0.3], baseline).excludes_zero_above()  # one seed proves nothing


def test_fitness_direction_and_penalties() -> None:
    task = MQAR()
    plain = Fitness.for_task(task)
    assert plain.score({"accuracy_auc": 0.4}, 10**6, 30) == pytest.approx(0.4)
    penalised = Fitness.for_task(task, param_penalty=0.1, latency_penalty=0.001)
    assert penalised.score({"accuracy_auc": 0.4}, 2 * 10**6, 30) == pytest.approx(0.4 - 0.2 - 0.03)
    assert "0.1 * params_millions" in penalised.definition()["expression"]
    lower = Fitness.for_task(task, metric="accuracy", direction="min")
    assert lower.score({"accuracy": 0.4}, 0, 0) == pytest.approx(-0.4)
    with pytest.raises(ConfigError, match="not one of"):
        Fitness.for_task(task, metric="nope").score({"accuracy": 0.4}, 0, 0)


def _causal_logits(inputs: np.ndarray, vocab: int) -> np.ndarray:
    """Logits from a running sum of the inputs: depends only on the past."""
    running = np.cumsum(inputs, axis=1).astype(np.float32)
    return np.repeat(running[:, :, None], vocab, axis=2) / 100


def test_causality_probe_pairs_differ_only_in_the_future() -> None:
    rows = np.random.default_rng(0).integers(0, 50, size=(40, 16))
    probe = causality_probe(rows, vocab_size=50, n_pairs=5, seed=1)
    assert len(probe.pairs) == 5 and len(probe.inputs) == 15  # 5 pairs mixed with 5 singles
    for a, b, t in probe.pairs:
        assert np.array_equal(probe.inputs[a, : t + 1], probe.inputs[b, : t + 1])
        assert (probe.inputs[a, t + 1 :] != probe.inputs[b, t + 1 :]).all()


def test_causality_check_tells_causal_from_leaky() -> None:
    rows = np.random.default_rng(0).integers(0, 50, size=(40, 16))
    probe = causality_probe(rows, vocab_size=50, n_pairs=5, seed=1)
    assert causality_check(probe, _causal_logits(probe.inputs, 8)).ok
    leaky = _causal_logits(probe.inputs[:, ::-1], 8)  # sums from the end: sees the future
    check = causality_check(probe, leaky)
    assert (check.ok, check.error_class) == (False, "causality")
    assert "sees the future" in (check.message or "")


def test_time_exponent_and_complexity_check() -> None:
    linear = [{"length": n, "seconds": 1e-4 * n} for n in (128, 256, 512)]
    quadratic = [{"length": n, "seconds": 1e-7 * n * n} for n in (128, 256, 512)]
    assert time_exponent(linear) == pytest.approx(1.0)
    assert time_exponent(quadratic) == pytest.approx(2.0)
    assert complexity_check(linear, 1.5).ok
    failed = complexity_check(quadratic, 1.5)
    assert failed.error_class == "complexity" and "length^2.00" in (failed.message or "")


def test_judge_accepts_only_a_confirmed_gain_and_asks_to_audit_a_too_good_one() -> None:
    from archlab.eval.stats import judge

    baseline = [0.10, 0.11, 0.09]
    assert judge([0.30, 0.08, 0.10], baseline, "the baseline", 0.10, 3.0).verdict == "reject"
    accepted = judge([0.20, 0.21, 0.19], baseline, "the baseline", 0.10, 3.0)
    assert accepted.verdict == "accept" and "95% CI" in accepted.reason
    assert accepted.audit is None
    flagged = judge([0.90, 0.91, 0.92], baseline, "the baseline", 0.10, 3.0)
    assert flagged.verdict == "accept"  # by the statistics; the audit decides
    assert flagged.audit and "8.1x" in flagged.audit and "audit ratio 3" in flagged.audit
    # over a baseline at exactly zero (chance, at a tiny budget) any gain is too good
    at_zero = judge([0.90, 0.91, 0.92], [0.0, 0.01, 0.0], "the baseline", 0.0, 3.0)
    assert at_zero.verdict == "accept" and at_zero.audit and "unbounded gain" in at_zero.audit
