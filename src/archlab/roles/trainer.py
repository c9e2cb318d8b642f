"""The trainer: runs a candidate's trials through the sandbox, scores them on the trusted
side, and records every trial in memory. A proxy trial's trained weights wait beside the
memory until the ladder decides whether the candidate keeps them (memory.weights)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from archlab.eval.fitness import Fitness
from archlab.eval.stopping import EarlyStop
from archlab.eval.verify import CausalityProbe, causality_check, complexity_check
from archlab.memory import weights as kept_weights
from archlab.records import Outcome
from archlab.roles.context import Cancelled, RunContext
from archlab.sandbox.executor import TrialRequest
from archlab.sandbox.trial import TrialReport
from archlab.tasks.base import TokenData

#: error classes the harness may report; anything else a child claims becomes "runtime"
KNOWN_ERRORS = {"syntax", "import", "contract", "build", "params", "shape", "nan", "oom", "runtime"}
#: error classes the trusted side itself decides
TRUSTED_ERRORS = {"timeout", "crash", "pids", "policy"}
#: stages trained with another stage's budget: confirm repeats the proxy on other seeds,
#: and the audit's trials repeat it on fresh data or shuffled targets
BUDGET_OF = {"confirm": "proxy", "audit": "proxy"}


def fitness_of(ctx: RunContext) -> Fitness:
    f = ctx.settings.fitness
    return Fitness.for_task(ctx.task, f.metric, f.direction, f.param_penalty, f.latency_penalty)


def trial_id_for(candidate_id: str, stage: str, seed: int) -> str:
    return f"{candidate_id}-{stage}-s{seed}"


def run_stage(
    ctx: RunContext,
    candidate_id: str,
    source: str,
    stage: str,
    seed: int | None = None,
    probe: CausalityProbe | None = None,
    complexity: bool = False,
    stop: EarlyStop | None = None,
    data_seed: int | None = None,
    shuffle_targets: int | None = None,
    name: str | None = None,
) -> Outcome:
    """Run one trial of `candidate_id` at `stage`; return its outcome as stored.

    With `probe`, the outcome holds the causality check; with `complexity`, the time-growth
    check (both judged here, on the trusted side); with `stop`, a curve that cannot catch
    up ends early (status `stopped`, scored on its partial curve). `data_seed` trains and
    scores on the task's data at that seed instead of the run's; `shuffle_targets` trains on
    targets permuted across examples by that seed (`TrialRequest`); `name` tells apart trials
    of one stage and seed in the trial's id (the audit's)."""
    seed = ctx.settings.run.proxy_seed if seed is None else seed
    data_seed = ctx.settings.run.data_seed if data_seed is None else data_seed
    budget = ctx.task.budgets[BUDGET_OF.get(stage, stage)]
    trial_id = trial_id_for(candidate_id, name or stage, seed)
    settings = ctx.settings
    request = TrialRequest(
        trial_id=trial_id,
        stage=stage,
        seed=seed,
        source=source,
        budget=budget,
        task_name=settings.run.task,
        task_options=settings.tasks.get(settings.run.task, {}),
        data_seed=data_seed,
        threads=settings.sandbox.threads,
        memory_bytes=int(settings.sandbox.memory_gb * 2**30),
        probe_x=None if probe is None else probe.inputs,
        complexity=complexity,
        gpus=settings.executor.gpus_per_trial,
        stop=stop,
        weights=stage == "proxy" and settings.ladder.keep_weights,
        shuffle_targets=shuffle_targets,
        precision=settings.executor.precision,
        compile=settings.executor.compile,
        gpu_share=1 / settings.executor.trials_per_gpu,
    )
    stopped = f"trial {trial_id} stopped with the run; it runs again on resume"
    if ctx.cancel.is_set():
        raise Cancelled(stopped)
    report = ctx.executor.run(request)
    if ctx.cancel.is_set():  # stopped on purpose (Ctrl-C): not the candidate's failure
        raise Cancelled(stopped)
    outcome = _outcome(ctx, report, stop, ctx.data_for(data_seed))
    if report.status == "ok" and probe is not None and report.probe is not None:
        outcome["causality"] = asdict(causality_check(probe, report.probe))
    if report.status == "ok" and report.complexity and ctx.task.max_time_exponent:
        check = complexity_check(report.complexity, ctx.task.max_time_exponent)
        outcome["complexity"] = {**asdict(check), "points": report.complexity}
    fitness = fitness_of(ctx)
    weights_note = _stash_weights(ctx, candidate_id, report) if request.weights else None
    ctx.memory.save_trial(
        trial_id=trial_id,
        candidate_id=candidate_id,
        run_id=ctx.run_id,
        stage=stage,
        seed=seed,
        budget=asdict(budget),
        status=report.status,
        error_class=outcome["error_class"],
        message=outcome["message"] or weights_note,
        exit_reason=report.exit_reason,
        wall_time_s=report.wall_time_s,
        cpu_time_s=report.cpu_time_s,
        peak_rss_mb=report.peak_rss_mb,
        isolation=report.isolation,
        score=outcome["score"],
        metrics=outcome["metrics"],
        curve=outcome.pop("curve"),
        loss_curve=report.loss_curve,
        log_tail=report.log_tail,
        fitness=fitness.definition() if outcome["score"] is not None else None,
    )
    return outcome


def _stash_weights(ctx: RunContext, candidate_id: str, report: TrialReport) -> str | None:
    """Hold the weights a trial sent back until the ladder decides; why not, for a trial
    that scored without them (its outcome stands)."""
    if report.status == "ok" and report.weights is not None:
        kept_weights.stash(ctx.memory, candidate_id, report.weights)
        return None
    kept_weights.discard(ctx.memory, candidate_id)  # an earlier attempt's, if any
    if report.status != "ok":
        return None
    return f"weights not kept: {report.weights_error or 'none came back'}"


def keep_weights(ctx: RunContext, candidate_id: str) -> dict[str, Any] | None:
    """Keep the weights of the candidate's proxy trial (it reached the confirm stage);
    their record, or None where none came back."""
    return kept_weights.keep(
        ctx.memory,
        candidate_id,
        run_id=ctx.run_id,
        trial_id=trial_id_for(candidate_id, "proxy", ctx.settings.run.proxy_seed),
        spec=ctx.task.spec,
    )


def drop_weights(ctx: RunContext, candidate_id: str) -> None:
    """Drop the candidate's waiting weights: it was not promoted (kept ones stay)."""
    kept_weights.discard(ctx.memory, candidate_id)


def _outcome(
    ctx: RunContext, report: TrialReport, stop: EarlyStop | None, data: TokenData
) -> Outcome:
    outcome: Outcome = {
        "status": "ok",
        "error_class": None,
        "message": None,
        "score": None,
        "metrics": None,
        "curve": None,
        "n_params": report.n_params,
        "wall_time_s": report.wall_time_s,
    }
    if report.status == "stopped" and stop is not None:
        outcome.update({"status": "stopped", "message": report.message, "n_params": stop.n_params})
    elif report.status != "ok":
        error = report.error_class
        if error not in KNOWN_ERRORS | TRUSTED_ERRORS:
            error = "runtime"
        message = report.message or ""
        if error == "crash" and report.log_tail.strip():
            message += "; log ends: " + report.log_tail.strip().splitlines()[-1][:300]
        return {**outcome, "status": "failed", "error_class": error, "message": message}
    if report.checkpoints:
        metrics = ctx.task.metrics(report.checkpoints, data)
        score = fitness_of(ctx).score(metrics.values, report.n_params or 0, report.wall_time_s)
        # the steps trained: a timed budget gives a faster architecture more of them
        steps = max([report.checkpoints[-1][0], *(p["step"] for p in report.loss_curve[-1:])])
        values = {**metrics.values, "steps": steps}
        outcome.update({"score": score, "metrics": values, "curve": metrics.curve})
    return outcome
