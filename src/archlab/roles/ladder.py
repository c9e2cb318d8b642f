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
from dataclasses import asdict
from typing import Any, TypeVar

from archlab.eval.stats import Interval, Judgement, difference, judge, summarize
from archlab.eval.verify import ast_hash, causality_probe, source_hash, static_check
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
    name, seeds = ref
    if score > _mean(seeds):
        return f"proxy {score:.4f} is above {name}'s mean {_mean(seeds):.4f}"
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
    seeds = range(1, ctx.settings.ladder.confirm_seeds)
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
        name, seeds = ref
        return Judgement(
            "reject",
            f"proxy {outcome['score']:.4f} is not above {name}'s mean {_mean(seeds):.4f}; "
            "not confirmed",
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
    """The run's best candidate against the baseline and against random sampling of the
    same space ("NAS evaluation is frustratingly hard"), each with a 95% interval."""
    fp = ctx.task_fingerprint
    baseline = ctx.memory.baseline(fp)
    ranked = [
        c
        for c in ctx.memory.candidates(ctx.run_id)
        if c["status"] == "ok" and c["origin"] != "baseline"
    ]
    verdicts = {cid: v["verdict"] for cid, v in ctx.memory.verdicts(ctx.run_id).items()}
    accepted = [c for c in ranked if is_accepted(verdicts.get(c["candidate_id"]))]
    best = accepted[0] if accepted else (ranked[0] if ranked else None)
    result: dict[str, Any] = {"scale": scaled, "best": None}
    if best is None:
        return result
    ids = [best["candidate_id"], *([baseline["candidate_id"]] if baseline else [])]
    seeds = ctx.memory.seed_scores_of(ids)
    best_seeds = seeds.get(best["candidate_id"], [])
    result["best"] = {
        "candidate_id": best["candidate_id"],
        "score": best["score"],
        "seeds": len(best_seeds),
        "accepted": best in accepted,
    }
    baseline_seeds = seeds.get(baseline["candidate_id"], []) if baseline else []
    if best_seeds and baseline_seeds:
        result["vs_baseline"] = asdict(difference(best_seeds, baseline_seeds))
    random_scores = ctx.memory.random_sample_scores(fp)
    if best_seeds and random_scores:
        diff = difference(best_seeds, random_scores)
        result["vs_random"] = {**asdict(diff), "random_samples": len(random_scores),
                               "random_mean": _mean(random_scores)}  # fmt: skip
    return result
