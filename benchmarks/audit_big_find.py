"""Measure the audit on a true big find: at the default MQAR settings, a wide multi-head
softmax-attention genome with a short causal convolution ahead of it (a shift: an induction
head) against the 1-head baseline, through the real ladder and sandbox.

In a fresh home it confirms the baseline (`archlab run --trials 1`), then evaluates the wide
genome as `archlab eval` would: proxy, confirm and, where its confirmed gain over the baseline
exceeds `fitness.audit_ratio`, the audit. It prints the scores, the gain, each audit check
with what it measured, the verdict, and what the audit cost: its seconds (wall, from the
outcome) and the wall and CPU seconds of its trials.

    .venv/bin/python benchmarks/audit_big_find.py --heads 4 --workers 2

The machine is shared: the CPU seconds of the trials say more than the wall clock.

Measured on a shared 2-core machine (load ~3), 2 workers: the baseline 0.068 / 0.110 /
0.109; `d128 h4 [causal_conv+none, softmax_attention+mlp]` 0.591 / 0.624 / 0.591, a gain
of 5.3x, audited and accepted: fresh data 0.533 (threshold 0.349), shuffled targets 0.0075
(chance 0.0067, allowed 0.156), causal on 32 pairs. The audit took 276 s of wall clock, its
three trials 74 + 75 + 43 CPU seconds (the last, the baseline's shuffled-targets trial,
once per task). Without the convolution, `d128 h4 [softmax_attention+mlp] x2` is no big
find at this budget: 0.115 / 0.101 / 0.099, not shown better than the baseline, so not
audited (`--blocks softmax_attention+mlp,softmax_attention+mlp`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console

from archlab.config import load_settings
from archlab.orchestration.runs import discover, evaluate_file, open_memory
from archlab.search.genome import Block, Genome, render
from archlab.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument(
        "--blocks",
        default="causal_conv+none,softmax_attention+mlp",
        help="MIXER+CHANNEL per layer, comma-separated",
    )
    parser.add_argument("--workers", type=int, default=2, help="trials at once")
    parser.add_argument("--audit-ratio", type=float, default=3.0)
    parser.add_argument("--home", type=Path, default=None, help="default: a temporary one")
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="archlab-audit-"))
    settings = load_settings(
        flags={
            "home": str(home),
            "run": {"task": "mqar", "trials": 1},
            "executor": {"workers": args.workers},
            "fitness": {"audit_ratio": args.audit_ratio},
            "search": {"random_samples": 0},
            "ladder": {"scale_top": 0},
        },
        environ={},
    )
    console = Console(stderr=True)
    started = time.monotonic()
    memory = open_memory(settings.home_dir)
    baseline_id = memory.baseline_id(get_task("mqar").fingerprint())
    if baseline_id is None:  # a home measured before keeps its confirmed baseline
        discover(settings, console)
        baseline_id = memory.baseline_id(get_task("mqar").fingerprint())
    assert baseline_id is not None
    baseline_s = time.monotonic() - started

    blocks = [
        Block.model_validate(dict(zip(("mixer", "channel"), b.split("+"), strict=True)))
        for b in args.blocks.split(",")
    ]
    genome = Genome(d_model=args.d_model, n_heads=args.heads, blocks=tuple(blocks))
    path = home / "wide.py"
    path.write_text(render(genome))
    started = time.monotonic()
    result = evaluate_file(settings, path, console)
    candidate_s = time.monotonic() - started

    baseline_seeds = memory.seed_scores(baseline_id)
    seeds = memory.seed_scores(result["candidate_id"])
    audit_trials = [
        t
        for cid in (result["candidate_id"], baseline_id)
        for t in memory.trials(cid)
        if t["stage"] == "audit" and t["run_id"] == result["run_id"]
    ]
    report = {
        "genome": genome.describe(),
        "baseline_seeds": baseline_seeds,
        "candidate_seeds": seeds,
        "gain": (sum(seeds) / len(seeds)) / (sum(baseline_seeds) / len(baseline_seeds)) - 1
        if seeds and baseline_seeds
        else None,
        "verdict": result["verdict"],
        "audit": result.get("audit"),
        "audit_trials": [
            {k: t[k] for k in ("trial_id", "score", "wall_time_s", "cpu_time_s")}
            for t in audit_trials
        ],
        "audit_trials_cpu_s": sum(t["cpu_time_s"] or 0 for t in audit_trials),
        "baseline_run_s": round(baseline_s),
        "candidate_eval_s": round(candidate_s),
        "home": str(home),
    }
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
