"""The LangGraph graph: plan -> code -> verify -> train -> critique -> record, looping
until the run's budget is spent; in design mode a failed candidate goes from record back
to code for a bounded number of repairs. Each node is a small function of the state that
returns a partial update; the resources it needs come from the run context."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from rich.markup import escape

from archlab.agents import coder, critic, ladder, planner, trainer
from archlab.agents.brains import ReplayExhausted
from archlab.agents.llm import NoAnswer
from archlab.agents.state import LabState, RunContext
from archlab.eval.verify import ast_hash, source_hash
from archlab.memory.spans import traced
from archlab.sandbox.launcher import LOG_FILE, read_tail


def build_graph(ctx: RunContext, checkpointer: BaseCheckpointSaver[Any] | None = None) -> Any:
    def plan(state: LabState) -> dict[str, Any]:
        stopped = ctx.stop_reason(state)
        if stopped is None:
            # Steps count the brain's ideas (the baseline is step 0), so that a replay of
            # this run into a memory that already holds the baseline finds its answers.
            step = state.get("step", 0) + 1
            try:
                candidate = planner.plan(ctx, state, step)
            except ReplayExhausted as e:
                stopped = f"replay complete: {e}"
            else:
                step = 0 if candidate["origin"] == "baseline" else step
                return {
                    "candidate": {**candidate, "step": step, "repair": 0},
                    "step": max(step, state.get("step", 0)),
                    "outcome": {},
                    "verdict": {},
                }
        ctx.console.print(f"stopped: {escape(str(stopped))}")
        return {"candidate": None, "stopped": stopped}

    def conclude(state: LabState) -> dict[str, Any]:
        time_left = not ctx.settings.run.minutes or (
            ctx.clock() - state["started_at"] < ctx.settings.run.minutes * 60
        )
        with _live_status(ctx, "the best", "scale"):
            scaled = ladder.scale(ctx, time_left)
        summary = ladder.summary(ctx, scaled)
        ctx.memory.set_run_summary(ctx.run_id, summary)
        return {"summary": summary}

    def code(state: LabState) -> dict[str, Any]:
        candidate = dict(state["candidate"] or {})
        verdict = state.get("verdict") or {}
        failed = None
        if verdict.get("verdict") == "repair":
            failed = {
                "candidate_id": candidate["candidate_id"],
                "source": candidate["source"],
                "problem": verdict["reason"],
            }
            candidate = coder.next_attempt(candidate)
        outcome: dict[str, Any] = {}
        try:
            source = coder.write_code(ctx, candidate, failed)
        except NoAnswer as e:
            source, outcome = "", ladder.rejected("answer", str(e))
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
        if failed is not None:
            what = f"repair {candidate['repair']} of {failed['candidate_id']}: {what}"
        ctx.console.print(
            f"[bold]#{n}[/] {candidate['candidate_id']} [cyan]{plan['operator']}[/] {escape(what)}"
        )
        return {"candidate": candidate, "outcome": outcome, "verdict": {}}

    def verify(state: LabState) -> dict[str, Any]:
        candidate = state["candidate"] or {}
        with _live_status(ctx, candidate["candidate_id"], "verify"):
            return {"outcome": ladder.verify(ctx, candidate), "stage": "proxy"}

    def train(state: LabState) -> dict[str, Any]:
        candidate, stage = state["candidate"] or {}, state.get("stage", "proxy")
        cid = candidate["candidate_id"]
        with _live_status(ctx, cid, stage):
            if stage == "confirm":
                return {"outcome": {**state["outcome"], **ladder.confirm(ctx, candidate)}}
            outcome = trainer.run_stage(ctx, cid, candidate["source"], "proxy")
        ladder.record_proxy(ctx, cid, outcome)
        return {"outcome": outcome}

    def critique(state: LabState) -> dict[str, Any]:
        candidate, outcome = state["candidate"] or {}, state["outcome"]
        if outcome["status"] != "ok":
            return {"verdict": critic.critique(ctx, candidate, outcome), "stage": "proxy"}
        if state.get("stage") == "proxy":
            why = ladder.worth_confirming(ctx, candidate, outcome["score"])
            if why is not None:
                ctx.console.print(f"  [cyan]promote[/] to confirm: {escape(why)}")
                return {"verdict": {"verdict": "promote", "reason": why}, "stage": "confirm"}
        decision = ladder.decide(ctx, candidate, outcome)
        return {"verdict": critic.critique(ctx, candidate, outcome, decision), "stage": "proxy"}

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
            seeds=outcome.get("seeds"),
            fitness=trainer.fitness_of(ctx).definition() if outcome.get("score") else None,
            audit=verdict["reason"] if verdict["verdict"] == "audit" else None,
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
    for node in (plan, code, verify, train, critique, record, conclude):
        graph.add_node(node.__name__, traced(ctx, node.__name__, node))
    graph.add_conditional_edges(
        START, lambda s: "code" if s.get("candidate") else "plan", ["code", "plan"]
    )
    graph.add_conditional_edges(
        "plan", lambda s: "code" if s.get("candidate") else "conclude", ["code", "conclude"]
    )
    graph.add_edge("conclude", END)
    graph.add_conditional_edges(
        "code",
        lambda s: "critique" if s["outcome"].get("status") == "rejected" else "verify",
        ["verify", "critique"],
    )
    graph.add_conditional_edges(
        "verify",
        lambda s: "train" if s["outcome"]["status"] == "verified" else "critique",
        ["train", "critique"],
    )
    graph.add_edge("train", "critique")
    graph.add_conditional_edges(
        "critique",
        lambda s: "train" if s["verdict"]["verdict"] == "promote" else "record",
        ["train", "record"],
    )

    def after_record(s: LabState) -> str:
        if s.get("single"):
            return END
        if s["verdict"]["verdict"] == "repair" and ctx.stop_reason(s) is None:
            return "code"
        return "plan"  # which stops the run once a budget is spent

    graph.add_conditional_edges("record", after_record, ["code", "plan", END])
    return graph.compile(checkpointer=checkpointer)


@contextmanager
def _live_status(ctx: RunContext, candidate_id: str, stage: str) -> Iterator[None]:
    """A spinner that follows the newest trial log of the candidate: elapsed time and the
    latest step line."""
    trials = ctx.home / "trials" / ctx.run_id
    label = f"  {stage} {candidate_id}"
    started = time.monotonic()
    stop = threading.Event()
    with ctx.console.status(label) as status:

        def follow() -> None:
            while not stop.wait(0.5):
                logs = sorted(trials.glob(f"*/{LOG_FILE}"), key=_mtime)
                lines = read_tail(logs[-1], 200).strip().splitlines() if logs else []
                last = lines[-1] if lines and lines[-1].startswith("step:") else ""
                status.update(f"{label} {time.monotonic() - started:4.0f} s  {last}")

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # a trial directory removed meanwhile
        return 0.0


def _summary(candidate: dict[str, Any], outcome: dict[str, Any], verdict: dict[str, Any]) -> str:
    status = outcome["status"]
    if status == "ok":
        wall = outcome.get("wall_time_s") or 0.0
        return (
            f"[green]ok[/] score {outcome['score']:.4f} in {wall:.0f} s, "
            f"{outcome['n_params']:,} params: {verdict['verdict']} ({escape(verdict['reason'])})"
        )
    color = "yellow" if status == "duplicate" else "red"
    message = escape(str(outcome.get("message")))
    line = f"[{color}]{status}[/] {outcome.get('error_class')}: {message}"
    return line + (" [yellow]-> repair[/]" if verdict["verdict"] == "repair" else "")
