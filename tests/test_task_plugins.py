"""Third-party tasks registered through the `archlab.tasks` entry point group."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pytest
from pydantic import Field, validate_call

from archlab.errors import ArchlabError, ConfigError
from archlab.tasks import get_task, task_names
from archlab.tasks.base import IGNORE_INDEX, SMOKE_BUDGET, Budget, Recipe, TokenData, TokenTask
from archlab.tasks.mqar import MQAR
from support import sandbox_trial

ROOT = Path(__file__).resolve().parent.parent


class PreviousToken(TokenTask):
    """A plugin task: at every position, emit the token before it."""

    name = "test-previous-token"
    description = "emit the previous token"
    metric = "accuracy"

    @validate_call
    def __init__(
        self, vocab_size: Annotated[int, Field(ge=2)] = 8, seq_len: int = 16, steps: int = 8
    ) -> None:
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.recipe = Recipe()
        self.budgets = {
            "smoke": SMOKE_BUDGET,
            "proxy": Budget(steps=steps, batch_size=16, eval_every=steps // 2, time_limit_s=60),
        }
        self.max_params = 100_000

    @property
    def spec(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "seq_len": self.seq_len}

    def _split(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.integers(0, self.vocab_size, size=(n, self.seq_len))
        y = np.roll(x, 1, axis=1)
        y[:, 0] = IGNORE_INDEX
        return x, y

    def data(self, data_seed: int) -> TokenData:
        rng = np.random.default_rng(data_seed)
        return TokenData(*self._split(rng, 256), *self._split(rng, 32))

    def evaluate(self, outputs: np.ndarray, data: TokenData) -> dict[str, float]:
        scored = data.eval_y != IGNORE_INDEX
        return {"accuracy": float((outputs[scored] == data.eval_y[scored]).mean())}

    def baseline_source(self) -> str:
        return textwrap.dedent("""
            import torch

            def build_model(spec):
                return torch.nn.Sequential(
                    torch.nn.Embedding(spec.vocab_size, 16), torch.nn.Linear(16, spec.vocab_size)
                )
        """)


def misnamed(**options: Any) -> TokenTask:
    return PreviousToken(**options)


ENTRY_POINTS = f"""
[archlab.tasks]
test-previous-token = {__name__}:PreviousToken
mqar = {__name__}:PreviousToken
test-missing = {__name__}:no_such_factory
test-misnamed = {__name__}:misnamed
"""


@pytest.fixture(autouse=True)
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution on sys.path whose entry points name the task classes above."""
    info = tmp_path / "site" / "archlab_test_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: archlab-test-plugin\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


def test_plugins_are_listed_and_built_with_their_options() -> None:
    names = task_names()
    assert "test-previous-token" in names and names.count("mqar") == 1
    task = get_task("test-previous-token", {"seq_len": 12})
    assert isinstance(task, PreviousToken) and task.spec["seq_len"] == 12


def test_plugin_options_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"tasks\.test-previous-token\.vocab_size"):
        get_task("test-previous-token", {"vocab_size": 1})


def test_builtin_tasks_win_a_name_clash() -> None:
    assert isinstance(get_task("mqar"), MQAR)


def test_broken_plugins_are_reported_by_name() -> None:
    with pytest.raises(ArchlabError, match=r"test-missing.*does not load"):
        get_task("test-missing")
    with pytest.raises(ArchlabError, match=r"whose name is 'test-misnamed'"):
        get_task("test-misnamed")
    with pytest.raises(ArchlabError, match=r"unknown task 'nope' \(known: .*test-previous-token"):
        get_task("nope")


@pytest.mark.slow
def test_a_plugin_task_runs_a_trial(tmp_path: Path) -> None:
    task = get_task("test-previous-token")
    report = sandbox_trial(task, tmp_path / "trial", task.baseline_source())
    assert report.status == "ok", report.message
    metrics = task.metrics(report.checkpoints, task.data(0))
    assert [p["step"] for p in metrics.curve] == [4, 8]
    assert 0 <= metrics.values["accuracy"] <= 1


def test_the_readme_plugin_example_is_a_working_task() -> None:
    section = (ROOT / "docs" / "tasks.md").read_text().split("## Task plugins", 1)[1]
    assert '"archlab.tasks"' in section.split("```toml", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(section.split("```python", 1)[1].split("```", 1)[0], namespace)
    task = namespace["Reverse"](seq_len=16)
    data = task.data(0)
    assert task.evaluate(np.where(data.eval_y == IGNORE_INDEX, 0, data.eval_y), data) == {
        "accuracy": 1.0
    }
    assert task.evaluate(np.zeros_like(data.eval_y), data) == {"accuracy": 0.0}
    assert (data.eval_x[:, 8:] == 0).all() and task.fingerprint()
