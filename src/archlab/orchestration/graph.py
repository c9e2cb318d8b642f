"""The LangGraph graph of one lane: plan -> code -> verify -> train -> critique -> record,
looping until the run's budget is spent; a promising candidate goes from critique back to
train at the confirm stage, and in design mode a failed one goes from record back to code
for a bounded number of repairs. This module is the edges; the nodes are in `nodes`, and
the run's lanes are driven by `lanes`."""

from __future__ import annotations

import functools
from typing import Any, Protocol

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from archlab.orchestration import nodes
from archlab.orchestration.lab import Lab
from archlab.orchestration.state import LabState
from archlab.orchestration.tracing import traced
from archlab.roles.context import Cancelled


class Node(Protocol):
    """A node as LangGraph calls it: the lane's state, and the run's context injected."""

    __name__: str

    def __call__(self, state: LabState, *, runtime: Runtime[Lab]) -> dict[str, Any]: ...


NODES: tuple[Node, ...] = (
    nodes.plan,
    nodes.code,
    nodes.verify,
    nodes.train,
    nodes.critique,
    nodes.record,
)


def build_graph(checkpointer: BaseCheckpointSaver[Any] | None = None) -> Any:
    graph = StateGraph(LabState, context_schema=Lab)
    for node in NODES:
        graph.add_node(node.__name__, _traced(node))
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
    graph.add_conditional_edges("record", _after_record, ["code", "plan", END])
    return graph.compile(checkpointer=checkpointer)


def _after_record(state: LabState) -> str:
    if state.get("single"):
        return END
    return "code" if state.get("repair_next") else "plan"  # plan stops once a budget is spent


def _traced(node: Node) -> Node:
    """`node` with its span recorded. Once the run was told to stop, the lane leaves
    before the node (its span says so), which then runs on resume."""

    @functools.wraps(node)  # LangGraph reads the state schema and `runtime` from it
    def run(state: LabState, *, runtime: Runtime[Lab]) -> dict[str, Any]:
        def unless_cancelled(state: LabState) -> dict[str, Any]:
            if runtime.context.cancel.is_set():
                raise Cancelled("the run was told to stop")
            return node(state, runtime=runtime)

        return traced(runtime.context, node.__name__, unless_cancelled)(state)

    return run
