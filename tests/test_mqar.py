import numpy as np
import pytest

from archlab.errors import ArchlabError, ConfigError
from archlab.tasks import get_task
from archlab.tasks.base import IGNORE_INDEX
from archlab.tasks.mqar import MQAR, answer_accuracy, generate_mqar


def test_generation_is_deterministic_and_well_formed() -> None:
    x1, y1 = generate_mqar(50, vocab_size=64, seq_len=32, num_kv_pairs=4, seed=3)
    x2, y2 = generate_mqar(50, vocab_size=64, seq_len=32, num_kv_pairs=4, seed=3)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert x1.shape == y1.shape == (50, 32)
    assert ((x1 >= 0) & (x1 < 64)).all()
    for row_x, row_y in zip(x1, y1, strict=True):
        answers = np.flatnonzero(row_y != IGNORE_INDEX)
        assert len(answers) == 4
        pairs = {int(row_x[i]): int(row_x[i + 1]) for i in range(0, 8, 2)}
        assert all(1 <= k < 32 for k in pairs) and all(32 <= v < 64 for v in pairs.values())
        for pos in answers:  # the label at a queried key is that key's value
            assert pos >= 8 and pairs[int(row_x[pos])] == row_y[pos]


def test_train_and_heldout_differ() -> None:
    data = MQAR(
        vocab_size=64, seq_len=32, num_kv_pairs=4, train_examples=64, eval_examples=64
    ).data(0)
    assert not np.array_equal(data.train_x[:64], data.eval_x)


def test_score_is_area_under_the_accuracy_curve() -> None:
    task = MQAR(vocab_size=64, seq_len=32, num_kv_pairs=4, train_examples=64, eval_examples=32)
    data = task.data(0)
    eval_y = data.eval_y
    perfect = np.where(eval_y == IGNORE_INDEX, 0, eval_y)
    wrong = np.zeros_like(eval_y)
    result = task.metrics([(10, wrong), (20, perfect)], data)
    assert result.values["accuracy"] == 1.0
    assert result.values["accuracy_auc"] == pytest.approx(0.5)
    assert [p["step"] for p in result.curve] == [10, 20]
    assert task.metric == "accuracy_auc" and task.higher_is_better
    assert answer_accuracy(wrong, eval_y) == 0.0


def test_fingerprint_tracks_configuration() -> None:
    assert MQAR().fingerprint() == MQAR().fingerprint()
    assert MQAR().fingerprint() != MQAR(num_kv_pairs=4).fingerprint()


def test_task_lookup_and_options() -> None:
    assert get_task("mqar", {"num_kv_pairs": 4}).num_kv_pairs == 4
    with pytest.raises(ArchlabError, match="unknown task"):
        get_task("nope")
    with pytest.raises(ConfigError, match=r"tasks\.mqar\.bogus"):
        get_task("mqar", {"bogus": 1})


def test_baseline_source_meets_the_contract() -> None:
    from archlab.eval.verify import static_check

    assert static_check(MQAR().baseline_source()).ok
