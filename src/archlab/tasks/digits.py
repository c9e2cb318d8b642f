"""digits: scikit-learn's bundled 8x8 handwritten digits, as a classification task.

Each image is 64 tokens, one per pixel in reading order, holding its intensity (0 to 16);
the label is the digit. The images ship inside scikit-learn, so nothing is downloaded;
scikit-learn is an optional extra: `pip install 'archlab[digits]'`. The set is small and
saturates quickly (logistic regression reaches ~97%): good for coarse differences only.
"""

from __future__ import annotations

import importlib.util
from importlib import resources
from typing import Annotated, Any

import numpy as np
from pydantic import ConfigDict, Field, validate_call

from archlab.errors import ArchlabError
from archlab.tasks.base import SMOKE_BUDGET, Budget, Recipe, TokenData, TokenTask

INSTALL_HINT = "the digits task needs scikit-learn: pip install 'archlab[digits]'"


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 images as (n, 64) intensities and their labels."""
    try:
        from sklearn.datasets import load_digits as load
    except ImportError:
        raise ArchlabError(INSTALL_HINT) from None
    images = load()
    return images.data.astype(np.int32), images.target.astype(np.int32)


class Digits(TokenTask):
    name = "digits"
    description = "scikit-learn's 8x8 digits: classify 64 pixel-intensity tokens"
    kind = "classification"
    causal = False
    metric = "accuracy"

    @validate_call(config=ConfigDict(strict=False))
    def __init__(
        self,
        eval_examples: Annotated[int, Field(ge=1, le=1000)] = 360,
        proxy_steps: Annotated[int, Field(ge=8)] = 600,
    ) -> None:
        if importlib.util.find_spec("sklearn") is None:
            raise ArchlabError(INSTALL_HINT)
        self.eval_examples = eval_examples
        self.recipe = Recipe()
        self.budgets = {
            "smoke": SMOKE_BUDGET,
            "proxy": Budget(
                steps=proxy_steps, batch_size=64, eval_every=proxy_steps // 6, time_limit_s=120
            ),
            "scale": Budget(
                steps=2 * proxy_steps, batch_size=64, eval_every=proxy_steps // 3, time_limit_s=240
            ),
        }
        self.max_params = 1_000_000

    @property
    def spec(self) -> dict[str, Any]:
        return {"vocab_size": 17, "seq_len": 64, "num_classes": 10}

    def fingerprint_extra(self) -> dict[str, Any]:
        return {"eval_examples": self.eval_examples}

    def data(self, data_seed: int) -> TokenData:
        images, labels = load_digits()
        order = np.random.default_rng(data_seed).permutation(len(images))
        held, train = order[: self.eval_examples], order[self.eval_examples :]
        return TokenData(images[train], labels[train], images[held], labels[held])

    def evaluate(self, outputs: np.ndarray, data: TokenData) -> dict[str, float]:
        return {"accuracy": float((outputs == data.eval_y).mean())}

    def baseline_source(self) -> str:
        return resources.files("archlab.tasks.baselines").joinpath("classifier.py").read_text()
