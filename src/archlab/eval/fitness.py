"""Fitness: the one number candidates are ranked by, higher always better.

It is the task's metric (negated where lower is better) minus optional penalties for
parameters and training time; its definition is stored beside every score."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from archlab.errors import ConfigError
from archlab.tasks.base import TokenTask


@dataclass(frozen=True)
class Fitness:
    metric: str
    higher_is_better: bool
    #: subtracted per million trainable parameters
    param_penalty: float = 0.0
    #: subtracted per second of trial wall time
    latency_penalty: float = 0.0

    @classmethod
    def for_task(
        cls,
        task: TokenTask,
        metric: str | None = None,
        direction: str | None = None,
        param_penalty: float = 0.0,
        latency_penalty: float = 0.0,
    ) -> Fitness:
        higher = task.higher_is_better if direction is None else direction == "max"
        return cls(metric or task.metric, higher, param_penalty, latency_penalty)

    def score(self, metrics: dict[str, float], n_params: int, wall_time_s: float) -> float:
        try:
            value = float(metrics[self.metric])
        except KeyError:
            known = ", ".join(sorted(metrics))
            raise ConfigError(f"fitness metric '{self.metric}' is not one of: {known}") from None
        signed = value if self.higher_is_better else -value
        return signed - self.param_penalty * n_params / 1e6 - self.latency_penalty * wall_time_s

    def definition(self) -> dict[str, Any]:
        terms = [self.metric if self.higher_is_better else f"-{self.metric}"]
        if self.param_penalty:
            terms.append(f"{self.param_penalty:g} * params_millions")
        if self.latency_penalty:
            terms.append(f"{self.latency_penalty:g} * wall_seconds")
        return {**asdict(self), "expression": " - ".join(terms)}
