"""Shared fixtures. Every test gets its own archlab home, so nothing touches a real memory."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

from archlab import benchmarks as bench
from archlab.sandbox.basic import BasicLauncher
from archlab.sandbox.trial import TrialReport, run_trial
from archlab.tasks.base import Budget, TokenTask
from archlab.tasks.mqar import MQAR

# No test can reach a real model: sockets connect to loopback only, in this process from
# here on and, through PYTHONPATH (see _isolated_environment), in Python subprocesses.
NETGUARD = Path(__file__).parent / "netguard"
_spec = importlib.util.spec_from_file_location("netguard", NETGUARD / "sitecustomize.py")
assert _spec is not None and _spec.loader is not None
netguard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(netguard)

#: a task small enough that a proxy trial takes a few seconds, mostly interpreter start-up
#: (the benchmarks' own small MQAR; TINY_CONFIG below says the same in TOML)
TINY_MQAR = bench.TINY_MQAR

TINY_CONFIG = """
[sandbox]
memory_gb = 6

[tasks.mqar]
vocab_size = 64
seq_len = 32
num_kv_pairs = 4
train_examples = 512
eval_examples = 64
proxy_steps = 16
"""


#: a model whose attention has no mask: its outputs depend on future tokens
NON_CAUSAL = """
import torch
from torch import nn

class Bidirectional(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.embed = nn.Embedding(spec.vocab_size, 16)
        self.attn = nn.MultiheadAttention(16, 1, batch_first=True)  # no mask: sees the future
        self.head = nn.Linear(16, spec.vocab_size)

    def forward(self, x):
        h = self.embed(x)
        return self.head(h + self.attn(h, h, h, need_weights=False)[0])

def build_model(spec):
    return Bidirectional(spec)
"""


def sandbox_trial(
    task: TokenTask, trial_dir: Path, source: str, stage: str = "proxy", **extra: Any
) -> TrialReport:
    """One real trial through the basic sandbox, seed 0, as the trainer runs it."""
    return run_trial(
        launcher=BasicLauncher(), trial_dir=trial_dir, task=task, data=task.data(0),
        source=source, stage=stage, seed=0, threads=1, memory_bytes=6 * 2**30, **extra,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("ARCHLAB_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(NETGUARD), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tiny_task() -> MQAR:
    task = MQAR(**TINY_MQAR)
    task.budgets["proxy"] = Budget(steps=16, batch_size=16, eval_every=8, time_limit_s=60)
    return task


@pytest.fixture
def lab_dir(tmp_path: Path) -> Path:
    """A working directory with a tiny-task archlab.toml and a home beneath it."""
    (tmp_path / "archlab.toml").write_text(TINY_CONFIG)
    return tmp_path
