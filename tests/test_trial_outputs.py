"""What a trial sends back beyond argmax predictions: the causality probe's logits,
complexity timings, log-probabilities and class predictions, all through the real sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archlab.eval.verify import causality_check, causality_probe
from archlab.sandbox.trial import TrialReport
from archlab.tasks.base import SMOKE_BUDGET, Budget, Recipe, TokenData, TokenTask
from archlab.tasks.mqar import MQAR
from support import NON_CAUSAL, sandbox_trial

pytestmark = pytest.mark.slow


CLASSIFIER = """
import torch
from torch import nn

def build_model(spec):
    width = 8 * spec.seq_len
    return nn.Sequential(
        nn.Embedding(spec.vocab_size, 8), nn.Flatten(), nn.Linear(width, spec.num_classes)
    )
"""


def _run(task: TokenTask, tmp_path: Path, source: str, stage: str, **extra: Any) -> TrialReport:
    return sandbox_trial(task, tmp_path / stage, source, stage, **extra)


def test_causality_probe_passes_the_baseline_and_catches_a_leak(
    tiny_task: MQAR, tmp_path: Path
) -> None:
    data = tiny_task.data(0)
    probe = causality_probe(data.train_x, tiny_task.vocab_size, n_pairs=4, seed=0)
    good = _run(tiny_task, tmp_path, tiny_task.baseline_source(), "smoke", probe_x=probe.inputs)
    assert good.status == "ok" and good.probe is not None
    assert good.probe.shape == (*probe.inputs.shape, tiny_task.vocab_size)
    assert causality_check(probe, good.probe).ok

    leaky = _run(tiny_task, tmp_path / "leaky", NON_CAUSAL, "smoke", probe_x=probe.inputs)
    assert leaky.status == "ok" and leaky.probe is not None
    assert causality_check(probe, leaky.probe).error_class == "causality"


def test_complexity_timings_come_back_per_length(tiny_task: MQAR, tmp_path: Path) -> None:
    tiny_task.complexity_lengths = (32, 64, 128)
    report = _run(tiny_task, tmp_path, tiny_task.baseline_source(), "smoke", complexity=True)
    assert report.status == "ok" and report.complexity is not None
    assert [p["length"] for p in report.complexity] == [32, 64, 128]
    assert all(p["seconds"] > 0 and p["peak_rss_mb"] > 0 for p in report.complexity)


class _Parity(TokenTask):
    """Tiny tasks for the other output kinds: label = parity of the token sum."""

    name = "parity"
    description = "parity of the token sum"
    metric = "accuracy"
    recipe = Recipe()
    max_params = 10**6

    def __init__(self, kind: str, output: str) -> None:
        self.kind, self.output = kind, output  # type: ignore[assignment]
        self.budgets = {
            "smoke": SMOKE_BUDGET,
            "proxy": Budget(steps=4, batch_size=8, eval_every=2, time_limit_s=60),
        }

    @property
    def spec(self) -> dict[str, Any]:
        return {"vocab_size": 4, "seq_len": 8, "num_classes": 2}

    def data(self, data_seed: int) -> TokenData:
        rng = np.random.default_rng(data_seed)
        x = rng.integers(0, 4, size=(64, 8))
        y = x.sum(axis=1) % 2 if self.kind == "classification" else np.cumsum(x, axis=1) % 4
        positions = np.stack([np.arange(16), np.arange(16) % 8], axis=1)
        return TokenData(x[:48], y[:48], x[48:], y[48:], positions)

    def evaluate(self, outputs: np.ndarray, data: TokenData) -> dict[str, float]:
        return {"accuracy": float(np.mean(outputs.argmax(-1) if outputs.ndim > 1 else outputs))}

    def baseline_source(self) -> str:
        return CLASSIFIER


def test_classification_outputs_one_class_per_row(tmp_path: Path) -> None:
    task = _Parity("classification", "argmax")
    report = _run(task, tmp_path, CLASSIFIER, "proxy")
    assert report.status == "ok", report.message
    assert [s for s, _ in report.checkpoints] == [2, 4]
    assert report.checkpoints[-1][1].shape == (16,) and report.checkpoints[-1][1].dtype == np.int32


def test_logprobs_come_back_at_the_asked_positions(tmp_path: Path) -> None:
    task = _Parity("sequence", "logprobs")
    report = _run(task, tmp_path, MQAR().baseline_source(), "proxy")
    assert report.status == "ok", report.message
    logprobs = report.checkpoints[-1][1]
    assert logprobs.shape == (16, 4) and logprobs.dtype == np.float16
    assert np.allclose(np.exp(logprobs.astype(np.float32)).sum(axis=1), 1.0, atol=1e-2)


def test_a_classifier_with_sequence_shaped_output_is_a_shape_error(tmp_path: Path) -> None:
    task = _Parity("classification", "argmax")
    report = _run(task, tmp_path, MQAR().baseline_source(), "proxy")
    assert (report.status, report.error_class) == ("error", "shape")
    assert "(8, 2)" in (report.message or "")
