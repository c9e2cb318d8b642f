"""The LangGraph graph of one lane: plan -> code -> verify -> train -> critique -> record,
looping until the run's budget is spent; in design mode a failed candidate goes from record
back to code for a bounded number of repairs. Each node is a small function of the state
that returns a partial update; the resources it needs come from the run context, which
the run's lanes share (lab.py runs them and concludes the run once they are done)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from rich.markup import escape

from archlab.eval.verify import ast_hash, source_hash
from archlab.llm.brains import ReplayExhausted
from archlab.llm.client import NoAnswer
from archlab.orchestration.budget import SAVE_ELAPSED_S
from archlab.orchestration.state import LabState
from archlab.orchestration.tracing import NodeFn, traced
from archlab.roles import coder, critic, ladder, planner, reviewer, trainer
from archlab.roles.context import Cancelled, RunContext
from archlab.sandbox.process import read_tail
from archlab.sandbox.protocol import LOG_FILE


def build_graph(ctx: RunContext, checkpointer: BaseCheckpointSaver[Any] | None = None) -> Any:
    lanes = ctx.settings.run.lanes

    def _lane_tag(state: LabState) -> str:
        """Lines of a run with several lanes say which lane printed them."""
        return f"[dim]L{state.get('lane', 0)}[/] " if lanes > 1 else ""

    def plan(state: LabState) -> dict[str, Any]:
        stopped = ctx.budget.claim()
        if stopped is None:
            # Steps number the brain's ideas (the baseline is step 0) and interleave the
            # lanes (lane k of K takes k+1, k+1+K, ...): the same step on a re-run after a
            # crash, so that LLM answers are found again, not paid twice, and a replay
            # (with as many lanes) finds its answers even where the baseline exists.
            step = state["step"] + lanes if state.get("step") else state.get("lane", 0) + 1
            try:
                candidate = planner.plan(ctx, state, step)
            except ReplayExhausted as e:
                ctx.budget.release()
                stopped = f"replay complete: {e}"
            except BaseException:
                ctx.budget.release()
                raise
            else:
                step = 0 if candidate["origin"] == "baseline" else step
                ctx.inflight.add(
                    candidate["candidate_id"], candidate["origin"], coder.genome_key(candidate)
                )
                return {
                    "candidate": {
                        **candidate,
                        "step": step,
                        "repair": 0,
                        "lane": state.get("lane", 0),
                    },
                    "step": max(step, state.get("step", 0)),
                    "outcome": {},
                    "verdict": {},
                }
        ctx.console.print(f"{_lane_tag(state)}stopped: {escape(str(stopped))}")
        return {"candidate": None, "stopped": stopped}

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
        with ctx.budget.saving(candidate["candidate_id"]) as n:
            _save_candidate(candidate)
            if lanes > 1:  # other lanes count saved candidates: commit before the claim goes
                ctx.memory.flush()
        plan = candidate["plan"]
        what = plan.get("summary") or plan["hypothesis"]
        if failed is not None:
            what = f"repair {candidate['repair']} of {failed['candidate_id']}: {what}"
        ctx.console.print(
            f"{_lane_tag(state)}[bold]#{n}[/] {candidate['candidate_id']} "
            f"[cyan]{plan['operator']}[/] {escape(what)}"
        )
        # the repair's slot is settled by the save
        return {"candidate": candidate, "outcome": outcome, "verdict": {}, "repair_next": False}

    def _save_candidate(candidate: dict[str, Any]) -> None:
        source = candidate["source"]
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
            lane=candidate.get("lane"),
            step=candidate.get("step"),
        )

    def verify(state: LabState) -> dict[str, Any]:
        candidate = state["candidate"] or {}
        with live_status(ctx, candidate["candidate_id"], "verify"):
            return {"outcome": ladder.verify(ctx, candidate), "stage": "proxy"}

    def train(state: LabState) -> dict[str, Any]:
        candidate, stage = state["candidate"] or {}, state.get("stage", "proxy")
        cid = candidate["candidate_id"]
        if stage == "proxy" and ctx.settings.run.review:
            refused = reviewer.await_review(ctx, candidate)
            if refused is not None:
                return {"outcome": refused}
        with live_status(ctx, cid, stage):
            if stage == "confirm":
                return {"outcome": {**state["outcome"], **ladder.confirm(ctx, candidate)}}
            outcome = trainer.run_stage(ctx, cid, candidate["source"], "proxy")
        ladder.record_proxy(ctx, cid, outcome)
        return {"outcome": outcome}

    def critique(state: LabState) -> dict[str, Any]:
        candidate, outcome = state["candidate"] or {}, state["outcome"]
        if outcome["status"] != "ok":
            return {"verdict": critic.critique(ctx, candidate, outcome), "stage": "proxy"}
        ref = ladder.reference(ctx, candidate)  # one look-up for both questions
        if state.get("stage") == "proxy":
            why = ladder.worth_confirming(ctx, candidate, outcome["score"], ref)
            if why is not None:
                ctx.console.print(
                    f"{_lane_tag(state) or '  '}[cyan]promote[/] to confirm: {escape(why)}"
                )
                return {"verdict": {"verdict": "promote", "reason": why}, "stage": "confirm"}
        decision = ladder.decide(ctx, candidate, outcome, ref)
        return {"verdict": critic.critique(ctx, candidate, outcome, decision), "stage": "proxy"}

    def record(state: LabState) -> dict[str, Any]:
        candidate, outcome, verdict = state["candidate"] or {}, state["outcome"], state["verdict"]
        # the outcome, its verdict and (every few seconds) the run's time commit at once,
        # before other lanes stop seeing the candidate as in flight (they count the random
        # samples recorded and in flight)
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
        ctx.budget.save_elapsed(every_s=SAVE_ELAPSED_S)
        if lanes > 1:
            ctx.memory.flush()
        ctx.inflight.discard(candidate["candidate_id"])
        line = _summary(candidate, outcome, verdict)
        ctx.console.print(f"{_lane_tag(state) or '  '}{line}")
        # the repair's slot is claimed here, in a node, so that a re-run claims it again
        repair_next = (
            not state.get("single")
            and verdict["verdict"] == "repair"
            and ctx.budget.claim() is None
        )
        return {
            "evaluated": state.get("evaluated", 0) + 1,
            "history": [*state.get("history", []), line][-20:],
            "repair_next": repair_next,
        }

    graph = StateGraph(LabState)
    for node in (plan, code, verify, train, critique, record):
        graph.add_node(node.__name__, traced(ctx, node.__name__, _cancellable(ctx, node)))
    graph.add_conditional_edges(
        START, lambda s: "code" if s.get("candidate") else "plan", ["code", "plan"]
    )
    graph.add_conditional_edges(
        "plan", lambda s: "code" if s.get("candidate") else END, ["code", END]
    )
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
        return "code" if s.get("repair_next") else "plan"  # plan stops once a budget is spent

    graph.add_conditional_edges("record", after_record, ["code", "plan", END])
    return graph.compile(checkpointer=checkpointer)


def _cancellable(ctx: RunContext, node: NodeFn) -> NodeFn:
    """`node`, unless the run was told to stop: then the lane leaves before it, so that
    the node runs on resume."""

    @functools.wraps(node)  # LangGraph reads the state schema from the wrapped signature
    def guarded(state: LabState) -> dict[str, Any]:
        if ctx.cancel.is_set():
            raise Cancelled("the run was told to stop")
        return node(state)

    return guarded


@contextmanager
def live_status(ctx: RunContext, candidate_id: str, stage: str) -> Iterator[None]:
    """A spinner that follows the newest trial log of the candidate: elapsed time and the
    latest step line. A terminal shows one spinner: a run with several lanes prints lines,
    and output to a file or pipe gets none (its threads would cost every candidate)."""
    if ctx.settings.run.lanes > 1 or not ctx.console.is_terminal:
        yield
        return
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
