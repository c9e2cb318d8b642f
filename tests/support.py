"""Helpers shared by the test files (fixtures stay in conftest.py): the tiny task's
settings, the net guard, one real sandboxed trial, the CLI as a subprocess, the web UI on
loopback, and a fake executor that answers trials instantly with scripted reports."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from archlab import benchmarks
from archlab.memory.store import Memory
from archlab.sandbox.launcher import BasicLauncher
from archlab.sandbox.trial import TrialReport, run_trial
from archlab.tasks.base import TokenTask
from archlab.ui.server import UIServer
from fake_llm import Reply, fenced

# No test can reach a real model: sockets connect to loopback only, in this process from
# here on and, through PYTHONPATH (see conftest's _isolated_environment), in Python
# subprocesses.
NETGUARD = Path(__file__).parent / "netguard"
_spec = importlib.util.spec_from_file_location("netguard", NETGUARD / "sitecustomize.py")
assert _spec is not None and _spec.loader is not None
netguard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(netguard)

#: a task small enough that a proxy trial takes a few seconds, mostly interpreter start-up
#: (the benchmarks' own small MQAR; TINY_CONFIG below says the same in TOML)
TINY_MQAR = benchmarks.TINY_MQAR

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


# --- the CLI, as a user runs it ----------------------------------------------------------


def _env(cwd: Path, extra: dict[str, str]) -> dict[str, str]:
    """The test's environment without its ARCHLAB_* settings, the home under `cwd`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHLAB_")}
    return {**env, "ARCHLAB_HOME": str(cwd / "home"), **extra}


def archlab(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "archlab", *args],
        cwd=cwd,
        env=_env(cwd, {}),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def start(cwd: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """`archlab ARGS` in the background, as `archlab` runs it (`env` added); its stderr is
    kept for the failure message."""
    return subprocess.Popen(
        [sys.executable, "-m", "archlab", *args],
        cwd=cwd,
        env=_env(cwd, env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


# --- the web UI ----------------------------------------------------------------------------

#: text no page may show unescaped: it would run in the reader's browser
HOSTILE = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'


@contextmanager
def serving(memory: Memory) -> Iterator[str]:
    """The UI on an ephemeral loopback port, in a thread; yields its base URL."""
    server = UIServer(memory, "127.0.0.1", 0, log=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url.rstrip("/")
    finally:
        server.shutdown()
        server.server_close()


def hostile_plan(d_model: int) -> Reply:
    """A planner's answer whose every text field carries HOSTILE."""
    plan = {
        "motivation": f"motivation {HOSTILE}",
        "hypothesis": f"a gated recurrence at width {d_model} {HOSTILE}",
        "operator": "new",
        "parents": [],
        "expected_effect": "a lower cost at a similar score",
        "genome": {"d_model": d_model, "blocks": [{"mixer": "gated_recurrence", "channel": "mlp"}]},
    }
    return Reply(fenced(plan), reasoning_content=f"reasoning {HOSTILE}")
