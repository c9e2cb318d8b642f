"""The audit: a confirmed gain too large to take on trust is checked, and the checks decide.

A candidate whose confirmed mean beats the baseline's by more than `fitness.audit_ratio`
(3: four times the baseline's score) is not accepted on its seed statistics alone: a leak, a
broken metric or a forged score looks exactly like that. Three checks, run as real
sandboxed trials at the proxy budget and judged on the trusted side, decide it:

- **fresh_data**: trained and scored on a fresh draw of the task's data (`task.data(seed)`
  at a seed drawn from the operating system's entropy, so that no candidate can regenerate
  the held-out targets from it). It must keep `ladder.audit_keep` (half) of its confirmed
  gain over the baseline, or reach its lowest confirmed seed. A score that rests on the
  run's particular data (memorised, regenerated or leaked targets) does not survive.
- **shuffled_control**: trained on the run's data with its training targets permuted across
  examples (the inputs no longer say anything about the targets), then scored on the true
  held-out targets. It must stay near chance: within `ladder.audit_control_margin` (a
  quarter) of its gain above chance. Chance is measured, not assumed: the baseline trained
  the same way (once per task, then reused; the baseline's confirmed mean if that trial
  fails). A score that survives shuffled targets does not come from learning: forged
  targets, or an answer written into the code rather than learned.
- **causality**: the causality probe with `ladder.audit_causality_pairs` pairs, on the model
  the fresh-data trial trained; the smoke stage probed a model after two steps. A model
  that sees the future only once trained, or only outside the smoke trial, is caught.

Each check is recorded (`checks`, stage `audit`, by name) with what it measured. All pass:
the candidate is accepted, its verdict saying it was audited and what passed. Any fails:
it is rejected, with the evidence.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from archlab.eval.stats import Judgement
from archlab.eval.verify import CausalityProbe, causality_probe
from archlab.records import Candidate, Outcome
from archlab.roles import ladder, trainer
from archlab.roles.context import RunContext

#: the audit's checks, in the order they are recorded
CHECKS = ("fresh_data", "shuffled_control", "causality")
#: the audit's trials, by the name in their ids (`trainer.run_stage`'s `name`)
FRESH_TRIAL, CONTROL_TRIAL = "audit_fresh", "audit_control"


@dataclass(frozen=True)
class Check:
    name: str
    status: Literal["passed", "failed", "skipped"]
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    error_class: str | None = None


def due(candidate: Candidate, decision: Judgement) -> str | None:
    """Why an accepted candidate must be audited before its verdict is final, or None."""
    if candidate["origin"] == "baseline" or decision.verdict != "accept":
        return None
    return decision.audit


def audit(ctx: RunContext, candidate: Candidate) -> dict[str, Any]:
    """Run the audit's trials, record each check, and return the outcome's `audit`: whether
    it passed, a sentence, the checks and what they cost in seconds."""
    started = time.monotonic()
    cid, source = candidate["candidate_id"], candidate["source"]
    baseline_id = ctx.baseline_id()
    assert baseline_id is not None, "an audit compares with the baseline"
    scores = ctx.memory.seed_scores_of([cid, baseline_id])
    seeds, baseline_seeds = scores.get(cid, []), scores.get(baseline_id, [])
    settings = ctx.settings.ladder

    fresh_seed = _fresh_seed(ctx.settings.run.data_seed)
    probe = None
    if ctx.task.causal and ctx.task.kind == "sequence":
        probe = causality_probe(
            ctx.data_for(fresh_seed).eval_x, ctx.task.spec["vocab_size"],
            settings.audit_causality_pairs, seed=secrets.randbits(32),
        )  # fmt: skip
    jobs: dict[str, Any] = {
        "fresh": lambda: trainer.run_stage(
            ctx, cid, source, "audit", data_seed=fresh_seed, probe=probe, name=FRESH_TRIAL
        ),
        "control": lambda: trainer.run_stage(
            ctx, cid, source, "audit", shuffle_targets=secrets.randbits(63), name=CONTROL_TRIAL
        ),
    }
    chance_trial = trainer.trial_id_for(baseline_id, CONTROL_TRIAL, ctx.settings.run.proxy_seed)
    measured = ctx.memory.trial(chance_trial)
    if measured is None or measured["score"] is None:  # once per task, then reused
        baseline = ctx.memory.candidates_by_id([baseline_id])[baseline_id]
        jobs["chance"] = lambda: trainer.run_stage(
            ctx, baseline_id, baseline["source"], "audit",
            shuffle_targets=secrets.randbits(63), name=CONTROL_TRIAL,
        )  # fmt: skip
    done = dict(zip(jobs, ladder.each(ctx, lambda job: job(), list(jobs.values())), strict=True))
    chance: float | None = done["chance"].get("score") if "chance" in done else None
    if measured is not None and chance is None:
        chance = measured["score"]

    baseline_mean = _mean(baseline_seeds)
    checks = [
        fresh_data_check(done["fresh"], seeds, baseline_mean, settings.audit_keep, fresh_seed),
        control_check(
            done["control"], _mean(seeds), chance, baseline_mean, settings.audit_control_margin
        ),
        causality_check(done["fresh"], probe, fresh_seed),
    ]
    for check in checks:
        ladder.record(ctx, cid, "audit", check.status, name=check.name,
                      error_class=check.error_class, message=check.message,
                      details=check.details)  # fmt: skip
    return outcome_of(checks, time.monotonic() - started, chance_trial)


def _fresh_seed(run_seed: int) -> int:
    """A data seed no candidate can guess, and never the run's."""
    seed = secrets.randbits(62)
    return seed if seed != run_seed else seed + 1


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _failed_trial(name: str, what: str, trial: Outcome, details: dict[str, Any]) -> Check:
    reason = f"{trial.get('error_class')}: {trial.get('message')}"
    if trial["status"] == "ok":  # trained, but a budget that evaluates nothing
        reason = "no score came back"
    return Check(name, "failed", f"{what} it did not train ({reason})", details,
                 trial.get("error_class") or "audit")  # fmt: skip


def fresh_data_check(
    trial: Outcome, seeds: list[float], baseline_mean: float, keep: float, data_seed: int
) -> Check:
    """Fresh data: it must keep `keep` of its confirmed gain over the baseline, or reach its
    lowest confirmed seed (whichever is lower)."""
    mean, lowest = _mean(seeds), min(seeds, default=0.0)
    kept = baseline_mean + keep * (mean - baseline_mean)
    threshold = min(kept, lowest)
    score = trial.get("score")
    details = {
        "data_seed": data_seed, "score": score, "threshold": threshold, "kept": kept,
        "keep": keep, "confirmed_mean": mean, "lowest_seed": lowest,
        "baseline_mean": baseline_mean,
    }  # fmt: skip
    what = f"on fresh data (seed {data_seed})"
    if trial["status"] != "ok" or score is None:
        return _failed_trial("fresh_data", what, trial, details)
    passed = score >= threshold
    return Check(
        "fresh_data",
        "passed" if passed else "failed",
        f"{what} it scores {score:.4f}, {'at least' if passed else 'below'} {threshold:.4f} "
        f"(the lower of the baseline's {baseline_mean:.4f} plus {keep:.0%} of its confirmed "
        f"gain, {kept:.4f}, and its lowest confirmed seed, {lowest:.4f})",
        details,
        None if passed else "audit",
    )


def control_check(
    trial: Outcome, mean: float, chance: float | None, baseline_mean: float, margin: float
) -> Check:
    """Shuffled targets: it must stay within `margin` of its gain above chance; chance is
    the baseline trained the same way, else (that trial failed) the baseline's mean."""
    source = "the baseline trained on shuffled targets"
    if chance is None:
        chance, source = baseline_mean, "the baseline's confirmed mean: its shuffled trial failed"
    allowed = chance + margin * max(mean - chance, 0.0)
    score = trial.get("score")
    details = {"score": score, "chance": chance, "chance_from": source, "allowed": allowed,
               "margin": margin, "confirmed_mean": mean}  # fmt: skip
    what = "trained on shuffled targets"
    if trial["status"] != "ok" or score is None:
        return _failed_trial("shuffled_control", what, trial, details)
    passed = score <= allowed
    return Check(
        "shuffled_control",
        "passed" if passed else "failed",
        f"{what} it scores {score:.4f}, {'within' if passed else 'above'} {allowed:.4f} "
        f"(chance {chance:.4f}, {source}, plus {margin:.0%} of its gain above chance)"
        + ("" if passed else ": its score does not come from learning the task"),
        details,
        None if passed else "audit",
    )


def causality_check(trial: Outcome, probe: CausalityProbe | None, data_seed: int) -> Check:
    """The causality probe on the model the fresh-data trial trained."""
    if probe is None:
        return Check("causality", "skipped", "the task is not autoregressive")
    details = {
        "pairs": len(probe.pairs),
        "positions": sorted({t for _, _, t in probe.pairs}),
        "data_seed": data_seed,
    }
    if trial["status"] != "ok":
        return _failed_trial("causality", "on fresh data", trial, details)
    result = trial.get("causality") or {"ok": False, "message": "no probe outputs came back"}
    if not result["ok"]:
        message = f"after training, on {len(probe.pairs)} probe pairs: {result['message']}"
        return Check("causality", "failed", message, details, "causality")
    message = f"causal on {len(probe.pairs)} probe pairs after training on fresh data"
    return Check("causality", "passed", message, details)


def outcome_of(checks: list[Check], seconds: float, chance_trial: str) -> dict[str, Any]:
    """The outcome's `audit`: passed only when no check failed."""
    failed = [c for c in checks if c.status == "failed"]
    shown = failed or [c for c in checks if c.status == "passed"]
    words = "failed the audit" if failed else "passed the audit"
    return {
        "passed": not failed,
        "summary": f"{words}: " + "; ".join(f"{c.name}: {c.message}" for c in shown),
        "checks": [asdict(c) for c in checks],
        "seconds": round(seconds, 1),
        "chance_trial": chance_trial,
    }


def decide(decision: Judgement, result: dict[str, Any]) -> Judgement:
    """The final verdict on an audited candidate: the audit's outcome decides."""
    if decision.verdict == "reject":  # the statistics alone reject it
        return decision
    why = decision.audit or "its gain over the baseline was audited"
    if result["passed"]:
        return Judgement(
            "accept", f"{decision.reason}; {why}, and it {result['summary']}", decision.difference
        )
    return Judgement(
        "reject", f"{why}, and it {result['summary']} ({decision.reason})", decision.difference
    )
