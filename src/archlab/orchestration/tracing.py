"""Graph nodes that record their spans (see `archlab.memory.spans` for how spans are read
back and exported)."""

from __future__ import annotations

import secrets
from typing import Any, Protocol

from archlab.memory.store import now
from archlab.orchestration.state import LabState
from archlab.roles.context import RunContext


class NodeFn(Protocol):
    """A node's work: the lane's state in, a partial update of it back (the graph passes
    its nodes' runtime context in a closure)."""

    def __call__(self, state: LabState) -> dict[str, Any]: ...


#: the agent role each graph node plays
NODE_ROLES = {
    "plan": "planner",
    "code": "coder",
    "verify": "trainer",
    "train": "trainer",
    "critique": "critic",
    "record": "lab",
    "conclude": "lab",
}


def traced(ctx: RunContext, name: str, fn: NodeFn) -> NodeFn:
    """`fn` as a graph node that records its span: start, end, status and candidate.

    The node runs in one memory batch: its writes commit together when it returns, before
    LangGraph checkpoints it, so a kill never leaves a checkpoint ahead of the memory (the
    node in flight runs again on resume); a node that raises leaves none of the writes it
    held, only its span. Spans are handed on in the state, where each checkpoint keeps
    them, and a candidate's are written together by its `record` (or the node that stops
    the lane, or fails): no commit for the nodes that write nothing else (planning, a
    critique), one INSERT for the candidate's spans, and a kill loses none."""

    def node(state: LabState) -> dict[str, Any]:
        started = now()
        handed_on = state.get("spans") or []

        def span(update: dict[str, Any], error: BaseException | None) -> dict[str, Any]:
            # the candidate the node leaves behind: plan picks a new one, code may repair it
            candidate = (
                update["candidate"] if "candidate" in update else state.get("candidate")
            ) or {}
            return {
                "span_id": secrets.token_hex(8),
                "run_id": ctx.run_id,
                "name": name,
                "role": NODE_ROLES[name],
                "candidate_id": candidate.get("candidate_id"),
                "status": "ok" if error is None else "error",
                "error": None if error is None else f"{type(error).__name__}: {error}",
                "started_at": started,
                "ended_at": now(),
            }

        try:
            with ctx.memory.batch():
                update = fn(state)
                if name in ("record", "conclude") or "stopped" in update:
                    ctx.memory.save_handed_on_spans(handed_on)
                    ctx.memory.save_span(**span(update, None))
                    spans = []
                else:
                    spans = [*handed_on, span(update, None)]
        except BaseException as e:  # Ctrl-C too: the span shows where the run stopped
            with ctx.memory.batch():
                ctx.memory.save_handed_on_spans(handed_on)
                ctx.memory.save_span(**span({}, e))
            raise
        return {**update, "spans": spans} if spans or handed_on else update

    return node
