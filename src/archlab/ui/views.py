"""What each page shows, read from the memory. Every view batches its queries under one
short-lived connection, so a live run waits for a reader at most one page's worth."""

from __future__ import annotations

from typing import Any

from archlab.errors import ArchlabError
from archlab.memory import in_flight
from archlab.memory import weights as kept_weights
from archlab.memory.spans import spans_of
from archlab.memory.store import Memory, now
from archlab.report import code_diff, family
from archlab.report.plots import curve_plots, params_plot, score_plot
from archlab.search.genome import Genome, genome_changes, genome_of, render


class NotFound(Exception):
    """No run or candidate answers to the id in the address."""


def run_href(run_id: str) -> str:
    return f"/runs/{run_id}"


def candidate_href(candidate_id: str) -> str:
    return f"/candidates/{candidate_id}"


def weights_href(candidate_id: str) -> str:
    return f"/weights/{candidate_id}{kept_weights.SUFFIX}"


def _find(lookup: Any, key: str) -> dict[str, Any]:
    try:
        found: dict[str, Any] = lookup(key)
    except ArchlabError as e:
        if "match" not in str(e):  # a locked or broken memory is not a missing page
            raise
        raise NotFound(str(e)) from None
    return found


def runs(memory: Memory) -> dict[str, Any]:
    return {"runs": memory.runs(evals=True)}  # every run, evaluations marked


def _budgets(
    run: dict[str, Any], n_candidates: int, tokens: int, usd: float
) -> list[dict[str, Any]]:
    """Each budget's use against its limit from the run's config (None: no limit)."""
    limits = (run["config"] or {}).get("run", {})
    if run["status"] == "running":
        elapsed_s = (now() - run["started_at"]).total_seconds()
    else:  # the time it spent running over all its sessions, as the budget counts it
        elapsed_s = run["elapsed_s"] or 0.0
    minutes, max_usd = limits.get("minutes") or 0, limits.get("max_usd") or 0
    rows = [
        ("candidates", n_candidates, limits.get("trials"), "{:,}"),
        ("wall time", elapsed_s, minutes * 60, "{:,.0f} s"),
        ("tokens", tokens, limits.get("max_tokens"), "{:,}"),
        ("dollars", usd, max_usd, "${:,.4f}"),
    ]
    return [
        {
            "name": name,
            "spent": spent,
            "limit": limit or None,
            "shown": fmt.format(spent),
            "limit_shown": fmt.format(limit) if limit else "none",
            # past 1 where the run overran its limit (a candidate in flight always finishes)
            "fraction": spent / limit if limit else None,
            "over_shown": fmt.format(spent - limit) if limit and spent > limit else None,
        }
        for name, spent, limit, fmt in rows
    ]


def progress(memory: Memory, run_id: str) -> dict[str, Any]:
    """The run's state and budgets: the live refresh's JSON and the run page's header."""
    with memory.connect():
        run = _find(memory.get_run, run_id)
        candidates = memory.candidates(run["run_id"])
        tokens, usd = memory.llm_usage(run["run_id"])
        counts = memory.trial_counts(run["run_id"])
        live = run["status"] == "running"
        stages = in_flight.of_run(memory, run["run_id"]) if live else []
    scored = [c["score"] for c in candidates if c["score"] is not None]
    statuses = ",".join(sorted(f"{c['candidate_id']}={c['status']}" for c in candidates))
    return {
        "run_id": run["run_id"],
        "status": run["status"],
        "live": live,
        "message": run["message"],
        "started_at": run["started_at"],
        "finished_at": run["finished_at"],
        "n_candidates": len(candidates),
        "n_trials": counts["trials"],
        "best_score": max(scored, default=None),
        "in_flight": _in_flight(stages),
        "lanes": ((run["config"] or {}).get("run") or {}).get("lanes") or 1,
        "budgets": _budgets(run, len(candidates), tokens, usd),
        "candidates": [
            {k: c[k] for k in ("candidate_id", "status", "score", "n_params")} for c in candidates
        ],
        # changes whenever the page would: the live page reloads when it does
        "version": f"{run['status']}|{counts['trials']}|{statuses}",
    }


def _in_flight(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the run's lanes are doing now: each stage in flight, for how long so far."""
    clock = now()
    return [{**s, "seconds": max((clock - s["started_at"]).total_seconds(), 0.0)} for s in stages]


def run_page(memory: Memory, run_id: str) -> dict[str, Any]:
    with memory.connect():
        state = progress(memory, run_id)
        run = memory.get_run(state["run_id"])
        spans = memory.spans(run["run_id"])
        leaderboard = memory.candidates(run["run_id"])
        verdicts = memory.verdicts(run["run_id"])
    by_time = sorted(leaderboard, key=lambda c: c["created_at"])
    return {
        "run": run,
        "progress": state,
        "leaderboard": leaderboard,
        "verdicts": {cid: v["verdict"] for cid, v in verdicts.items()},
        "family": family(leaderboard),
        "score_plot": score_plot(by_time, candidate_href),
        "params_plot": params_plot(
            leaderboard, candidate_href, {cid: v["verdict"] for cid, v in verdicts.items()}
        ),
        # steps about no one candidate (the conclusion)
        "run_steps": [s for s in spans if s["candidate_id"] is None],
    }


def _trace(memory: Memory, run_id: str, candidate_id: str) -> list[dict[str, Any]]:
    """The candidate's spans: its graph nodes and whatever ran inside them (a planner call
    belongs to no candidate yet, but to the plan node that made this one)."""
    spans = spans_of(memory, run_id, candidate_id)
    nodes = {
        s["span_id"] for s in spans if s["kind"] == "node" and s["candidate_id"] == candidate_id
    }
    return [
        s
        for s in spans
        if s["span_id"] in nodes or s["parent_id"] in nodes or s["candidate_id"] == candidate_id
    ]


def candidate_page(memory: Memory, candidate_id: str) -> dict[str, Any]:
    with memory.connect():
        candidate = _find(memory.get_candidate, candidate_id)
        cid = candidate["candidate_id"]
        parents = []
        for pid in candidate["parents"] or []:
            try:
                parents.append(_find(memory.get_candidate, pid))
            except NotFound:  # a parent from a memory this one was not copied with
                parents.append({"candidate_id": pid, "missing": True})
        trials = memory.trials(cid)
        page: dict[str, Any] = {
            "c": candidate,
            "run": memory.get_run(candidate["run_id"]),
            "parents": parents,
            "checks": memory.checks(cid),
            "verdict": memory.verdict(cid),
            "trials": trials,
            "curves": curve_plots(trials),
            "trace": _trace(memory, candidate["run_id"], cid),
            "weights": kept_weights.weights_of(memory, cid),
        }
    first = parents[0] if parents and not parents[0].get("missing") else None
    against = _as_rendered(first, candidate) if first else None
    page["diff"] = code_diff(against, candidate).splitlines() if against else None
    page["diff_as_genome"] = against is not None and against is not first
    page["genome_changes"] = genome_changes(genome_of(first), candidate["genome"]) if first else []
    return page


def _as_rendered(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """What to diff a child against: its parent, or, for a hand-written parent the planner
    mutated as a genome (the packaged baseline), that genome as rendered code (the parent's
    own code differs from the child's on every line; the genome's shows the mutation)."""
    genome = genome_of(parent)
    if parent["genome"] or not genome or not child["genome"]:
        return parent
    rendered = render(Genome.model_validate(genome))
    return {**parent, "source": rendered, "candidate_id": f"{parent['candidate_id']}-as-genome"}


def weights_file(memory: Memory, name: str) -> tuple[str, bytes]:
    """A candidate's kept weights to download (`CANDIDATE.safetensors`, the full id): the
    file's name and bytes, checked against the memory's record."""
    candidate_id = name.removesuffix(kept_weights.SUFFIX)
    with memory.connect():
        record = kept_weights.weights_of(memory, candidate_id) if name != candidate_id else None
    if record is None:
        raise NotFound(f"no weights kept for {name}")
    return f"{candidate_id}{kept_weights.SUFFIX}", kept_weights.stored_bytes(memory, record)
