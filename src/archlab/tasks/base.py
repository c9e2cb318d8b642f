"""The task API: what candidates are judged on.

A task owns its data, the model contract, a fixed training recipe, per-stage budgets and
its metrics. Data is generated on the trusted side; held-out targets never leave it: the
sandbox returns outputs on held-out inputs and the task computes metrics from them.

Two kinds of task share one input contract, a LongTensor of token ids (batch, seq_len):
- `sequence`: logits (batch, seq_len, vocab_size), a label per position (IGNORE_INDEX
  where no loss is taken);
- `classification`: logits (batch, num_classes), one label per sequence.
"""

from __future__ import annotations

import abc
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

__all__ = [
    "IGNORE_INDEX",
    "SMOKE_BUDGET",
    "Budget",
    "Metrics",
    "OutputKind",
    "Recipe",
    "TaskKind",
    "TokenData",
    "TokenTask",
    "accuracy_curve_metrics",
]

IGNORE_INDEX = -100

TaskKind = Literal["sequence", "classification"]
#: what a trial returns on the held-out inputs: the argmax class, or log-probabilities
#: (at the positions in TokenData.eval_positions for sequence tasks)
OutputKind = Literal["argmax", "logprobs"]


@dataclass(frozen=True)
class Budget:
    """One stage's training budget: `steps`, or with `seconds` that many seconds of training
    (measured inside the sandbox, start-up and evaluation excluded), so that a faster
    architecture gets more steps. Timed, `steps` still sets the warm-up and the number of
    checkpoints (steps / eval_every, spread evenly over the time). Steps are the default:
    on shared, noisy cores the same seconds buy different training from trial to trial."""

    steps: int
    batch_size: int
    eval_every: int
    time_limit_s: float
    seconds: float | None = None

    @property
    def checkpoints(self) -> int:
        """How many held-out checkpoints a whole trial at this budget reports."""
        if not self.eval_every:
            return 0
        return self.steps // self.eval_every + (1 if self.steps % self.eval_every else 0)

    def is_checkpoint(self, step: int, taken: int) -> bool:
        """Whether a checkpoint at `step`, after `taken` of them, is on the schedule (timed:
        any step; the harness takes them as the training clock passes each share)."""
        if self.seconds:
            return taken < self.checkpoints
        return step % self.eval_every == 0 or step == self.steps

    def identity(self) -> dict[str, Any]:
        """What a task's fingerprint holds of the budget (untimed: as before `seconds`)."""
        fields = asdict(self)
        if self.seconds is None:
            del fields["seconds"]
        return fields

    def timed(self, seconds: float) -> Budget:
        """This budget trained for `seconds` instead of its steps; the trial's time limit
        grows by as much."""
        return replace(self, seconds=seconds, time_limit_s=self.time_limit_s + seconds)


#: build, a forward and a backward pass on a tiny batch: enough to reject what cannot train
SMOKE_BUDGET = Budget(steps=2, batch_size=4, eval_every=0, time_limit_s=60)


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
    #: (n, 2) rows of (example, position) whose log-probabilities a `logprobs` task scores
    eval_positions: np.ndarray | None = None


@dataclass(frozen=True)
class Metrics:
    """A trial's metrics, computed on the trusted side, and the held-out curve behind them."""

    values: dict[str, float]
    curve: list[dict[str, float]] = field(default_factory=list)


def accuracy_curve_metrics(
    curve: list[dict[str, float]], key: str = "accuracy"
) -> dict[str, float]:
    """The final, best and mean (area under the curve) of one metric over checkpoints."""
    values = [point[key] for point in curve]
    return {key: values[-1], f"best_{key}": max(values), f"{key}_auc": float(np.mean(values))}


class TokenTask(abc.ABC):
    """A task whose candidates read token ids. Subclasses set the class attributes."""

    name: str
    description: str
    kind: TaskKind = "sequence"
    output: OutputKind = "argmax"
    #: outputs at position t may depend only on inputs up to t (checked by the ladder)
    causal: bool = True
    #: the metric that is the default fitness, and whether higher is better
    metric: str
    higher_is_better: bool = True
    recipe: Recipe
    budgets: dict[str, Budget]
    max_params: int
    #: sequence lengths at which the complexity stage times the model; None skips it
    complexity_lengths: tuple[int, ...] | None = None
    #: the largest time-growth exponent (time ~ length^e) the complexity stage accepts
    max_time_exponent: float | None = None

    @property
    @abc.abstractmethod
    def spec(self) -> dict[str, Any]:
        """What `build_model(spec)` sees: vocab_size and seq_len (and num_classes)."""

    @abc.abstractmethod
    def data(self, data_seed: int) -> TokenData:
        """Generate (deterministically) the training and held-out data."""

    @abc.abstractmethod
    def evaluate(self, outputs: np.ndarray, data: TokenData) -> dict[str, float]:
        """Metrics of one checkpoint's held-out outputs."""

    @abc.abstractmethod
    def baseline_source(self) -> str:
        """Source of the baseline seed candidate."""

    def metrics(self, checkpoints: list[tuple[int, np.ndarray]], data: TokenData) -> Metrics:
        """The curve over every checkpoint, and the metrics `curve_metrics` draws from it."""
        curve = [{"step": step, **self.evaluate(out, data)} for step, out in checkpoints]
        return Metrics(values=self.curve_metrics(curve), curve=curve)

    def curve_metrics(self, curve: list[dict[str, float]]) -> dict[str, float]:
        """A trial's metrics from its held-out curve: the last checkpoint's.

        Tasks whose metric jumps suddenly override this to score the whole curve. Early
        stopping reads it on curves extrapolated from a partial one."""
        return {k: v for k, v in curve[-1].items() if k != "step"}

    def output_shape(self, data: TokenData) -> tuple[str, tuple[int, ...]]:
        """The dtype and shape of the outputs a trial must return for `data.eval_x`."""
        n = len(data.eval_x)
        classes = self.spec["num_classes"] if self.kind == "classification" else None
        if self.output == "argmax":
            return "int32", (n,) if classes else (n, self.spec["seq_len"])
        if classes:
            return "float16", (n, classes)
        assert data.eval_positions is not None, "logprobs tasks must choose eval positions"
        return "float16", (len(data.eval_positions), self.spec["vocab_size"])

    def fingerprint(self, data_seed: int = 0) -> str:
        """Identifies the task's exact configuration, the seed of its data included;
        stored beside every score."""
        identity: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "spec": self.spec,
            "recipe": asdict(self.recipe),
            "budgets": {k: v.identity() for k, v in sorted(self.budgets.items())},
            "extra": self.fingerprint_extra(),
        }
        if data_seed:  # seed 0 keeps the fingerprints of memories older than the setting
            identity["data_seed"] = data_seed
        blob = json.dumps(identity, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def fingerprint_extra(self) -> dict[str, Any]:
        return {}
