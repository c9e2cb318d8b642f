"""Calibrate the MQAR proxy budget: train a few reference models through the real sandbox.

For each model and training seed this runs one proxy trial with `run_trial` (the same
child process, recipe and limits a discovery run uses, one thread) and prints the trial's
seconds, final held-out answer accuracy and the score (area under the accuracy curve).

The defaults should leave the baseline clearly above chance but not saturated, let a
stronger transformer score clearly higher, and keep a trivial model at chance.

    .venv/bin/python benchmarks/calibrate_mqar.py --pairs 8 --steps 700 --seeds 0 1 2

Timings: `wall s` counts the whole child process; `cpu s` is its CPU time, which on a
shared core is the better estimate of the time on an unloaded one. `train cpu s`
subtracts the start-up cost (importing torch, loading data) measured by a smoke trial.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from archlab.sandbox.basic import BasicLauncher
from archlab.sandbox.trial import run_trial
from archlab.tasks.mqar import MQAR

HERE = Path(__file__).resolve().parent


def transformer_variant(task: MQAR, **kwargs: int) -> str:
    """The baseline's source with build_model rebuilt for other hyper-parameters."""
    args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return task.baseline_source() + (
        "\n\ndef build_model(spec):  # calibration variant\n"
        f"    return Transformer(spec.vocab_size, spec.seq_len, {args})\n"
    )


def model_sources(task: MQAR) -> dict[str, str]:
    return {
        "baseline": task.baseline_source(),  # d64, 1 head, 2 layers
        "wide": transformer_variant(task, d_model=128, n_heads=2),
        "deep": transformer_variant(task, n_layers=4),
        "heads2": transformer_variant(task, n_heads=2),
        "conv": (HERE / "mqar_models" / "conv.py").read_text(),
        "mlp": (HERE / "mqar_models" / "mlp.py").read_text(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=None, help="number of key-value pairs")
    parser.add_argument("--seq-len", type=int, default=None)
    parser.add_argument("--vocab", type=int, default=None)
    parser.add_argument("--train-examples", type=int, default=None)
    parser.add_argument("--eval-examples", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="proxy steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=["baseline", "wide", "conv"])
    parser.add_argument(
        "--time-limit",
        type=float,
        default=600.0,
        help="per-trial wall limit here (the task's own is printed)",
    )
    args = parser.parse_args()

    overrides = {
        "num_kv_pairs": args.pairs,
        "seq_len": args.seq_len,
        "vocab_size": args.vocab,
        "train_examples": args.train_examples,
        "eval_examples": args.eval_examples,
        "proxy_steps": args.steps,
    }
    task = MQAR(**{k: v for k, v in overrides.items() if v is not None})
    budget = task.budgets["proxy"]
    # Measure slow models too instead of killing them at the task's limit.
    task.budgets["proxy"] = replace(budget, time_limit_s=args.time_limit)
    sources = model_sources(task)
    unknown = set(args.models) - set(sources)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; known: {sorted(sources)}")

    t0 = time.perf_counter()
    data = task.data(args.data_seed)
    print(
        f"MQAR vocab={task.vocab_size} seq_len={task.seq_len} pairs={task.num_kv_pairs} "
        f"train_examples={task.train_examples} steps={budget.steps} "
        f"eval_every={budget.eval_every} limit={budget.time_limit_s:.0f} s "
        f"(data {time.perf_counter() - t0:.1f} s; "
        f"chance ~{1 / (task.vocab_size - task.vocab_size // 2):.3f})"
    )

    with tempfile.TemporaryDirectory(prefix="calibrate_mqar_") as tmp:

        def trial(name: str, stage: str, seed: int):
            return run_trial(
                launcher=BasicLauncher(),
                trial_dir=Path(tmp) / f"{name}-{stage}-{seed}",
                task=task,
                data=data,
                source=sources[name],
                stage=stage,
                seed=seed,
                threads=1,
                memory_bytes=8 << 30,
            )

        startup = trial("baseline", "smoke", 0)  # 2 steps: the fixed cost of a trial
        print(
            f"start-up (smoke trial): wall {startup.wall_time_s:.1f} s, "
            f"cpu {startup.cpu_time_s:.1f} s\n"
        )
        header = (
            f"{'model':<9}{'params':>9}{'seed':>5}{'steps':>6}{'wall s':>8}{'cpu s':>7}"
            f"{'train cpu s':>12}{'ms/step':>8}{'final':>7}{'best':>7}{'AUC':>7}  curve"
        )
        print(header)
        print("-" * len(header))
        for name in args.models:
            for seed in args.seeds:
                r = trial(name, "proxy", seed)
                if r.status != "ok":
                    print(f"{name:<9}{'':>9}{seed:>5}  {r.error_class}: {r.message}")
                    continue
                score = task.metrics(r.checkpoints, data)
                train_cpu = r.cpu_time_s - startup.cpu_time_s
                curve = " ".join(f"{p['accuracy']:.2f}" for p in score.curve)
                values = score.values
                print(
                    f"{name:<9}{r.n_params:>9,}{seed:>5}{budget.steps:>6}{r.wall_time_s:>8.1f}"
                    f"{r.cpu_time_s:>7.1f}{train_cpu:>12.1f}"
                    f"{1000 * train_cpu / budget.steps:>8.1f}"
                    f"{values['accuracy']:>7.3f}{values['best_accuracy']:>7.3f}"
                    f"{values['accuracy_auc']:>7.3f}  {curve}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
