"""Early stopping: a proposal's proxy trial ends once its held-out curve cannot reach the
score it must beat. From the best value it has reached, every metric of the curve is
assumed to keep improving at `SLACK` times the fastest rate per checkpoint that any whole
curve of this task has shown (a curve jumps from chance to solved suddenly on recall
tasks: the fastest jump seen is the yardstick, and twice it a margin); the trial stops
when even that cannot carry it to the target.

No rule ranks a curve by the curves that led it early: on MQAR the 5x finds (a short
convolution before attention) trail the baseline until a third of the budget, then jump
past it (tests/test_early_stop.py keeps their curves). A stopped curve is recorded as
stopped with its partial curve, and never accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

import numpy as np

from archlab.eval.fitness import Fitness
from archlab.tasks.base import Budget, TokenData, TokenTask

#: how much faster than the fastest curve seen a candidate is assumed able to learn
SLACK = 2.0
#: no decision before this share of the checkpoints: a curve's first points say little
MIN_SHARE = 0.25

Curve = Sequence[dict[str, float]]


def fastest_rates(curves: Iterable[Curve], higher_is_better: bool) -> dict[str, float]:
    """Per metric, the largest improvement between two consecutive checkpoints of any of
    `curves` (improvement: up when higher is better, down otherwise)."""
    sign = 1.0 if higher_is_better else -1.0
    rates: dict[str, float] = {}
    for curve in curves:
        for before, after in pairwise(curve):
            for key, value in after.items():
                if key != "step" and isinstance(before.get(key), (int, float)):
                    gain = sign * (value - before[key])
                    rates[key] = max(rates.get(key, 0.0), gain)
    return rates


def _where(step: int, taken: int, budget: Budget) -> str:
    if budget.seconds:
        return f"step {step}, checkpoint {taken} of {budget.checkpoints} ({budget.seconds:g} s)"
    return f"step {step} of {budget.steps}"


@dataclass(frozen=True)
class EarlyStop:
    """The stop rule of one proxy trial (sandbox.trial.StopRule): called with the
    checkpoints so far, it says why to stop, or None.

    `data` needs only the held-out set; `target` is the score to beat and `target_name`
    says what it is (e.g. "the baseline's mean 0.0956"); `curves` are the task's whole
    held-out curves so far."""

    task: TokenTask
    data: TokenData
    fitness: Fitness
    budget: Budget
    n_params: int
    target: float
    target_name: str
    curves: Sequence[Curve]

    @cached_property
    def rates(self) -> dict[str, float]:
        return fastest_rates(self.curves, self.fitness.higher_is_better)

    def bound(self, curve: Curve) -> float:
        """The best score `curve` (a partial one) could still end with."""
        sign = 1.0 if self.fitness.higher_is_better else -1.0
        keys = [k for k in curve[-1] if k != "step"]
        best = {k: sign * max(sign * point[k] for point in curve) for k in keys}
        missing = self.budget.checkpoints - len(curve)
        extrapolated = [
            {k: best[k] + sign * SLACK * self.rates.get(k, 0.0) * j for k in keys}
            for j in range(1, missing + 1)
        ]
        values = self.task.curve_metrics([*curve, *extrapolated])
        return self.fitness.score(values, self.n_params, 0.0)

    def __call__(self, checkpoints: list[tuple[int, np.ndarray]]) -> str | None:
        if not self.decides(len(checkpoints)):
            return None
        return self.verdict(self.task.metrics(checkpoints, self.data).curve)

    def decides(self, checkpoints: int) -> bool:
        """Whether the rule judges a trial that has reported this many checkpoints: not
        before a share of them, nor once it is done (its score is its own)."""
        total = self.budget.checkpoints
        return bool(self.rates) and max(2, MIN_SHARE * total) <= checkpoints < total

    def verdict(self, curve: Curve) -> str | None:
        """Why to stop a trial whose held-out curve so far is `curve`, or None."""
        where = _where(int(curve[-1]["step"]), len(curve), self.budget)
        bound = self.bound(curve)
        if bound < self.target:
            return (
                f"stopped at {where}: learning {SLACK:g}x as fast as any curve of this task "
                f"so far, it would score at most {bound:.4f}, below {self.target_name}"
            )
        return None
