"""Seed statistics: means with 95% confidence intervals, and intervals of differences.

A candidate beats a reference only when the interval of the difference of their seed
scores lies above zero; one lucky seed cannot do that."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

# Two-sided 95% critical values of Student's t by degrees of freedom.
_T95_DF = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25, 30, 40, 60, 120)
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.179, 2.131,
        2.086, 2.060, 2.042, 2.021, 2.000, 1.980)  # fmt: skip
_Z95 = 1.960


def t95(df: float) -> float:
    """The 95% two-sided t quantile, conservative between tabulated degrees of freedom."""
    if df >= _T95_DF[-1]:
        return _Z95
    df = max(df, 1.0)
    i = bisect_left(_T95_DF, math.floor(df))
    return _T95[i] if _T95_DF[i] <= df else _T95[i - 1]


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def excludes_zero_above(self) -> bool:
        return self.low > 0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class SeedStats:
    n: int
    mean: float
    std: float
    ci: Interval

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "std": self.std, "ci": self.ci.to_dict()}


def summarize(values: Sequence[float]) -> SeedStats:
    n = len(values)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = sum(values) / n
    if n == 1:
        return SeedStats(1, mean, 0.0, Interval(mean, -math.inf, math.inf))
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t95(n - 1) * std / math.sqrt(n)
    return SeedStats(n, mean, std, Interval(mean, mean - half, mean + half))


def difference(a: Sequence[float], b: Sequence[float]) -> Interval:
    """Welch's 95% interval for mean(a) - mean(b); unbounded unless both have 2+ values."""
    sa, sb = summarize(a), summarize(b)
    estimate = sa.mean - sb.mean
    if sa.n < 2 or sb.n < 2:
        return Interval(estimate, -math.inf, math.inf)
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(estimate, estimate, estimate)
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    half = t95(df) * se
    return Interval(estimate, estimate - half, estimate + half)


@dataclass(frozen=True)
class Judgement:
    verdict: Literal["accept", "reject"]
    reason: str
    difference: Interval
    #: why an accepted gain is too large to take on trust (beyond the audit ratio), or None:
    #: such a candidate is audited before the verdict is final (roles.audit)
    audit: str | None = None


def gain_over(mean: float, baseline_mean: float) -> float:
    """The relative gain of `mean` over the baseline's mean; infinite over a zero baseline."""
    if baseline_mean == 0:
        return math.inf if mean > 0 else 0.0
    return (mean - baseline_mean) / abs(baseline_mean)


def judge(
    candidate: Sequence[float],
    reference: Sequence[float],
    reference_name: str,
    baseline_mean: float | None,
    audit_ratio: float,
) -> Judgement:
    """Seed-aware keep/discard: better only when the whole 95% interval of the difference
    is above zero; an accepted gain over the baseline beyond `audit_ratio` carries the reason
    it must be audited before it is trusted."""
    diff = difference(candidate, reference)
    summary = (
        f"{diff.estimate:+.4f} vs {reference_name}, 95% CI [{diff.low:+.4f}, {diff.high:+.4f}] "
        f"over {len(candidate)} and {len(reference)} seeds"
    )
    if not diff.excludes_zero_above():
        return Judgement("reject", f"not shown better: {summary}", diff)
    mean = summarize(candidate).mean
    gain = None if baseline_mean is None else gain_over(mean, baseline_mean)
    if gain is not None and gain > audit_ratio:
        return Judgement(
            "accept",
            summary,
            diff,
            audit=f"{'an unbounded gain' if math.isinf(gain) else f'a gain of {gain:.1f}x'} "
            f"over the baseline's score ({mean:.4f} against {baseline_mean:.4f}) is beyond "
            f"the audit ratio {audit_ratio:g}",
        )
    return Judgement("accept", summary, diff)
