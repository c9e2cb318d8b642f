"""The built-in tasks beyond MQAR: MAD, charlm and digits."""

from __future__ import annotations

import hashlib
import importlib.util
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from archlab.errors import ArchlabError, ConfigError
from archlab.eval.verify import static_check
from archlab.tasks import BUILTIN_TASKS, get_task, task_names
from archlab.tasks.base import IGNORE_INDEX, Budget, Metrics, TokenData, TokenTask
from archlab.tasks.charlm import CharLM, stdlib_corpus
from archlab.tasks.mad import (
    BLANK,
    CONTENT,
    MARK,
    SUITE,
    Compression,
    FuzzyRecall,
    InContextRecall,
    Mad,
    MadTask,
    Memorization,
    NoisyRecall,
    SelectiveCopying,
)
from support import sandbox_trial

SMALL = {"train_examples": 64, "eval_examples": 32}
needs_sklearn = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None,
    reason="digits needs scikit-learn: pip install 'archlab[digits]'",
)


def perfect(data: TokenData) -> np.ndarray:
    return np.where(data.eval_y == IGNORE_INDEX, 0, data.eval_y)


def answers(y: np.ndarray) -> list[tuple[int, int]]:
    return [(int(i), int(p)) for i, p in zip(*np.nonzero(y != IGNORE_INDEX), strict=True)]


def test_every_task_is_registered_under_its_own_name() -> None:
    assert set(task_names()) >= {"mqar", "mad", "charlm", "digits", *(t.name for t in SUITE)}
    for name in BUILTIN_TASKS:
        if name != "digits" or importlib.util.find_spec("sklearn"):
            assert get_task(name).name == name


# --- MAD ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", SUITE, ids=lambda cls: cls.name)
def test_mad_data_is_deterministic_and_well_formed(cls: type[MadTask]) -> None:
    task = cls(**SMALL)
    data = task.data(0)
    again, other = task.data(0), task.data(1)
    assert all(np.array_equal(a, b) for a, b in zip(_arrays(data), _arrays(again), strict=True))
    assert not np.array_equal(data.train_x, other.train_x)
    assert data.train_x.shape == data.train_y.shape == (64, 64)
    assert data.eval_x.shape == data.eval_y.shape == (32, 64)
    for x, y in ((data.train_x, data.train_y), (data.eval_x, data.eval_y)):
        assert (x[:, 0] == task.token).all() and ((x[:, 1:] >= BLANK) & (x[:, 1:] < 64)).all()
        labelled = y[y != IGNORE_INDEX]
        assert ((labelled >= CONTENT) & (labelled < 64)).all()
        assert ((y != IGNORE_INDEX).sum(axis=1) > 0).all()


@pytest.mark.parametrize("cls", SUITE, ids=lambda cls: cls.name)
def test_mad_answers_stay_out_of_the_inputs(cls: type[MadTask]) -> None:
    """Held-out targets never reach the sandbox: no answer is the next input token (which
    a model that peeks ahead would read), and held-out sequences are not training ones."""
    data = cls(**SMALL).data(0)
    for i, p in answers(data.eval_y):
        assert p + 1 == data.eval_x.shape[1] or data.eval_x[i, p + 1] != data.eval_y[i, p]
    train_rows = {row.tobytes() for row in data.train_x}
    assert not any(row.tobytes() in train_rows for row in data.eval_x)


@pytest.mark.parametrize("cls", [InContextRecall, NoisyRecall])
def test_recall_answers_are_the_value_shown_with_the_key(cls: type[MadTask]) -> None:
    data = cls(**SMALL).data(0)
    for i, p in answers(data.train_y):
        x = data.train_x[i]
        key, value = x[p], data.train_y[i, p]
        shown = {int(x[j + 1]) for j in range(1, p) if x[j] == key and x[j + 1] != MARK}
        assert shown == {value} and x[p + 1] == MARK


def test_fuzzy_recall_answers_follow_multi_token_keys() -> None:
    task = FuzzyRecall(**SMALL)
    data = task.data(0)
    for i, p in answers(data.train_y):
        x, y = data.train_x[i], data.train_y[i]
        assert p + 1 == len(x) or x[p + 1] == MARK
        if x[p] != MARK:  # the first token of the value: the key ends here
            key = tuple(x[p - task.options.key_len + 1 : p + 1])
            assert all(CONTENT <= k < CONTENT + task.options.key_alphabet for k in key)
            earlier = [
                j
                for j in range(p)
                if tuple(x[j - len(key) + 1 : j + 1]) == key and x[j + 1] != MARK
            ]
            assert earlier and x[earlier[0] + 1] == y[p]


def test_selective_copying_asks_for_the_scattered_tokens_in_order() -> None:
    task = SelectiveCopying(**SMALL)
    data = task.data(0)
    k = task.options.num_tokens
    for x, y in zip(data.train_x, data.train_y, strict=True):
        assert x[-k - 1] == MARK and (x[-k:] == BLANK).all()
        region = x[1 : -k - 1]
        assert list(y[-k:]) == list(region[region != BLANK])
        assert (y[:-k] == IGNORE_INDEX).all()


def test_compression_queries_every_position_once() -> None:
    task = Compression(**SMALL)
    data = task.data(0)
    k, alphabet = task.options.num_tokens, task.options.alphabet
    for x, y in zip(data.train_x, data.train_y, strict=True):
        tokens, queries = x[-2 * k - 1 : -k - 1], x[-k:] - CONTENT - alphabet
        assert x[-k - 1] == MARK and sorted(queries) == list(range(k))
        assert list(y[-k:]) == list(tokens[queries])


def test_memorization_map_is_fixed_across_seeds_and_sequences() -> None:
    task = Memorization(**SMALL)
    seen: dict[int, int] = {}
    for seed in (0, 1):
        data = task.data(seed)
        for i, p in answers(data.train_y):
            assert data.train_x[i, p] == MARK
            key = data.train_x[i, p - task.options.key_len : p].tobytes()
            assert seen.setdefault(key, int(data.train_y[i, p])) == data.train_y[i, p]
    assert len(seen) > 200  # of the 256 facts


def test_mad_metrics_on_perfect_and_wrong_outputs() -> None:
    task = InContextRecall(**SMALL)
    data = task.data(0)
    wrong = np.zeros_like(data.eval_y)
    result = task.metrics([(10, wrong), (20, perfect(data))], data)
    assert result.values == {"accuracy": 1.0, "best_accuracy": 1.0, "accuracy_auc": 0.5}
    assert [p["step"] for p in result.curve] == [10, 20]
    assert task.metric in result.values and task.higher_is_better


def test_mad_aggregate_mixes_the_six_tasks_and_normalizes_by_chance() -> None:
    task = Mad(**SMALL)
    data = task.data(0)
    parts = [cls(**SMALL).data(0) for cls in SUITE]
    assert np.array_equal(data.train_x, np.concatenate([p.train_x for p in parts]))
    assert np.array_equal(data.eval_y, np.concatenate([p.eval_y for p in parts]))
    assert task.spec == SUITE[0](**SMALL).spec

    right = perfect(data)
    assert task.evaluate(right, data)["score"] == pytest.approx(1.0)
    half = right.copy()
    half[3 * 32 :] = 0  # the last three tasks all wrong
    values = task.evaluate(half, data)
    assert values["in-context-recall_accuracy"] == 1.0 and values["memorization_accuracy"] == 0
    chances = [part.chance for part in task.parts[3:]]
    expected = (3 - sum(c / (1 - c) for c in chances)) / 6
    assert values["score"] == pytest.approx(expected)
    metrics = task.metrics([(1, half), (2, right)], data).values
    assert metrics["score_auc"] == pytest.approx((expected + 1) / 2)
    assert task.metric == "score_auc"


def test_mad_options_are_validated() -> None:
    assert get_task("mad-compression", {"num_tokens": 8}).spec["seq_len"] == 64
    with pytest.raises(ConfigError, match=r"tasks\.mad-compression\.num_tokens"):
        get_task("mad-compression", {"num_tokens": 0})
    with pytest.raises(ConfigError, match=r"tasks\.mad-compression: .*seq_len"):
        get_task("mad-compression", {"num_tokens": 40})
    with pytest.raises(ConfigError, match=r"tasks\.mad\.bogus"):
        get_task("mad", {"bogus": 1})
    with pytest.raises(ConfigError, match=r"tasks\.mad-noisy-recall: .*vocab_size"):
        get_task("mad-noisy-recall", {"vocab_size": 32})


def test_mad_fingerprints_track_options() -> None:
    assert Mad().fingerprint() == Mad().fingerprint()
    assert Mad().fingerprint() != Mad(train_examples=100).fingerprint()
    assert NoisyRecall().fingerprint() != NoisyRecall(noise_frac=0.4).fingerprint()


# --- charlm -------------------------------------------------------------------------------


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 10_240, dtype=np.uint8).tobytes())
    return path


@pytest.fixture
def small_charlm(corpus: Path) -> CharLM:
    return CharLM(
        corpus=corpus, seq_len=16, train_bytes=8_000, valid_bytes=2_000, eval_positions=50
    )


def test_charlm_default_corpus_is_the_stdlib_and_fingerprinted() -> None:
    task = CharLM(train_bytes=20_000, valid_bytes=5_000)
    text = stdlib_corpus(25_000)
    assert task.train_text.tobytes() + task.valid_text.tobytes() == text
    extra = task.fingerprint_extra()
    assert extra["corpus"] == "stdlib"
    assert extra["corpus_sha256"] == hashlib.sha256(text).hexdigest()


def test_charlm_scores_bytes_outside_their_windows(small_charlm: CharLM) -> None:
    task = small_charlm
    data = task.data(3)
    assert np.array_equal(data.eval_x, task.data(3).eval_x)
    assert np.array_equal(data.train_x[:, 1:], data.train_y[:, :-1])
    assert data.eval_positions is not None and data.eval_positions.shape == (50, 2)
    assert (data.eval_positions[:, 1] == 15).all() and len(data.eval_x) == 50
    valid = task.valid_text.tobytes()
    for x, y in zip(data.eval_x, data.eval_y, strict=True):
        start = valid.index(x.astype(np.uint8).tobytes())
        assert valid[start + 16] == y[-1]  # the scored byte is the one after the window
    assert task.output_shape(data) == ("float16", (50, 256))


def test_charlm_bits_per_byte_from_returned_logprobs(small_charlm: CharLM) -> None:
    task = small_charlm
    data = task.data(0)
    assert data.eval_positions is not None
    truth = data.eval_y[data.eval_positions[:, 0], data.eval_positions[:, 1]]
    sure = np.full((50, 256), -60.0, dtype=np.float16)
    sure[np.arange(50), truth] = 0
    uniform = np.full((50, 256), -np.log(256), dtype=np.float16)
    assert task.evaluate(sure, data)["bits_per_byte"] == pytest.approx(0, abs=1e-6)
    assert task.evaluate(uniform, data)["bits_per_byte"] == pytest.approx(8, abs=1e-3)
    # What comes back is renormalized: claiming probability 1 everywhere scores as uniform.
    claim = task.evaluate(np.zeros((50, 256), np.float16), data)
    assert claim["bits_per_byte"] == pytest.approx(8)
    result = task.metrics([(5, uniform), (10, sure)], data)
    assert result.values["bits_per_byte"] == pytest.approx(0, abs=1e-6)
    assert [p["bits_per_byte"] for p in result.curve] == pytest.approx([8, 0], abs=1e-3)
    assert task.metric == "bits_per_byte" and not task.higher_is_better


def test_charlm_options_are_validated(tmp_path: Path, corpus: Path) -> None:
    with pytest.raises(ConfigError, match=r"tasks\.charlm\.corpus"):
        get_task("charlm", {"corpus": str(tmp_path / "missing.txt")})
    with pytest.raises(ConfigError, match=r"tasks\.charlm: .*too few"):
        get_task("charlm", {"corpus": str(corpus)})  # 10 kB < the default 100 kB held out
    with pytest.raises(ConfigError, match=r"tasks\.charlm\.seq_len"):
        get_task("charlm", {"seq_len": 2})


# --- digits -------------------------------------------------------------------------------


@needs_sklearn
def test_digits_data_is_a_disjoint_split_of_the_bundled_images() -> None:
    task = get_task("digits", {"eval_examples": 300})
    data = task.data(0)
    assert data.train_x.shape == (1497, 64) and data.eval_x.shape == (300, 64)
    assert data.eval_y.shape == (300,) and set(np.unique(data.train_y)) == set(range(10))
    assert data.train_x.min() >= 0 and data.train_x.max() <= 16
    assert np.array_equal(data.eval_x, task.data(0).eval_x)
    assert not np.array_equal(data.eval_x, task.data(1).eval_x)
    train_rows = {row.tobytes() for row in data.train_x}
    assert sum(row.tobytes() in train_rows for row in data.eval_x) < 5  # a few duplicates exist
    assert task.output_shape(data) == ("int32", (300,))
    assert task.evaluate(data.eval_y, data) == {"accuracy": 1.0}
    assert task.evaluate((data.eval_y + 1) % 10, data) == {"accuracy": 0.0}


@needs_sklearn
def test_digits_options_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"tasks\.digits\.eval_examples"):
        get_task("digits", {"eval_examples": 0})


def test_digits_without_scikit_learn_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a)
    )
    with pytest.raises(ArchlabError, match=r"archlab\[digits\]"):
        get_task("digits")


# --- baselines through the real sandbox -----------------------------------------------------


def test_baselines_meet_the_contract() -> None:
    for source in resources.files("archlab.tasks.baselines").iterdir():
        if source.name.endswith(".py") and source.name != "__init__.py":
            assert static_check(source.read_text()).ok, source.name


def _trial(task: TokenTask, tmp_path: Path) -> Metrics:
    """A real trial of the task's baseline: 8 steps, held-out outputs at steps 4 and 8."""
    budget = Budget(steps=8, batch_size=8, eval_every=4, time_limit_s=60)
    report = sandbox_trial(task, tmp_path / "trial", task.baseline_source(), budget=budget)
    assert report.status == "ok", report.message
    return task.metrics(report.checkpoints, task.data(0))


@pytest.mark.slow
def test_mad_trial_runs_through_the_sandbox(tmp_path: Path) -> None:
    task = Mad(**SMALL)
    metrics = _trial(task, tmp_path)
    assert [p["step"] for p in metrics.curve] == [4, 8]
    assert -1 < metrics.values["score_auc"] < 1 and "compression_accuracy" in metrics.values


@pytest.mark.slow
def test_charlm_trial_returns_logprobs_scored_outside(tmp_path: Path, small_charlm: CharLM) -> None:
    metrics = _trial(small_charlm, tmp_path)
    assert 0 < metrics.values["bits_per_byte"] < 12


@needs_sklearn
@pytest.mark.slow
def test_digits_trial_classifies(tmp_path: Path) -> None:
    metrics = _trial(get_task("digits"), tmp_path)
    assert 0 <= metrics.values["accuracy"] <= 1


def _arrays(data: TokenData) -> list[np.ndarray]:
    return [data.train_x, data.train_y, data.eval_x, data.eval_y]
