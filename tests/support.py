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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from typer.testing import CliRunner

from archlab import benchmarks
from archlab.benchmarks.orchestration import causal_probe
from archlab.cli import app
from archlab.memory.store import Memory
from archlab.sandbox.basic import BasicLauncher
from archlab.sandbox.executor import TrialRequest, rebuild_task
from archlab.sandbox.trial import TrialReport, run_trial
from archlab.sandbox.weights import serialize
from archlab.tasks.base import TokenTask
from archlab.tasks.mqar import IGNORE_INDEX
from archlab.ui.server import UIServer
from fake_llm import Reply, fenced, think

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


#: the smallest model a trial trains: an embedding and a head
EMBED = """
import torch

class Model(torch.nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.embed = torch.nn.Embedding(spec.vocab_size, 16)
        self.head = torch.nn.Linear(16, spec.vocab_size)

    def forward(self, x):
        return self.head(self.embed(x))

def build_model(spec):
    return Model(spec)
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


def cli(home: Path, *args: str) -> str:
    """`archlab --home HOME ARGS...` in this process (CliRunner): its output; an exception
    it raised is raised here, and it must exit 0."""
    result = CliRunner().invoke(app, ["--home", str(home), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


def path_without_bubblewrap(shadow: Path) -> str:
    """A PATH on which `bwrap` cannot be found, so that archlab runs at the basic level: each
    directory that holds it is replaced by a folder of links to everything else in it."""
    dirs = []
    for n, folder in enumerate(os.environ["PATH"].split(os.pathsep)):
        if (Path(folder) / "bwrap").exists():
            copy = shadow / str(n)
            copy.mkdir(parents=True)
            for entry in Path(folder).iterdir():
                if entry.name != "bwrap":
                    (copy / entry.name).symlink_to(entry)
            folder = str(copy)
        dirs.append(folder)
    return os.pathsep.join(dirs)


# --- the fake model's answers --------------------------------------------------------------


def design_plan(body: dict[str, Any]) -> Reply:
    """A design-mode planner's answer: mutate the best candidate, the baseline (the first
    one its prompt lists), into a two-head transformer."""
    prompt = body["messages"][-1]["content"]
    baseline = prompt.split("### Best candidates\n- `", 1)[1][:12]
    plan = {
        "motivation": "the baseline has a single head",
        "hypothesis": "two attention heads let the model match keys and values separately",
        "operator": "mutate",
        "parents": [baseline],
        "expected_effect": "higher accuracy at the same parameter count",
        "summary": "two-head transformer",
    }
    return Reply(think(fenced(plan)))


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


# --- a fake executor -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scripted:
    """How FakeExecutor answers a trial: ok with `score` as the held-out accuracy at every
    checkpoint (MQAR's score, the accuracy's area under the curve, is then `score`, to the
    nearest answer position), or failed with `failure`. The audit's trials: `shuffled` is
    the score when trained on shuffled targets and `fresh` on data at a seed other than the
    run's (0); None for either: `score`. With `leaks`, causality probes are answered as a
    model that sees the next token would."""

    score: float = 0.5
    failure: Literal["crash", "nan", "timeout"] | None = None
    #: why the weights a trial was asked for did not come back; None: they did
    weights_error: str | None = None
    shuffled: float | None = None
    fresh: float | None = None
    leaks: bool = False


#: failed trials as the sandbox reports them: (exit reason, message)
_FAILURES = {
    "crash": ("crash", "the trial wrote no result"),
    "nan": ("ok", "the training loss became nan at step 1"),
    "timeout": ("timeout", "the trial ran past its time limit and was killed"),
}
#: the weights FakeExecutor sends back when asked: one float32 tensor, as safetensors
FAKE_WEIGHTS = serialize([("w", "F32", [2], np.array([1.5, -2.0], dtype="<f4").tobytes())])


class FakeExecutor:
    """An Executor that runs nothing: each trial is answered at once from `script`, by the
    candidate's ordinal (1 = the first candidate that reached the executor, the baseline
    in a fresh run) alone or with the stage: `{2: Scripted(failure="crash"),
    (3, "proxy"): Scripted(score=0.9)}`; anything else gets `Scripted()`. Causality probes
    are answered causally, as RecordedExecutor does; complexity timings are not answered
    (the tasks tested set no complexity limit); a request's stop rule sees the checkpoints
    one by one, as in a real trial. With `interrupt_at=N`, the Nth trial
    raises KeyboardInterrupt instead (a Ctrl-C during it), once."""

    workers = 1

    def __init__(
        self,
        script: Mapping[int | tuple[int, str], Scripted] | None = None,
        interrupt_at: int | None = None,
    ) -> None:
        self.script = dict(script or {})
        self.interrupt_at = interrupt_at
        #: every request answered or interrupted, in order
        self.requests: list[TrialRequest] = []
        #: candidate ids in the order their first trial came
        self.candidates: list[str] = []
        #: the trial `interrupt_at` stopped (other lanes may start one more meanwhile)
        self.interrupted: str | None = None
        self._lock = threading.Lock()  # lanes call at once

    def describe(self) -> str:
        return "fake trials"

    def run(self, request: TrialRequest) -> TrialReport:
        candidate_id = request.trial_id.rsplit("-", 2)[0]  # trainer.trial_id_for's format
        with self._lock:
            self.requests.append(request)
            if candidate_id not in self.candidates:
                self.candidates.append(candidate_id)
            n = self.candidates.index(candidate_id) + 1
            if len(self.requests) == self.interrupt_at:
                self.interrupt_at = None
                self.interrupted = request.trial_id
                raise KeyboardInterrupt
        answer = self.answer(n, request)
        if answer.failure is not None:
            exit_reason, message = _FAILURES[answer.failure]
            return TrialReport(
                status="error", error_class=answer.failure, message=message,
                exit_reason=exit_reason, isolation="none",
            )  # fmt: skip
        task, data = rebuild_task(request)
        vocab = task.spec["vocab_size"]
        probe = None if request.probe_x is None else causal_probe(request.probe_x, vocab)
        if probe is not None and answer.leaks:
            probe = causal_probe(np.roll(request.probe_x, -1, axis=1), vocab)  # the next token
        score = answer.score
        if request.shuffle_targets is not None and answer.shuffled is not None:
            score = answer.shuffled
        elif request.data_seed != 0 and answer.fresh is not None:
            score = answer.fresh
        budget = request.budget
        checkpoints = [  # none where the budget evaluates nothing (smoke)
            (step, _predictions(data.eval_y, score, vocab))
            for step in range(budget.eval_every, budget.steps + 1, budget.eval_every)
        ] if budget.eval_every else []  # fmt: skip
        for seen in range(1, len(checkpoints) + 1):  # the stop rule looks on, as run_trial's
            reason = request.stop(checkpoints[:seen]) if request.stop else None
            if reason is not None:
                return TrialReport(
                    status="stopped", message=reason, checkpoints=checkpoints[:seen],
                    exit_reason="stopped", isolation="none",
                )  # fmt: skip
        weights = request.weights and answer.weights_error is None
        return TrialReport(
            status="ok", n_params=10_000, isolation="none",
            loss_curve=[{"step": budget.steps, "loss": 1.0}],
            checkpoints=checkpoints, probe=probe,
            weights=FAKE_WEIGHTS if weights else None,
            weights_error=answer.weights_error if request.weights else None,
        )  # fmt: skip

    def answer(self, n: int, request: TrialRequest) -> Scripted:
        """What the `n`th candidate's trial gets."""
        return self.script.get((n, request.stage)) or self.script.get(n) or Scripted()

    def close(self) -> None:
        """Nothing runs."""


def _predictions(labels: np.ndarray, accuracy: float, vocab: int) -> np.ndarray:
    """Argmax outputs right on the first `accuracy` of the answer positions, wrong after."""
    answers = np.flatnonzero(labels.ravel() != IGNORE_INDEX)
    right = answers[: round(accuracy * len(answers))]
    predictions = (np.where(labels < 0, 0, labels) + 1) % vocab  # all wrong
    predictions.ravel()[right] = labels.ravel()[right]
    return predictions.astype(np.int32)


@contextmanager
def held_by_another_process(path: Path) -> Iterator[subprocess.Popen[str]]:
    """A DuckDB file open in another process (which holds its lock) until the block ends."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "sys.stdin.readline()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.communicate("\n", timeout=30)
