"""[executor] compile: torch.compile of a trial's training step, in a real sandboxed trial."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from archlab.config import load_settings
from archlab.errors import ConfigError
from archlab.sandbox.trial import TrialReport
from archlab.tasks.mqar import MQAR
from support import EMBED, sandbox_trial

#: trains like EMBED, but its forward pass refuses to be compiled
REFUSES_COMPILE = EMBED.replace(
    "        return self.head(self.embed(x))",
    "        if torch.compiler.is_compiling():\n"
    "            raise RuntimeError('not under torch.compile')\n"
    "        return self.head(self.embed(x))",
)
#: trains like EMBED, but what is traced changes every step (a counter read in forward)
COUNTS_CALLS = EMBED.replace(
    "        return self.head(self.embed(x))",
    "        self.calls = getattr(self, 'calls', 0) + 1\n        return self.head(self.embed(x))",
)


def _losses(report: TrialReport) -> list[float]:
    return [point["loss"] for point in report.loss_curve]


def test_compile_is_a_mode_or_off_and_reaches_the_harness(tiny_task: MQAR, tmp_path: Path) -> None:
    assert load_settings().executor.compile == "off"
    with pytest.raises(ConfigError, match="compile"):
        load_settings(flags={"executor": {"compile": "fast"}})
    chosen = load_settings(flags={"executor": {"compile": "reduce-overhead"}}).executor.compile
    assert chosen == "reduce-overhead"
    report = sandbox_trial(tiny_task, tmp_path / "t", EMBED, "smoke", compile="off")
    assert report.status == "ok", report.message
    assert json.loads((tmp_path / "t" / "trial.json").read_text())["compile"] == "off"


def test_a_step_that_fails_compiled_is_taken_again_uncompiled(
    tiny_task: MQAR, tmp_path: Path
) -> None:
    eager = sandbox_trial(tiny_task, tmp_path / "eager", REFUSES_COMPILE)
    report = sandbox_trial(tiny_task, tmp_path / "compiled", REFUSES_COMPILE, compile="default")
    assert report.status == "ok", report.message
    assert "torch.compile failed (" in report.log_tail
    assert "training uncompiled" in report.log_tail
    assert _losses(report) == _losses(eager)  # every step after the failure: as uncompiled


@pytest.mark.slow
def test_a_compiled_trial_trains_as_the_uncompiled_one(tiny_task: MQAR, tmp_path: Path) -> None:
    eager = sandbox_trial(tiny_task, tmp_path / "eager", EMBED)
    report = sandbox_trial(tiny_task, tmp_path / "compiled", EMBED, compile="default")
    assert report.status == "ok", report.message
    found = re.search(r"torch\.compile: ([\d.]+) s at step 2", report.log_tail)
    assert found, report.log_tail
    assert "failed" not in report.log_tail
    # compiling is not training time: the clock left it out
    assert report.train_time_s < float(found.group(1))
    assert _losses(report) == pytest.approx(_losses(eager), rel=1e-3)


@pytest.mark.slow
def test_a_trial_compiles_once(tiny_task: MQAR, tmp_path: Path) -> None:
    eager = sandbox_trial(tiny_task, tmp_path / "eager", COUNTS_CALLS)
    report = sandbox_trial(tiny_task, tmp_path / "compiled", COUNTS_CALLS, compile="default")
    assert report.status == "ok", report.message
    assert "recompile_limit" in report.log_tail  # the steps after the first compile: uncompiled
    assert _losses(report) == pytest.approx(_losses(eager), rel=1e-3)
