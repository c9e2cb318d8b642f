"""Calibrate the MAD, charlm and digits proxies: does each separate its baseline from a
trivial model within about a minute?

Every model is trained by `run_trial` (the same sandboxed child process, recipe, budget
and limits a discovery run uses, one thread) and scored on the trusted side. Models:
- `baseline`: the task's own baseline candidate;
- `trivial`: sees one token at a time (sequence tasks: embedding + MLP, i.e. a bigram
  model for charlm) or an unordered bag of tokens (digits: mean-pooled embeddings);
- `gru`: a 2-layer GRU (sequence tasks only), to tell attention from recurrence.

    .venv/bin/python benchmarks/calibrate_tasks.py --tasks mad-compression charlm --seeds 0 1
    .venv/bin/python benchmarks/calibrate_tasks.py --tasks mad --set proxy_steps=1000

The machine is shared, so compare models within one run of this script: `cpu s` (the
trial's CPU time) is the better estimate of its time on an unloaded core than `wall s`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from archlab.sandbox.basic import BasicLauncher
from archlab.sandbox.trial import TrialReport, run_trial
from archlab.tasks import get_task
from archlab.tasks.base import Budget, TokenData, TokenTask
from archlab.tasks.mad import SUITE

HERE = Path(__file__).resolve().parent
TASKS = [*(task.name for task in SUITE), "mad", "charlm", "digits"]

GRU = """
import torch
from torch import nn


class GRU(nn.Module):
    def __init__(self, vocab_size: int, d_model: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.rnn = nn.GRU(d_model, d_model, num_layers=2, batch_first=True)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.embed(tokens))[0])


def build_model(spec) -> nn.Module:
    return GRU(spec.vocab_size)
"""

BAG = """
import torch
from torch import nn


class Bag(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int, d_model: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.head = nn.Sequential(
            nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, num_classes)
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens).mean(dim=1))


def build_model(spec) -> nn.Module:
    return Bag(spec.vocab_size, spec.num_classes)
"""


def model_sources(task: TokenTask) -> dict[str, str]:
    if task.kind == "classification":
        return {"baseline": task.baseline_source(), "trivial": BAG}
    return {
        "baseline": task.baseline_source(),
        "trivial": (HERE / "mqar_models" / "mlp.py").read_text(),
        "gru": GRU,
    }


def trial(
    task: TokenTask,
    data: TokenData,
    source: str,
    trial_dir: Path,
    seed: int,
    stage: str,
    budget: Budget | None = None,
) -> TrialReport:
    return run_trial(
        launcher=BasicLauncher(),
        trial_dir=trial_dir,
        task=task,
        data=data,
        source=source,
        stage=stage,
        seed=seed,
        threads=1,
        memory_bytes=8 << 30,
        budget=budget,
    )


def parse_setting(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--models", nargs="+", default=["baseline", "trivial", "gru"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a task option for every task chosen, e.g. proxy_steps=500",
    )
    parser.add_argument(
        "--time-limit", type=float, default=600.0, help="per-trial wall limit (measure slow ones)"
    )
    args = parser.parse_args()
    options = dict(parse_setting(s) for s in args.settings)

    with tempfile.TemporaryDirectory(prefix="calibrate_tasks_") as tmp:
        header = (
            f"{'task':<24}{'model':<9}{'params':>9}{'seed':>5}{'steps':>6}{'wall s':>8}"
            f"{'cpu s':>7}  {'metric':<14}{'value':>7}  curve"
        )
        print(header)
        print("-" * len(header), flush=True)
        for name in args.tasks:
            task = get_task(name, options)
            budget = replace(task.budgets["proxy"], time_limit_s=args.time_limit)
            data = task.data(args.data_seed)
            startup = trial(task, data, task.baseline_source(), Path(tmp) / "smoke", 0, "smoke")
            print(
                f"{task.name}: fingerprint {task.fingerprint()}, {budget.steps} steps of "
                f"{budget.batch_size}; start-up (smoke trial) cpu {startup.cpu_time_s:.1f} s"
            )
            for model, source in model_sources(task).items():
                if model not in args.models:
                    continue
                for seed in args.seeds:
                    trial_dir = Path(tmp) / f"{task.name}-{model}-{seed}"
                    r = trial(task, data, source, trial_dir, seed, "proxy", budget)
                    if r.status != "ok":
                        error = f"{r.error_class}: {r.message}"
                        print(f"{task.name:<24}{model:<9}{'':>9}{seed:>5}  {error}")
                        continue
                    metrics = task.metrics(r.checkpoints, data)
                    main_key = next(k for k in metrics.curve[-1] if k != "step")
                    curve = " ".join(f"{p[main_key]:.2f}" for p in metrics.curve)
                    print(
                        f"{task.name:<24}{model:<9}{r.n_params:>9,}{seed:>5}{budget.steps:>6}"
                        f"{r.wall_time_s:>8.1f}{r.cpu_time_s:>7.1f}  {task.metric:<14}"
                        f"{metrics.values[task.metric]:>7.3f}  {main_key}: {curve}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
