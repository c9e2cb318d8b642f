"""The trainer: runs a candidate's trials through the sandbox, scores them on the trusted
side, and records every trial in memory."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from archlab.agents.state import RunContext
from archlab.sandbox.trial import TrialReport, run_trial

#: error classes the harness may report; anything else a child claims becomes "runtime"
KNOWN_ERRORS = {"syntax", "import", "contract", "build", "params", "shape", "nan", "oom", "runtime"}


def run_stage(ctx: RunContext, candidate_id: str, source: str, stage: str) -> dict[str, Any]:
    """Run one trial of `candidate_id` at `stage`; return its outcome as stored."""
    seed = ctx.proxy_seed
    trial_id = trial_id_for(ctx, candidate_id, stage)
    report = run_trial(
        launcher=ctx.launcher,
        trial_dir=ctx.trial_dir(trial_id),
        task=ctx.task,
        data=ctx.data,
        source=source,
        stage=stage,
        seed=seed,
        threads=ctx.settings.sandbox.threads,
        memory_bytes=int(ctx.settings.sandbox.memory_gb * 2**30),
    )
    outcome = _outcome(ctx, report)
    ctx.memory.save_trial(
        trial_id=trial_id,
        candidate_id=candidate_id,
        run_id=ctx.run_id,
        stage=stage,
        seed=seed,
        budget=asdict(ctx.task.budgets[stage]),
        status=report.status,
        error_class=outcome["error_class"],
        message=outcome["message"],
        exit_reason=report.exit_reason,
        wall_time_s=report.wall_time_s,
        cpu_time_s=report.cpu_time_s,
        peak_rss_mb=report.peak_rss_mb,
        isolation=ctx.launcher.level,
        score=outcome["score"],
        metrics=outcome["metrics"],
        curve=outcome.pop("curve"),
        loss_curve=report.loss_curve,
        log_tail=report.log_tail,
    )
    return outcome


def trial_id_for(ctx: RunContext, candidate_id: str, stage: str) -> str:
    return f"{candidate_id}-{stage}-s{ctx.proxy_seed}"


def _outcome(ctx: RunContext, report: TrialReport) -> dict[str, Any]:
    outcome: dict[str, Any] = {
        "status": "ok",
        "error_class": None,
        "message": None,
        "score": None,
        "metrics": None,
        "curve": None,
        "n_params": report.n_params,
        "wall_time_s": report.wall_time_s,
    }
    if report.status != "ok":
        error = (
            report.error_class
            if report.error_class in KNOWN_ERRORS | {"timeout", "crash"}
            else "runtime"
        )
        message = report.message or ""
        if error == "crash" and report.log_tail.strip():
            message += "; log ends: " + report.log_tail.strip().splitlines()[-1][:300]
        return {**outcome, "status": "failed", "error_class": error, "message": message}
    if report.checkpoints:
        scored = ctx.task.score(report.checkpoints, ctx.data.eval_y)
        outcome.update(score=scored.score, metrics=scored.metrics, curve=scored.curve)
    return outcome
