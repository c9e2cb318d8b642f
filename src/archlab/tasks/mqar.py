"""MQAR: multi-query associative recall (Zoology semantics).

Each sequence lists key-value pairs (keys from the lower half of the vocabulary, values
from the upper), then queries the keys again at power-law distributed distances; the model
must emit the value at the position of each queried key. Loss and accuracy count only those
answer positions. Every other position holds a random token.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
from pydantic import ConfigDict, validate_call

from archlab.tasks.base import (
    IGNORE_INDEX,
    SMOKE_BUDGET,
    Budget,
    Recipe,
    TokenData,
    TokenTask,
    accuracy_curve_metrics,
)


def _sample_without_replacement(
    rng: np.random.Generator, n: int, logp: np.ndarray, k: int
) -> np.ndarray:
    """k distinct indices per row, drawn with probabilities exp(logp) (Gumbel top-k)."""
    keys = logp[None, :] + rng.gumbel(size=(n, logp.shape[0]))
    return np.argsort(-keys, axis=1)[:, :k]


def generate_mqar(
    n: int,
    vocab_size: int,
    seq_len: int,
    num_kv_pairs: int,
    seed: int,
    power_a: float = 0.01,
) -> tuple[np.ndarray, np.ndarray]:
    """Return inputs (n, seq_len) and labels (n, seq_len) with IGNORE_INDEX off the answers."""
    if seq_len % 2 or num_kv_pairs * 4 > seq_len or vocab_size <= seq_len:
        raise ValueError("MQAR needs an even seq_len >= 4 * pairs and vocab_size > seq_len")
    rng = np.random.default_rng(seed)
    context = 2 * num_kv_pairs
    key_vocab = vocab_size // 2
    uniform_keys = np.zeros(key_vocab - 1)
    uniform_values = np.zeros(vocab_size - key_vocab)
    keys = _sample_without_replacement(rng, n, uniform_keys, num_kv_pairs) + 1
    values = _sample_without_replacement(rng, n, uniform_values, num_kv_pairs) + key_vocab

    space = (seq_len - context) // 2
    p = power_a * np.arange(1, space + 1) ** (power_a - 1)
    gaps = _sample_without_replacement(rng, n, np.log(p / p.sum()), num_kv_pairs)

    examples = np.zeros((n, seq_len + 1), dtype=np.int64)
    examples[:, 0:context:2] = keys
    examples[:, 1:context:2] = values
    rows = np.arange(n)[:, None]
    examples[rows, context + 2 * gaps] = keys
    labels = np.full((n, seq_len + 1), IGNORE_INDEX, dtype=np.int64)
    labels[rows, context + 2 * gaps + 1] = values

    inputs, labels = examples[:, :-1], labels[:, 1:]
    filler = rng.integers(0, vocab_size, size=inputs.shape)
    inputs = np.where(inputs == 0, filler, inputs)
    return inputs.astype(np.int32), labels.astype(np.int32)


def answer_accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    mask = labels != IGNORE_INDEX
    return float((predictions[mask] == labels[mask]).mean())


class MQAR(TokenTask):
    name = "mqar"
    description = "multi-query associative recall: recall the value of each queried key"
    metric = "accuracy_auc"

    @validate_call(config=ConfigDict(strict=False))
    def __init__(
        self,
        vocab_size: int = 256,
        seq_len: int = 64,
        num_kv_pairs: int = 8,
        train_examples: int = 20_000,
        eval_examples: int = 512,
        proxy_steps: int = 384,
        max_time_exponent: float | None = None,
        complexity_lengths: tuple[int, ...] = (256, 1024, 4096),
    ) -> None:
        """`max_time_exponent` (e.g. 1.5) turns on the complexity stage: a candidate whose
        forward time grows faster than length^max_time_exponent is rejected."""
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.num_kv_pairs = num_kv_pairs
        self.train_examples = train_examples
        self.eval_examples = eval_examples
        self.recipe = Recipe()
        self.budgets = {
            "smoke": SMOKE_BUDGET,
            "proxy": Budget(
                steps=proxy_steps, batch_size=64, eval_every=proxy_steps // 8, time_limit_s=180
            ),
            # twice the training: does the proxy's ranking hold?
            "scale": Budget(
                steps=2 * proxy_steps, batch_size=64, eval_every=proxy_steps // 4, time_limit_s=360
            ),
        }
        self.max_params = 2_000_000
        self.max_time_exponent = max_time_exponent
        self.complexity_lengths = complexity_lengths if max_time_exponent else None

    @property
    def spec(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "seq_len": self.seq_len}

    def fingerprint_extra(self) -> dict[str, Any]:
        return {
            "num_kv_pairs": self.num_kv_pairs,
            "train_examples": self.train_examples,
            "eval_examples": self.eval_examples,
            "max_time_exponent": self.max_time_exponent,
            "complexity_lengths": self.complexity_lengths,
        }

    def data(self, data_seed: int) -> TokenData:
        common = dict(
            vocab_size=self.vocab_size, seq_len=self.seq_len, num_kv_pairs=self.num_kv_pairs
        )
        train_x, train_y = generate_mqar(self.train_examples, seed=2 * data_seed, **common)
        eval_x, eval_y = generate_mqar(self.eval_examples, seed=2 * data_seed + 1, **common)
        return TokenData(train_x, train_y, eval_x, eval_y)

    def evaluate(self, outputs: np.ndarray, data: TokenData) -> dict[str, float]:
        return {"accuracy": answer_accuracy(outputs, data.eval_y)}

    def curve_metrics(self, curve: list[dict[str, float]]) -> dict[str, float]:
        # The jump from chance to solved is sudden, so a single final value ranks badly:
        # the score is the area under the held-out accuracy curve.
        return accuracy_curve_metrics(curve)

    def baseline_source(self) -> str:
        files = resources.files("archlab.tasks.baselines")
        return files.joinpath("transformer.py").read_text()
