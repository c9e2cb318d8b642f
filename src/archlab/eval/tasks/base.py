"""The task API: what candidates are judged on.

A task owns its data, the model contract, a fixed training recipe, per-stage budgets
and the scoring. Data is generated on the trusted side; held-out targets never leave it.
"""

from __future__ import annotations

import abc
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Budget:
    """One stage's training budget. Steps, not seconds: cores here are shared and noisy."""

    steps: int
    batch_size: int
    eval_every: int
    time_limit_s: float


@dataclass(frozen=True)
class Recipe:
    """The fixed training recipe every candidate of a task gets."""

    lr: float = 3e-3
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    warmup_steps: int = 50


@dataclass(frozen=True)
class TokenData:
    """Training pairs go into the sandbox; of the held-out set only the inputs do."""

    train_x: np.ndarray
    train_y: np.ndarray
    eval_x: np.ndarray
    eval_y: np.ndarray


@dataclass(frozen=True)
class Score:
    score: float
    metrics: dict[str, float]
    curve: list[dict[str, float]] = field(default_factory=list)


class TokenTask(abc.ABC):
    """A sequence task: models map token ids (batch, seq_len) to logits (batch, seq_len, vocab)."""

    name: str
    description: str
    recipe: Recipe
    budgets: dict[str, Budget]
    max_params: int
    #: the metric the score is, and its direction (higher is better for every built-in)
    score_name: str

    @property
    @abc.abstractmethod
    def spec(self) -> dict[str, Any]:
        """What `build_model(spec)` sees: at least vocab_size and seq_len."""

    @abc.abstractmethod
    def data(self, data_seed: int) -> TokenData:
        """Generate (deterministically) the training and held-out data."""

    @abc.abstractmethod
    def score(self, checkpoints: list[tuple[int, np.ndarray]], eval_y: np.ndarray) -> Score:
        """Score from held-out predictions (argmax token ids) taken at training checkpoints."""

    @abc.abstractmethod
    def baseline_source(self) -> str:
        """Source of the baseline seed candidate."""

    def fingerprint(self) -> str:
        """Identifies the task's exact configuration; stored beside every score."""
        blob = json.dumps(
            {
                "name": self.name,
                "spec": self.spec,
                "recipe": asdict(self.recipe),
                "budgets": {k: asdict(v) for k, v in sorted(self.budgets.items())},
                "extra": self.fingerprint_extra(),
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def fingerprint_extra(self) -> dict[str, Any]:
        return {}
