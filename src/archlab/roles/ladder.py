"""The verification ladder, cheap stages first, each stage's outcome recorded per candidate:

static -> dedup -> smoke (+ causality) -> complexity -> proxy -> confirm -> audit -> scale

Everything here runs on the trusted side and decides by statistics, never by a model: a
candidate is accepted only when its confirmed seeds beat the reference's, whoever its
critic is, and, where its gain over the baseline is too large to take on trust, when it
passes the audit (roles.audit). The critic explains; the ladder decides.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from archlab.eval.stats import Interval, Judgement, difference, judge, summarize, t95
from archlab.eval.stopping import EarlyStop
from archlab.eval.verify import ast_hash, causality_probe, source_hash, static_check
from archlab.memory import queries
from archlab.records import Candidate, Outcome, is_accepted
from archlab.roles import trainer
from archlab.roles.context import RunContext

#: every stage, in the order a candidate climbs them
STAGES = (
    "static", "dedup", "smoke", "causality", "complexity", "proxy", "confirm", "audit", "scale",
)  # fmt: skip


def record(ctx: RunContext, candidate_id: str, stage: str, status: str, **check: Any) -> None:
    ctx.memory.save_check(candidate_id, stage, status, **check)


def verify(ctx: RunContext, candidate: Candidate) -> Outcome:
    """Static, dedup, smoke, causality and complexity; the outcome says how far it got."""
    cid, source = candidate["candidate_id"], candidate["source"]
    # The node's writes wait in its memory batch and commit together when it ends (a kill
    # loses them with the node, which runs again on resume). The duplicate search comes
    # before any check is written: a read commits the writes held so far.
    check = static_check(source)
    if not check.ok:
        record(ctx, cid, "static", "failed", error_class=check.error_class, message=check.message)
        return rejected(check.error_class, check.message)
    original = ctx.memory.find_duplicate(
        ctx.task_fingerprint, source_hash(source), ast_hash(source)
    )
    record(ctx, cid, "static", "passed")
    if original is not None:
        message = f"same code as {original['candidate_id']}; its result is reused"
        record(ctx, cid, "dedup", "failed", error_class="duplicate", message=message,
               details={"duplicate_of": original["candidate_id"]})  # fmt: skip
        return {
            "status": "duplicate",
            "error_class": "duplicate",
            "message": message,
            "score": original["score"],
            "metrics": original["metrics"],
            "n_params": original["n_params"],
            "duplicate_of": original["candidate_id"],
        }
    record(ctx, cid, "dedup", "passed")

    probe = None
    if ctx.task.causal and ctx.task.kind == "sequence":
        probe = causality_probe(
            ctx.data.train_x, ctx.task.spec["vocab_size"], ctx.settings.ladder.causality_pairs,
            seed=zlib.crc32(cid.encode()),
        )  # fmt: skip
    smoke = trainer.run_stage(ctx, cid, source, "smoke", probe=probe)
    if smoke["status"] != "ok":
        record(ctx, cid, "smoke", "failed", error_class=smoke["error_class"],
               message=smoke["message"])  # fmt: skip
        return rejected(smoke["error_class"], smoke["message"])
    record(ctx, cid, "smoke", "passed", details={"n_params": smoke["n_params"]})

    if probe is None:
        record(ctx, cid, "causality", "skipped", message="the task is not autoregressive")
    else:
        causal = smoke.get("causality") or {"ok": False, "message": "no probe outputs"}
        if not causal["ok"]:
            record(ctx, cid, "causality", "failed", error_class="causality",
                   message=causal["message"])  # fmt: skip
            return rejected("causality", causal["message"])
        record(ctx, cid, "causality", "passed", details={"pairs": len(probe.pairs)})

    if not (ctx.task.complexity_lengths and ctx.task.max_time_exponent):
        record(ctx, cid, "complexity", "skipped", message="the task sets no complexity limit")
    else:
        timed = trainer.run_stage(ctx, cid, source, "smoke", complexity=True, seed=1)
        result = timed.get("complexity")
        if timed["status"] != "ok" or result is None:
            message = timed["message"] or "no timings came back"
            record(ctx, cid, "complexity", "failed", error_class=timed["error_class"],
                   message=message)  # fmt: skip
            return rejected(timed["error_class"] or "complexity", message)
        status = "passed" if result["ok"] else "failed"
        record(ctx, cid, "complexity", status, error_class=result["error_class"],
               message=result["message"], details={"points": result["points"]})  # fmt: skip
        if not result["ok"]:
            return rejected("complexity", result["message"])
    return {"status": "verified", "n_params": smoke["n_params"]}


def rejected(error_class: str | None, message: str | None) -> Outcome:
    return {"status": "rejected", "error_class": error_class, "message": message}


def record_proxy(ctx: RunContext, candidate_id: str, outcome: Outcome) -> None:
    if outcome["status"] == "ok":
        record(ctx, candidate_id, "proxy", "passed", details={"score": outcome["score"]})
    elif outcome["status"] == "stopped":
        record(ctx, candidate_id, "proxy", "failed", error_class="stopped",
               message=outcome["message"], details={"score": outcome["score"]})  # fmt: skip
    else:
        record(ctx, candidate_id, "proxy", "failed", error_class=outcome["error_class"],
               message=outcome["message"])  # fmt: skip


# --- seed-aware decisions ------------------------------------------------------------


#: what a candidate must beat: a name and its seed scores, or None
Reference = tuple[str, list[float]] | None


def reference(ctx: RunContext, candidate: Candidate) -> Reference:
    """What a candidate must beat: its best confirmed parent, else the baseline."""
    baseline = ctx.baseline_id()
    if baseline == candidate["candidate_id"]:
        baseline = None
    scores = ctx.memory.seed_scores_of([*candidate["parents"], *([baseline] if baseline else [])])
    best: tuple[str, list[float]] | None = None
    for parent_id in candidate["parents"]:
        seeds = scores.get(parent_id, [])
        if len(seeds) >= 2 and (best is None or _mean(seeds) > _mean(best[1])):
            best = (f"parent {parent_id}", seeds)
    if best is not None:
        return best
    seeds = scores.get(baseline, []) if baseline else []
    return ("the baseline", seeds) if seeds else None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def early_stop(
    ctx: RunContext, candidate: Candidate, ref: Reference, n_params: int
) -> EarlyStop | None:
    """The proxy trial's stop rule (`eval.stopping`): for proposals with a reference to
    beat; the baseline's and the yardstick's random samples' scores stay whole."""
    if (
        not ctx.settings.ladder.early_stop
        or candidate["origin"] not in ("proposed", "fallback")
        or ref is None
    ):
        return None
    fitness = trainer.fitness_of(ctx)
    horizon = ctx.horizon(candidate.get("step", 0))  # what its planner saw: reproducible
    curves = queries.learning_curves(ctx.memory, ctx.task_fingerprint, horizon)
    target, what = promotion_bar(ref, ctx.settings.ladder.confirm_seeds)
    data = ctx.data  # the held-out set is all a rule scores on
    return EarlyStop(
        task=ctx.task,
        data=replace(data, train_x=data.train_x[:0], train_y=data.train_y[:0]),
        fitness=fitness,
        budget=ctx.task.budgets["proxy"],
        n_params=n_params,
        target=target,
        target_name=what,
        curves=curves,
    )


def promotion_bar(ref: tuple[str, list[float]], confirm_seeds: int) -> tuple[float, str]:
    """The proxy score a candidate must pass to earn the confirm stage, and what it is: the
    score at which, its seeds scoring as its proxy did with its reference's spread, it
    would be accepted (the reference's mean where the reference has no spread). A
    candidate below it could not be accepted on its confirm seeds: they are not spent."""
    name, seeds = ref
    n, mean = confirm_seeds, _mean(seeds)
    if len(seeds) < 2:
        return mean, f"{name}'s mean {mean:.4f}"
    spread = summarize(seeds).std
    bar = mean + t95(n + len(seeds) - 2) * spread * math.sqrt(1 / n + 1 / len(seeds))
    return bar, f"{bar:.4f}, what {n} seeds need to beat {name}'s mean {mean:.4f}"


def worth_confirming(
    ctx: RunContext, candidate: Candidate, score: float, ref: Reference
) -> str | None:
    """Why the candidate earns the confirm stage's extra seeds, or None; `ref` is what it
    must beat (`reference`)."""
    if ctx.settings.ladder.confirm_seeds < 2:
        return None
    if candidate["origin"] == "baseline":
        return "the baseline's seeds are every later comparison's reference"
    if ref is None:
        return "nothing to compare with yet"
    bar, what = promotion_bar(ref, ctx.settings.ladder.confirm_seeds)
    if score > bar:
        return f"proxy {score:.4f} is above {what}"
    return None


_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def each(ctx: RunContext, run: Callable[[_Item], _Result], items: Sequence[_Item]) -> list[_Result]:
    """`run` on every item, as many at once as the executor has workers; results in order."""
    if min(ctx.executor.workers, len(items)) <= 1:
        return [run(item) for item in items]
    pool = ThreadPoolExecutor(min(ctx.executor.workers, len(items)), thread_name_prefix="trial")
    try:
        futures = [pool.submit(run, item) for item in items]
        return [future.result() for future in futures]
    finally:  # on Ctrl-C, trials not started yet never start
        pool.shutdown(wait=False, cancel_futures=True)


def confirm(ctx: RunContext, candidate: Candidate) -> Outcome:
    """Train on the remaining seeds at the proxy budget, all of them whatever each gives; the
    outcome's score becomes the mean."""
    cid, source = candidate["candidate_id"], candidate["source"]
    first = ctx.settings.run.proxy_seed + 1  # the proxy trial trained on the one before
    seeds = range(first, first + ctx.settings.ladder.confirm_seeds - 1)
    outcomes = each(
        ctx, lambda seed: trainer.run_stage(ctx, cid, source, "confirm", seed=seed), seeds
    )
    for seed, outcome in zip(seeds, outcomes, strict=True):
        if outcome["status"] != "ok":
            message = f"seed {seed}: {outcome['message']}"
            record(ctx, cid, "confirm", "failed", error_class=outcome["error_class"],
                   message=message)  # fmt: skip
            return {**outcome, "message": message}
    scores = ctx.memory.seed_scores(cid)
    if not scores:  # a budget that evaluates nothing: there is nothing to confirm
        message = "the confirm trials produced no score"
        record(ctx, cid, "confirm", "failed", error_class="runtime", message=message)
        return {"status": "failed", "error_class": "runtime", "message": message}
    stats = summarize(scores)
    record(ctx, cid, "confirm", "passed", details=stats.to_dict())
    return {"seeds": stats.to_dict(), "score": stats.mean}


def decide(ctx: RunContext, candidate: Candidate, outcome: Outcome, ref: Reference) -> Judgement:
    """Accept or reject from the candidate's seeds against its reference `ref` (`reference`);
    an accepted gain beyond the audit ratio says so (`Judgement.audit`), and the audit
    decides (roles.audit). The baseline is accepted as the reference point: it is the
    task's own, trusted code, confirmed on seeds so that later candidates are judged
    against them, and never a discovery (`summary` never picks it)."""
    if candidate["origin"] == "baseline":
        return Judgement(
            "accept", "the reference point: later candidates are judged against its seeds",
            _no_difference(),
        )  # fmt: skip
    if ref is None:
        return Judgement("accept", "nothing to compare with yet", _no_difference())
    if "seeds" not in outcome:
        _, what = promotion_bar(ref, ctx.settings.ladder.confirm_seeds)
        return Judgement(
            "reject",
            f"proxy {outcome['score']:.4f} is not above {what}; not confirmed",
            _no_difference(),
        )
    cid, baseline = candidate["candidate_id"], ctx.baseline_id()
    scores = ctx.memory.seed_scores_of([cid, *([baseline] if baseline else [])])
    baseline_seeds = scores.get(baseline, []) if baseline else []
    name, seeds = ref
    return judge(
        scores.get(cid, []),
        seeds,
        name,
        _mean(baseline_seeds) if baseline_seeds else None,
        ctx.settings.fitness.audit_ratio,
    )


def out_of_time(why: str, stage: str) -> Judgement:
    """The verdict on a candidate that earned its next `stage` ("its confirm seeds", "its
    audit"; `why`) after the run's time budget was spent: not accepted. A run ends within
    its minutes and the trials in flight, not a confirmation and an audit later."""
    reason = f"{why}, but the run's time budget was spent before {stage}; not accepted"
    return Judgement("reject", reason, _no_difference())


def _no_difference() -> Interval:
    return Interval(0.0, -math.inf, math.inf)


# --- the end of a run: scale, and the honest comparison ------------------------------


def scale(ctx: RunContext, time_left: bool) -> dict[str, Any]:
    """Train the run's best accepted (so confirmed, and audited where they needed it)
    candidates and the baseline at the larger budget, and say whether their ranking holds."""
    top = ctx.settings.ladder.scale_top
    if not top or "scale" not in ctx.task.budgets:
        return {"status": "skipped", "reason": "scale stage switched off"}
    if not time_left:
        return {"status": "skipped", "reason": "the run's time budget is spent"}
    verdicts = ctx.memory.verdicts(ctx.run_id)
    confirmed = [
        c
        for c in ctx.memory.candidates(ctx.run_id)
        if c["seeds"]
        and c["origin"] != "baseline"
        and c["status"] == "ok"
        and is_accepted(verdicts.get(c["candidate_id"], {}).get("verdict"))
    ][:top]
    baseline = ctx.memory.baseline(ctx.task_fingerprint)
    if not confirmed or baseline is None or baseline["status"] != "ok":
        return {"status": "skipped", "reason": "no accepted candidate and baseline to rank"}
    ranked = []
    scaled = [*confirmed, baseline]
    outcomes = each(
        ctx, lambda c: trainer.run_stage(ctx, c["candidate_id"], c["source"], "scale"), scaled
    )
    for c, outcome in zip(scaled, outcomes, strict=True):
        status = "passed" if outcome["status"] == "ok" else "failed"
        record(ctx, c["candidate_id"], "scale", status, error_class=outcome["error_class"],
               message=outcome["message"], details={"score": outcome["score"]})  # fmt: skip
        if outcome["score"] is not None:
            ctx.memory.set_outcome(c["candidate_id"], scale_score=outcome["score"])
            ranked.append((c["candidate_id"], c["score"], outcome["score"]))
    proxy_order = [cid for cid, _, _ in sorted(ranked, key=lambda r: -r[1])]
    scale_order = [cid for cid, _, _ in sorted(ranked, key=lambda r: -r[2])]
    return {
        "status": "done",
        "proxy_order": proxy_order,
        "scale_order": scale_order,
        "ranking_holds": proxy_order == scale_order,
        "scores": {cid: {"proxy": p, "scale": s} for cid, p, s in ranked},
    }


def summary(ctx: RunContext, scaled: dict[str, Any]) -> dict[str, Any]:
    """The run's conclusion: its best candidate (the best accepted, else the best scored)
    against the baseline and against the yardstick, each a 95% Welch interval of the best's
    seeds against the other side's scores, and a sentence that says it.

    The yardstick is the task's random samples (`Memory.random_samples`, shared by every
    run of the same task fingerprint) less the best itself: the best architecture found
    against the average architecture drawn at random ("NAS evaluation is frustratingly
    hard"). A brain's own random restarts are proposals and never count."""
    best = ctx.memory.best_of_run(ctx.run_id)
    best_id = best["candidate_id"] if best else None
    kept = best is not None and best["accepted"]
    baseline = ctx.baseline_id()
    seeds = ctx.memory.seed_scores_of([i for i in (best_id, baseline) if i])
    best_seeds = seeds.get(best_id, []) if best_id else []
    baseline_seeds = seeds.get(baseline, []) if baseline else []
    samples = [
        score
        for cid, score in ctx.memory.random_samples(ctx.task_fingerprint).items()
        if cid != best_id
    ]
    vs_baseline = _versus(best_seeds, baseline_seeds) if baseline_seeds else None
    result: dict[str, Any] = {
        # accepted against its reference (a confirmed parent, maybe) and above the baseline
        "improved": kept and vs_baseline is not None and (vs_baseline["lo"] or 0) > 0,
        "best_id": best_id,
        "best": None
        if best is None
        else {
            "candidate_id": best_id,
            "origin": best["origin"],
            "score": best["score"],
            "seeds": len(best_seeds),
            "accepted": kept,
            "verdict": (ctx.memory.verdict(best["candidate_id"]) or {}).get("verdict"),
        },
        "vs_baseline": (
            None if vs_baseline is None else {**vs_baseline, "seeds": len(baseline_seeds)}
        ),
        "vs_random": {
            **_versus(best_seeds, samples if len(samples) >= 2 else []),
            "mean": _mean(samples) if samples else None,
            "samples": len(samples),
            "wanted": ctx.settings.search.random_samples,
            "ready": len(samples) >= 2,
        },
        "scale": scaled,
    }
    result["sentence"] = conclusion(result)
    return result


def _versus(best: list[float], other: list[float]) -> dict[str, Any]:
    """mean(best) - mean(other) (`diff`) with its 95% Welch interval (`lo`, `hi`), which
    needs two values on each side: None where it cannot be had, never an infinite bound."""
    if not best or not other:
        return {"diff": None, "lo": None, "hi": None, "mean": _mean(other) if other else None}
    d = difference(best, other)
    bounded = math.isfinite(d.low) and math.isfinite(d.high)
    return {
        "diff": d.estimate,
        "lo": d.low if bounded else None,
        "hi": d.high if bounded else None,
        "mean": _mean(other),
    }


def _against(d: dict[str, Any] | None, what: str, size: str = "") -> str:
    """One comparison in words, after "is": "+0.0210 over the baseline (95% CI +0.0120 to
    +0.0300)"."""
    if d is None or d["diff"] is None:
        return f"not compared with {what} (no scores to compare)"
    amount = f"{d['diff']:+.4f} over" if d["diff"] >= 0 else f"{-d['diff']:.4f} below"
    if d["lo"] is None:
        interval = "one seed: no interval"
    else:
        interval = f"95% CI {d['lo']:+.4f} to {d['hi']:+.4f}"
    return f"{amount} {what} ({interval}{', ' + size if size else ''})"


def conclusion(s: dict[str, Any]) -> str:
    """The run's summary (`summary`) as the sentence a run ends with: "found: ..." when a
    candidate was accepted, "nothing found: ..." otherwise."""
    best, rand = s["best"], s["vs_random"]
    if best is None:
        return "nothing found: no candidate besides the baseline trained in full"
    sampled = best["origin"] == "random"
    what = f"{best['candidate_id']}{' (a random sample)' if sampled else ''}"
    comparisons = f"is {_against(s['vs_baseline'], 'the baseline')}"
    if rand["ready"]:
        size = f"{rand['samples']} {'other ' if sampled else ''}samples"
        if not sampled and rand["samples"] < rand["wanted"]:  # a short run's yardstick
            size = f"{rand['samples']} of {rand['wanted']} samples"
        comparisons += f" and {_against(rand, 'random sampling', size)}"
    elif rand["wanted"] < 2:
        comparisons += f"; no yardstick: random_samples is {rand['wanted']} (an interval needs 2)"
    else:
        plural = "" if rand["samples"] == 1 else "s"
        have = f"{rand['samples']} {'other ' if sampled else ''}sample{plural}"
        comparisons += (
            f"; random sampling is not ready as a yardstick ({have} of the {rand['wanted']} "
            "wanted; an interval needs 2)"
        )
    if s["improved"]:
        return f"found: candidate {what} {comparisons}"
    seeds = f"{best['seeds']} seed{'s' if best['seeds'] != 1 else ''}"
    return (
        "nothing found: no candidate beat the baseline on confirmed seeds; the best, "
        f"{what}, scored {best['score']:.4f} on {seeds} and {comparisons}"
    )
