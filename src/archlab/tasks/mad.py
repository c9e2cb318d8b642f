"""The MAD suite (Poli et al. 2024, "Mechanistic Design and Scaling of Hybrid
Architectures"): six synthetic tasks, each probing one capability, scaled down to a
one-minute proxy on 2 CPU cores, and `mad`, all six trained together as one trial.

Where this departs from MAD's protocol, and why:
- Loss and accuracy count only the answer positions. MAD trains on every token, which
  here did not separate attention from a GRU at vocabulary 16 (0.97 vs 0.96).
- Answers never enter the inputs, so held-out targets stay out of the sandbox: where MAD
  repeats a queried key's value after it, the value's slots hold a marker.
- All six share one vocabulary and length, and every sequence opens with its task's
  token: the aggregate task mixes the six datasets, unchanged, in one training run.
- Compression: MAD decodes the whole sequence from the compression token's output with
  an MLP. The token contract has one output per position, so after the compression token
  the sequence is queried position by position, in random order, with position tokens:
  a model still has to keep every token and where it stood.
- Fuzzy recall: keys are `key_len` tokens over a small alphabet (every key token
  matters), values 1 to `max_value_len` tokens; MAD also varies the key length.
- Memorization: keys are `key_len` tokens (MAD: one token of a 256+ vocabulary), which
  gives enough facts (256) in a small vocabulary. The map is fixed for the task, as in
  MAD, so held-out sequences test recall of facts seen in training, by design.

Every score is the area under the held-out answer-accuracy curve (as for MQAR: the jump
from chance to solved is sudden, and a final value alone ranks badly).
"""

from __future__ import annotations

import abc
from dataclasses import replace
from importlib import resources
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from archlab.tasks.base import (
    IGNORE_INDEX,
    SMOKE_BUDGET,
    Budget,
    Recipe,
    TokenData,
    TokenTask,
    accuracy_curve_metrics,
)
from archlab.tasks.mqar import answer_accuracy

#: token ids every MAD task shares: ids below BLANK are the task tokens that open each
#: sequence (one per task in SUITE order), then a filler and a marker; content follows
BLANK, MARK, CONTENT = 6, 7, 8


class MadOptions(BaseModel):
    """Options every MAD task takes (the [tasks.NAME] config table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int = Field(64, ge=CONTENT + 2)
    seq_len: int = Field(64, ge=16, le=4096)
    train_examples: int = Field(20_000, ge=1)
    eval_examples: int = Field(512, ge=1)
    proxy_steps: int = Field(384, ge=8)

    def content_fits(self, tokens: int) -> None:
        if CONTENT + tokens > self.vocab_size:
            raise ValueError(
                f"the task needs {tokens} content tokens: vocab_size must be at least "
                f"{CONTENT + tokens}"
            )


def _seen_before(keys: np.ndarray, counts: np.ndarray, num_keys: int) -> np.ndarray:
    """(n, pairs): whether each pair's key already occurred in an earlier counted pair."""
    n, pairs = keys.shape
    rows = np.arange(n)
    seen = np.zeros((n, num_keys), dtype=bool)
    out = np.zeros((n, pairs), dtype=bool)
    for j in range(pairs):
        out[:, j] = seen[rows, keys[:, j]]
        seen[rows, keys[:, j]] |= counts[:, j]
    return out


def _random_subsets(rng: np.random.Generator, n: int, population: int, k: int) -> np.ndarray:
    """(n, k): k distinct indices below `population` per row, in random order."""
    return np.argsort(rng.random((n, population)), axis=1)[:, :k]


class _MadBase(TokenTask):
    """What the six tasks and their aggregate share: options, recipe, budgets, baseline."""

    Options: ClassVar[type[MadOptions]] = MadOptions
    options: MadOptions

    def __init__(self, **options: Any) -> None:
        self.options = self.Options(**options)
        self.recipe = Recipe()
        steps = self.options.proxy_steps
        self.budgets = {
            "smoke": SMOKE_BUDGET,
            "proxy": Budget(steps=steps, batch_size=64, eval_every=steps // 8, time_limit_s=180),
            # twice the training: does the proxy's ranking hold?
            "scale": Budget(
                steps=2 * steps, batch_size=64, eval_every=steps // 4, time_limit_s=360
            ),
        }
        self.max_params = 2_000_000

    @property
    def spec(self) -> dict[str, Any]:
        return {"vocab_size": self.options.vocab_size, "seq_len": self.options.seq_len}

    def baseline_source(self) -> str:
        baselines = resources.files("archlab.tasks.baselines")
        return baselines.joinpath("transformer.py").read_text()


class MadTask(_MadBase):
    """One MAD task: its data, held-out split and metrics."""

    #: this task's token, its position in SUITE
    token: ClassVar[int]
    metric = "accuracy_auc"

    @property
    @abc.abstractmethod
    def chance(self) -> float:
        """The accuracy of the best guess that ignores the context (the trivial model's)."""

    @abc.abstractmethod
    def generate(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n examples: inputs (n, seq_len) and labels (IGNORE_INDEX off the answers)."""

    def data(self, data_seed: int) -> TokenData:
        o = self.options
        # Streams keyed by (seed, task, split): each task's data is the same alone and in `mad`.
        train = self.generate(o.train_examples, np.random.default_rng([data_seed, self.token, 0]))
        held = self.generate(o.eval_examples, np.random.default_rng([data_seed, self.token, 1]))
        return TokenData(*train, *held)

    def frame(self, body: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs [task token, BLANK..., body] and the labels aligned with them."""
        n, length = body.shape
        seq_len = self.options.seq_len
        assert length < seq_len, "the body must leave room for the task token"
        x = np.full((n, seq_len), BLANK, dtype=np.int32)
        y = np.full((n, seq_len), IGNORE_INDEX, dtype=np.int32)
        x[:, 0] = self.token
        x[:, seq_len - length :] = body
        y[:, seq_len - length :] = labels
        return x, y

    def evaluate(self, outputs: np.ndarray, data: TokenData) -> dict[str, float]:
        return {"accuracy": answer_accuracy(outputs, data.eval_y)}

    def curve_metrics(self, curve: list[dict[str, float]]) -> dict[str, float]:
        return accuracy_curve_metrics(curve)

    def fingerprint_extra(self) -> dict[str, Any]:
        return self.options.model_dump()


# --- recall ------------------------------------------------------------------------------


class RecallOptions(MadOptions):
    num_keys: int = Field(16, ge=1)
    num_values: int = Field(16, ge=2)
    #: the share of key-value slots filled with noise tokens instead
    noise_frac: float = Field(0.0, ge=0.0, lt=1.0)
    noise_tokens: int = Field(0, ge=0)

    @model_validator(mode="after")
    def check_fits(self) -> RecallOptions:
        if self.noise_frac > 0 and self.noise_tokens == 0:
            raise ValueError("noise_frac > 0 needs noise_tokens > 0")
        self.content_fits(self.num_keys + self.num_values + self.noise_tokens)
        return self


class InContextRecall(MadTask):
    """Key-value pairs; each key keeps its value within a sequence; every repeated key
    must be answered with its value (its value slot holds MARK)."""

    name = "mad-in-context-recall"
    description = "MAD in-context recall: answer each repeated key with its value"
    Options = RecallOptions
    token = 0
    options: RecallOptions

    @property
    def chance(self) -> float:
        return 1 / self.options.num_values

    def generate(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        o = self.options
        pairs = (o.seq_len - 1) // 2
        keys = rng.integers(o.num_keys, size=(n, pairs))
        values = np.take_along_axis(rng.integers(o.num_values, size=(n, o.num_keys)), keys, 1)
        noise = rng.random((n, pairs)) < o.noise_frac
        key_tokens = CONTENT + keys
        value_tokens = CONTENT + o.num_keys + values
        body = np.stack([key_tokens, value_tokens], axis=-1)
        if o.noise_tokens:
            first_noise = CONTENT + o.num_keys + o.num_values
            noise_tokens = first_noise + rng.integers(o.noise_tokens, size=(n, pairs, 2))
            body = np.where(noise[..., None], noise_tokens, body)
        answered = _seen_before(keys, ~noise, o.num_keys) & ~noise
        labels = np.full((n, pairs, 2), IGNORE_INDEX)
        labels[..., 0] = np.where(answered, value_tokens, IGNORE_INDEX)
        body[..., 1] = np.where(answered, MARK, body[..., 1])  # the answer is no input
        return self.frame(body.reshape(n, -1), labels.reshape(n, -1))


class NoisyRecallOptions(RecallOptions):
    noise_frac: float = Field(0.2, ge=0.0, lt=1.0)
    noise_tokens: int = Field(16, ge=0)


class NoisyRecall(InContextRecall):
    """In-context recall with slots of noise tokens mixed in, which must be ignored."""

    name = "mad-noisy-recall"
    description = "MAD noisy recall: in-context recall among noise tokens"
    Options = NoisyRecallOptions
    token = 1


class FuzzyRecallOptions(MadOptions):
    key_len: int = Field(2, ge=1, le=4)
    key_alphabet: int = Field(6, ge=2)
    #: distinct keys per sequence
    num_keys: int = Field(8, ge=1)
    max_value_len: int = Field(2, ge=1, le=4)
    num_values: int = Field(16, ge=2)

    @model_validator(mode="after")
    def check_fits(self) -> FuzzyRecallOptions:
        if self.num_keys > self.key_alphabet**self.key_len:
            raise ValueError("num_keys exceeds the key_alphabet ** key_len possible keys")
        self.content_fits(self.key_alphabet + self.num_values)
        return self


class FuzzyRecall(MadTask):
    """Recall with multi-token keys and values of varying length."""

    name = "mad-fuzzy-recall"
    description = "MAD fuzzy recall: recall multi-token values of multi-token keys"
    Options = FuzzyRecallOptions
    token = 2
    options: FuzzyRecallOptions

    @property
    def chance(self) -> float:
        return 1 / self.options.num_values

    def generate(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        o = self.options
        kl, vl = o.key_len, o.max_value_len
        length = o.seq_len - 1
        pairs = length // (kl + 1) + 1  # enough pairs to fill the body at the shortest
        # Each sequence's own keys, written in base key_alphabet, and their value motifs.
        codes = _random_subsets(rng, n, o.key_alphabet**kl, o.num_keys)
        digits = (codes[..., None] // o.key_alphabet ** np.arange(kl)) % o.key_alphabet
        motifs = CONTENT + o.key_alphabet + rng.integers(o.num_values, size=(n, o.num_keys, vl))
        motif_len = rng.integers(1, vl + 1, size=(n, o.num_keys))

        which = rng.integers(o.num_keys, size=(n, pairs))
        seen = _seen_before(which, np.ones_like(which, dtype=bool), o.num_keys)
        rows = np.arange(n)[:, None]
        key_tokens = CONTENT + digits[rows, which]  # (n, pairs, kl)
        value_tokens = motifs[rows, which]  # (n, pairs, vl)
        value_len = motif_len[rows, which]
        # A repeated key's value is the answer: its slots hold MARK, never the value.
        shown = np.where(seen[..., None], MARK, value_tokens)
        tokens = np.concatenate([key_tokens, shown], axis=-1)
        kept = np.concatenate(
            [np.ones_like(key_tokens, dtype=bool), np.arange(vl) < value_len[..., None]], axis=-1
        )
        # The label at a slot is the next slot's token when that is a kept value token.
        labels = np.full(tokens.shape, IGNORE_INDEX)
        answer = kept[..., kl:] & seen[..., None]
        labels[..., kl - 1 : kl + vl - 1] = np.where(answer, value_tokens, IGNORE_INDEX)

        # Drop the unused value slots, keep order, and cut to the body's length.
        order = np.argsort(~kept.reshape(n, -1), axis=1, kind="stable")[:, :length]
        body = np.take_along_axis(tokens.reshape(n, -1), order, 1)
        return self.frame(body, np.take_along_axis(labels.reshape(n, -1), order, 1))


# --- copying and compression -----------------------------------------------------------


class SelectiveCopyingOptions(MadOptions):
    num_tokens: int = Field(8, ge=1)
    alphabet: int = Field(16, ge=2)

    @model_validator(mode="after")
    def check_fits(self) -> SelectiveCopyingOptions:
        if 2 * self.num_tokens + 2 > self.seq_len:
            raise ValueError("seq_len must be at least 2 * num_tokens + 2")
        self.content_fits(self.alphabet)
        return self


class SelectiveCopying(MadTask):
    """Tokens scattered among blanks; after the marker, emit them in order."""

    name = "mad-selective-copying"
    description = "MAD selective copying: after the marker, emit the scattered tokens in order"
    Options = SelectiveCopyingOptions
    token = 3
    options: SelectiveCopyingOptions

    @property
    def chance(self) -> float:
        return 1 / self.options.alphabet

    def generate(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        o = self.options
        k = o.num_tokens
        region = o.seq_len - 2 - k  # task token, region, marker, k answer slots
        where = np.sort(_random_subsets(rng, n, region, k), axis=1)
        tokens = CONTENT + rng.integers(o.alphabet, size=(n, k))
        body = np.full((n, region + 1 + k), BLANK)
        np.put_along_axis(body, where, tokens, axis=1)
        body[:, region] = MARK
        labels = np.full(body.shape, IGNORE_INDEX)
        labels[:, region + 1 :] = tokens
        return self.frame(body, labels)


class CompressionOptions(MadOptions):
    #: at 16 the baseline stayed at chance on one seed of three in 384 steps
    num_tokens: int = Field(12, ge=1)
    alphabet: int = Field(16, ge=2)

    @model_validator(mode="after")
    def check_fits(self) -> CompressionOptions:
        if 2 * self.num_tokens + 2 > self.seq_len:
            raise ValueError("seq_len must be at least 2 * num_tokens + 2")
        self.content_fits(self.alphabet + self.num_tokens)
        return self


class Compression(MadTask):
    """A random sequence, the marker, then each position queried in random order."""

    name = "mad-compression"
    description = "MAD compression: recall a random sequence position by position"
    Options = CompressionOptions
    token = 4
    options: CompressionOptions

    @property
    def chance(self) -> float:
        return 1 / self.options.alphabet

    def generate(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        o = self.options
        k = o.num_tokens
        tokens = CONTENT + rng.integers(o.alphabet, size=(n, k))
        queried = _random_subsets(rng, n, k, k)
        position_tokens = CONTENT + o.alphabet + queried
        body = np.concatenate([tokens, np.full((n, 1), MARK), position_tokens], axis=1)
        labels = np.full(body.shape, IGNORE_INDEX)
        labels[:, k + 1 :] = np.take_along_axis(tokens, queried, 1)
        return self.frame(body, labels)


# --- memorization ------------------------------------------------------------------------


class MemorizationOptions(MadOptions):
    #: a key is key_len tokens: key_alphabet ** key_len facts to learn
    key_len: int = Field(2, ge=1, le=4)
    key_alphabet: int = Field(16, ge=2)
    num_values: int = Field(32, ge=2)

    @model_validator(mode="after")
    def check_fits(self) -> MemorizationOptions:
        if self.key_len + 2 > self.seq_len:
            raise ValueError("seq_len must be at least key_len + 2")
        self.content_fits(self.key_alphabet + self.num_values)
        return self


class Memorization(MadTask):
    """A key-value map fixed for the task: after each key, the marker asks for its value."""

    name = "mad-memorization"
    description = "MAD memorization: learn a fixed key-value map from training sequences"
    Options = MemorizationOptions
    token = 5
    options: MemorizationOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        # Every value answers equally many keys, so no constant guess beats chance.
        fixed = np.random.default_rng([self.token, o.key_len, o.key_alphabet, o.num_values])
        balanced = np.resize(np.arange(o.num_values), o.key_alphabet**o.key_len)
        self.values = CONTENT + o.key_alphabet + fixed.permutation(balanced)

    @property
    def chance(self) -> float:
        return float(np.bincount(self.values).max() / len(self.values))

    def generate(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        o = self.options
        facts = (o.seq_len - 1) // (o.key_len + 1)
        keys = rng.integers(o.key_alphabet, size=(n, facts, o.key_len))
        which = keys @ (o.key_alphabet ** np.arange(o.key_len))
        body = np.concatenate([CONTENT + keys, np.full((n, facts, 1), MARK)], axis=-1)
        labels = np.full(body.shape, IGNORE_INDEX)
        labels[..., -1] = self.values[which]
        return self.frame(body.reshape(n, -1), labels.reshape(n, -1))


SUITE: tuple[type[MadTask], ...] = (
    InContextRecall,
    NoisyRecall,
    FuzzyRecall,
    SelectiveCopying,
    Compression,
    Memorization,
)
assert [task.token for task in SUITE] == list(range(len(SUITE))) and len(SUITE) == BLANK


# --- all six as one trial ----------------------------------------------------------------


class MadSuiteOptions(MadOptions):
    #: per task: the mixed training set holds six times as many
    train_examples: int = Field(8_000, ge=1)
    proxy_steps: int = Field(768, ge=8)


class Mad(_MadBase):
    """All six tasks in one training run on their mixed data (each sequence's first token
    says which task it is), scored by the mean of the six chance-normalized accuracies."""

    name = "mad"
    description = "the MAD suite: all six tasks mixed in one run, mean normalized accuracy"
    Options = MadSuiteOptions
    metric = "score_auc"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        common = self.options.model_dump(exclude={"proxy_steps"})
        self.parts = [task(**common) for task in SUITE]

    def data(self, data_seed: int) -> TokenData:
        # The harness samples training rows uniformly, so concatenating is mixing; the
        # held-out rows stay in SUITE order, eval_examples per task.
        parts = [part.data(data_seed) for part in self.parts]
        fields = ("train_x", "train_y", "eval_x", "eval_y")
        return TokenData(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))

    def evaluate(self, outputs: np.ndarray, data: TokenData) -> dict[str, float]:
        size = self.options.eval_examples
        values: dict[str, float] = {}
        normalized = []
        for i, part in enumerate(self.parts):
            rows = slice(i * size, (i + 1) * size)
            held = replace(data, eval_x=data.eval_x[rows], eval_y=data.eval_y[rows])
            accuracy = part.evaluate(outputs[rows], held)["accuracy"]
            values[f"{part.name.removeprefix('mad-')}_accuracy"] = accuracy
            normalized.append((accuracy - part.chance) / (1 - part.chance))
        return {"score": float(np.mean(normalized)), **values}

    def curve_metrics(self, curve: list[dict[str, float]]) -> dict[str, float]:
        return {**super().curve_metrics(curve), **accuracy_curve_metrics(curve, "score")}

    def fingerprint_extra(self) -> dict[str, Any]:
        return {part.name: part.fingerprint_extra() for part in self.parts}
