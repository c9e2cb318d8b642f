"""Agent spans, OpenTelemetry-shaped: the trace is the run, each graph node is a span, and
each LLM call and trial is a child span of the node that ran it.

Node spans are recorded as the graph runs (`archlab.orchestration.tracing`): a candidate's
wait in the graph's state, which its checkpoints keep, and are written together when it is
recorded. LLM calls
and trials already have their own tables with timings, so their spans are derived at read
time (`spans_of`) and parented to the node span of the same candidate that encloses them
in time.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from archlab.memory.store import Memory


def trace_id(run_id: str) -> str:
    """The run's OTLP trace id: 32 hex digits."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:32]


def _span_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _node_span(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "node",
        "span_id": row["span_id"],
        "parent_id": None,
        "name": row["name"],
        "role": row["role"],
        "candidate_id": row["candidate_id"],
        "status": row["status"],
        "error": row["error"],
        "start": row["started_at"],
        "end": row["ended_at"],
        "attributes": {},
    }


def _llm_span(row: dict[str, Any]) -> dict[str, Any]:
    end: datetime = row["created_at"]  # logged once the answer arrived
    messages = (row["request"] or {}).get("messages") or []
    return {
        "kind": "llm",
        "span_id": _span_id(row["call_id"]),
        "parent_id": None,
        "name": f"chat {row['model']}",
        "role": row["role"],
        "candidate_id": row["candidate_id"],
        "status": "ok" if row["status"] == "ok" else "error",
        "error": row["error"],
        "start": end - timedelta(seconds=row["latency_s"]),
        "end": end,
        "attributes": {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": row["model"],
            "gen_ai.usage.input_tokens": row["prompt_tokens"],
            "gen_ai.usage.output_tokens": row["completion_tokens"],
            "gen_ai.response.finish_reasons": [row["finish_reason"] or ""],
            "server.address": row["base_url"] or "",
            "archlab.purpose": row["purpose"],
            "archlab.attempt": row["attempt"],
            "archlab.retry": row["retry"],
            "archlab.cost_usd": row["cost_usd"],
            # what a slow local model manages: it tells a model that writes from a dead one
            "archlab.tokens_per_s": round(row["completion_tokens"] / row["latency_s"], 1)
            if row["latency_s"]
            else None,
            "archlab.answer_status": row["status"],
        },
        "input": messages,
        "output": row["content"],
        "reasoning": row["reasoning"],
    }


def _trial_span(row: dict[str, Any]) -> dict[str, Any]:
    end: datetime = row["finished_at"]
    return {
        "kind": "trial",
        "span_id": _span_id(row["trial_id"]),
        "parent_id": None,
        "name": f"{row['stage']} seed {row['seed']}",
        "role": "trainer",
        "candidate_id": row["candidate_id"],
        "status": row["status"],
        "error": f"{row['error_class']}: {row['message']}" if row["error_class"] else None,
        "start": end - timedelta(seconds=row["wall_time_s"]),
        "end": end,
        "attributes": {
            "archlab.stage": row["stage"],
            "archlab.seed": row["seed"],
            "archlab.score": row["score"],
            "archlab.exit_reason": row["exit_reason"],
            "archlab.isolation": row["isolation"],
        },
    }


def _enclosing(nodes: dict[str | None, list[dict[str, Any]]], child: dict[str, Any]) -> str | None:
    """The node span that ran `child`: open when the child ended, and about the same
    candidate, unless either has none (planner calls; conclude scales several candidates)."""
    cid = child["candidate_id"]
    if cid is None:
        pool = [n for group in nodes.values() for n in group]
    else:
        pool = nodes.get(cid, []) + nodes.get(None, [])
    for node in sorted(pool, key=lambda n: n["start"], reverse=True):  # the latest first
        if node["start"] <= child["end"] <= node["end"]:
            return str(node["span_id"])
    return None


def spans_of(memory: Memory, run_id: str, candidate_id: str | None = None) -> list[dict[str, Any]]:
    """Every span of the run, children right after their parent, in time order. With
    `candidate_id`, of the trials and LLM calls (a run's prompts can add up to hundreds of
    megabytes) only those its trace needs: the ones that name it, and the calls of no
    candidate made while its nodes ran (the plan node's)."""
    nodes = [_node_span(r) for r in memory.spans(run_id)]
    by_candidate: dict[str | None, list[dict[str, Any]]] = {}
    for node in nodes:
        by_candidate.setdefault(node["candidate_id"], []).append(node)
    if candidate_id is None:
        calls = memory.llm_calls(run_id)
        trials = memory._query(
            "SELECT * FROM trials WHERE run_id = ? ORDER BY finished_at", [run_id]
        )
    else:
        ran = by_candidate.get(candidate_id, [])
        window = [min(n["start"] for n in ran), max(n["end"] for n in ran)] if ran else []
        calls = memory._query(
            "SELECT * FROM llm_calls WHERE run_id = ? AND (candidate_id = ? OR "
            "(candidate_id IS NULL AND created_at BETWEEN ? AND ?)) "
            "ORDER BY created_at, attempt, retry",
            [run_id, candidate_id, *(window or [None, None])],
        )
        trials = memory._query(
            "SELECT * FROM trials WHERE run_id = ? AND candidate_id = ? ORDER BY finished_at",
            [run_id, candidate_id],
        )
    children = [_llm_span(r) for r in calls] + [_trial_span(r) for r in trials]
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    for child in children:
        child["parent_id"] = _enclosing(by_candidate, child)
        by_parent.setdefault(child["parent_id"], []).append(child)
    ordered: list[dict[str, Any]] = []
    for node in nodes:
        ordered.append(node)
        ordered += sorted(by_parent.pop(node["span_id"], []), key=lambda s: s["start"])
    # children no node span encloses: runs recorded before spans existed, or a node in flight
    orphans = [s for group in by_parent.values() for s in group]
    return sorted(ordered + orphans, key=lambda s: s["start"]) if orphans else ordered


def _otlp_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # OTLP JSON encodes 64-bit integers as strings
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [_otlp_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _nanos(t: datetime) -> str:
    epoch = datetime(1970, 1, 1)  # the memory keeps naive UTC timestamps
    return str((t - epoch) // timedelta(microseconds=1) * 1000)


def to_otlp(run_id: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    """The spans as an OTLP JSON export request (what /v1/traces accepts)."""
    tid = trace_id(run_id)

    def otlp(span: dict[str, Any]) -> dict[str, Any]:
        attributes = {
            "archlab.kind": span["kind"],
            "archlab.role": span["role"],
            "archlab.candidate_id": span["candidate_id"],
            **span["attributes"],
        }
        status = {"code": 1} if span["status"] == "ok" else {"code": 2, "message": span["error"]}
        return {
            "traceId": tid,
            "spanId": span["span_id"],
            "parentSpanId": span["parent_id"] or "",
            "name": span["name"],
            "kind": 3 if span["kind"] == "llm" else 1,  # CLIENT for LLM calls, else INTERNAL
            "startTimeUnixNano": _nanos(span["start"]),
            "endTimeUnixNano": _nanos(span["end"]),
            "attributes": [
                {"key": k, "value": _otlp_value(v)} for k, v in attributes.items() if v is not None
            ],
            "status": status,
        }

    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "archlab"}},
                        {"key": "archlab.run_id", "value": {"stringValue": run_id}},
                    ]
                },
                "scopeSpans": [{"scope": {"name": "archlab"}, "spans": [otlp(s) for s in spans]}],
            }
        ]
    }
