"""The LangGraph graph: plan -> code -> verify -> train -> critique -> record, looping
until the run's budget is spent. Each node is a small function of the state that returns
a partial update; the resources it needs come from the run context."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph

from archlab.agents import coder, critic, planner, trainer
from archlab.agents.state import LabState, RunContext
from archlab.eval.verify import ast_hash, source_hash, static_check
from archlab.sandbox.launcher import LOG_FILE, read_tail


def build_graph(ctx: RunContext, checkpointer: BaseCheckpointSaver[Any] | None = None) -> Any:
    def plan(state: LabState) -> dict[str, Any]:
        if not ctx.budget_left(state):
            return {"candidate": None}
        return {"candidate": planner.plan(ctx, state), "outcome": {}, "verdict": {}}

    def code(state: LabState) -> dict[str, Any]:
        candidate = dict(state["candidate"] or {})
        source = coder.write_code(ctx, candidate)
        candidate["source"] = source
        ctx.memory.save_candidate(
            candidate_id=candidate["candidate_id"],
            run_id=ctx.run_id,
            task=ctx.task.name,
            task_fingerprint=ctx.task_fingerprint,
            source=source,
            source_hash=source_hash(source),
            ast_hash=ast_hash(source),
            parents=candidate["parents"],
            plan=candidate["plan"],
            genome=candidate["genome"],
            genome_key=coder.genome_key(candidate),
            brain=candidate["brain"],
            origin=candidate["origin"],
            status="pending",
        )
        n = state.get("evaluated", 0) + 1
        plan = candidate["plan"]
        what = plan.get("summary") or plan["hypothesis"]
        ctx.console.print(
            f"[bold]#{n}[/] {candidate['candidate_id']} [cyan]{plan['operator']}[/] {what}"
        )
        return {"candidate": candidate, "outcome": {}}

    def verify(state: LabState) -> dict[str, Any]:
        candidate = state["candidate"] or {}
        source = candidate["source"]
        check = static_check(source)
        if not check.ok:
            return {"outcome": _rejected(check.error_class, check.message)}
        original = ctx.memory.find_duplicate(
            ctx.task_fingerprint, source_hash(source), ast_hash(source)
        )
        if original is not None:
            return {
                "outcome": {
                    "status": "duplicate",
                    "error_class": "duplicate",
                    "message": f"same code as {original['candidate_id']}; its result is reused",
                    "score": original["score"],
                    "metrics": original["metrics"],
                    "n_params": original["n_params"],
                    "duplicate_of": original["candidate_id"],
                }
            }
        with _live_status(ctx, candidate["candidate_id"], "smoke"):
            smoke = trainer.run_stage(ctx, candidate["candidate_id"], source, "smoke")
        if smoke["status"] != "ok":
            return {"outcome": _rejected(smoke["error_class"], smoke["message"])}
        return {"outcome": {"status": "verified", "n_params": smoke["n_params"]}}

    def train(state: LabState) -> dict[str, Any]:
        candidate = state["candidate"] or {}
        with _live_status(ctx, candidate["candidate_id"], "proxy"):
            outcome = trainer.run_stage(
                ctx, candidate["candidate_id"], candidate["source"], "proxy"
            )
        return {"outcome": outcome}

    def critique(state: LabState) -> dict[str, Any]:
        return {"verdict": critic.critique(ctx, state["candidate"] or {}, state["outcome"])}

    def record(state: LabState) -> dict[str, Any]:
        candidate, outcome, verdict = state["candidate"] or {}, state["outcome"], state["verdict"]
        ctx.memory.set_outcome(
            candidate["candidate_id"],
            status=outcome["status"],
            error_class=outcome.get("error_class"),
            message=outcome.get("message"),
            score=outcome.get("score"),
            metrics=outcome.get("metrics"),
            n_params=outcome.get("n_params"),
            duplicate_of=outcome.get("duplicate_of"),
        )
        ctx.memory.save_verdict(
            candidate_id=candidate["candidate_id"], run_id=ctx.run_id, **verdict
        )
        line = _summary(candidate, outcome, verdict)
        ctx.console.print("  " + line)
        return {
            "evaluated": state.get("evaluated", 0) + 1,
            "history": [*state.get("history", []), line][-20:],
        }

    graph = StateGraph(LabState)
    for node in (plan, code, verify, train, critique, record):
        graph.add_node(node.__name__, node)
    graph.add_conditional_edges(
        START, lambda s: "code" if s.get("candidate") else "plan", ["code", "plan"]
    )
    graph.add_conditional_edges(
        "plan", lambda s: "code" if s.get("candidate") else END, ["code", END]
    )
    graph.add_edge("code", "verify")
    graph.add_conditional_edges(
        "verify",
        lambda s: "train" if s["outcome"]["status"] == "verified" else "critique",
        ["train", "critique"],
    )
    graph.add_edge("train", "critique")
    graph.add_edge("critique", "record")
    graph.add_conditional_edges(
        "record",
        lambda s: END if s.get("single") or not ctx.budget_left(s) else "plan",
        ["plan", END],
    )
    return graph.compile(checkpointer=checkpointer)


@contextmanager
def _live_status(ctx: RunContext, candidate_id: str, stage: str) -> Iterator[None]:
    """A spinner that follows the trial's log: elapsed time and the latest step line."""
    log = ctx.trial_dir(trainer.trial_id_for(ctx, candidate_id, stage)) / LOG_FILE
    label = f"  {stage} {candidate_id}"
    started = time.monotonic()
    stop = threading.Event()
    with ctx.console.status(label) as status:

        def follow() -> None:
            while not stop.wait(0.5):
                lines = read_tail(log, 200).strip().splitlines()
                last = lines[-1] if lines and lines[-1].startswith("step:") else ""
                status.update(f"{label} {time.monotonic() - started:4.0f} s  {last}")

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()


def _rejected(error_class: str | None, message: str | None) -> dict[str, Any]:
    return {"status": "rejected", "error_class": error_class, "message": message}


def _summary(candidate: dict[str, Any], outcome: dict[str, Any], verdict: dict[str, Any]) -> str:
    status = outcome["status"]
    if status == "ok":
        wall = outcome.get("wall_time_s") or 0.0
        return (
            f"[green]ok[/] score {outcome['score']:.4f} in {wall:.0f} s, "
            f"{outcome['n_params']:,} params: {verdict['verdict']} ({verdict['reason']})"
        )
    color = "yellow" if status == "duplicate" else "red"
    return f"[{color}]{status}[/] {outcome.get('error_class')}: {outcome.get('message')}"
