"""Spans and the review commands, on a small memory filled through the store's own API."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from archlab.errors import ArchlabError
from archlab.memory.spans import spans_of, trace_id
from archlab.memory.store import MEMORY_FILE, Memory
from archlab.orchestration.tracing import traced
from support import cli

RUN = "20260101-000000-0001"
PARENT = "aaaa0000parent"
CHILD = "bbbb1111child"
PARENT_SOURCE = "import torch\n\n\ndef build_model(spec):\n    return torch.nn.Linear(4, 4)\n"
CHILD_SOURCE = PARENT_SOURCE.replace("Linear(4, 4)", "Linear(4, 8)")


def _candidate(memory: Memory, cid: str, source: str, parents: list[str], **outcome: Any) -> None:
    memory.save_candidate(
        candidate_id=cid,
        run_id=RUN,
        task="mqar",
        task_fingerprint="fp",
        source=source,
        source_hash=cid,
        parents=parents,
        plan={"operator": "mutate" if parents else "baseline", "summary": f"idea {cid}"},
        brain="heuristic",
        origin="proposed" if parents else "baseline",
        status="pending",
    )
    memory.set_outcome(cid, **outcome)


def _llm_call(memory: Memory, cid: str) -> None:
    prompt = "write the model " + "x" * 1000
    memory.save_llm_call(
        call_id=f"call-{cid}",
        run_id=RUN,
        role="coder",
        purpose="write",
        candidate_id=cid,
        step=1,
        repair=0,
        attempt=1,
        retry=0,
        brain="llm:default",
        model="fake-model",
        base_url="http://127.0.0.1:1/v1",
        request={"messages": [{"role": "user", "content": prompt}]},
        content="here is the code",
        prompt_tokens=300,
        completion_tokens=50,
        tokens_estimated=False,
        cost_usd=0.001,
        latency_s=0.01,
        status="ok",
    )


def _trial(memory: Memory, cid: str, status: str) -> None:
    memory.save_trial(
        trial_id=f"trial-{cid}",
        candidate_id=cid,
        run_id=RUN,
        stage="proxy",
        seed=0,
        budget={"steps": 16},
        status=status,
        error_class=None if status == "ok" else "shape",
        message=None if status == "ok" else "mat1 and mat2 shapes cannot be multiplied",
        exit_reason="exited",
        wall_time_s=0.01,
        isolation="basic",
        score=0.5 if status == "ok" else None,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A run of two candidates whose nodes went through `traced`, as in the graph."""
    home = tmp_path / "home"
    memory = Memory(home / MEMORY_FILE)
    memory.start_run(
        run_id=RUN, task="mqar", task_fingerprint="fp", brain="heuristic", seed=1, config={}
    )
    ctx: Any = SimpleNamespace(memory=memory, run_id=RUN)

    def code(state: Any) -> dict[str, Any]:
        cid = state["candidate"]["candidate_id"]
        time.sleep(0.02)  # children end strictly inside their node span
        _llm_call(memory, cid)
        return {}

    def train(state: Any) -> dict[str, Any]:
        cid = state["candidate"]["candidate_id"]
        time.sleep(0.02)
        _trial(memory, cid, "ok" if cid == PARENT else "error")
        if cid == CHILD:
            memory.flush()  # committed before the crash (a failing node drops what it holds)
            raise RuntimeError("trainer crashed")
        return {}

    _candidate(memory, PARENT, PARENT_SOURCE, [], status="ok", score=0.5)
    _candidate(memory, CHILD, CHILD_SOURCE, [PARENT], status="failed", error_class="shape")
    for cid in (PARENT, CHILD):
        state: dict[str, Any] = {"candidate": {"candidate_id": cid}}
        state.update(traced(ctx, "code", code)(state))  # its span handed on in the state
        if cid == CHILD:
            with pytest.raises(RuntimeError):  # a failing node writes the spans handed on
                traced(ctx, "train", train)(state)
        else:
            state.update(traced(ctx, "train", train)(state))
            memory.save_handed_on_spans(state["spans"])  # as the candidate's record does
    return home


def test_nodes_are_spans_and_calls_and_trials_their_children(home: Path) -> None:
    spans = spans_of(Memory(home / MEMORY_FILE), RUN)
    assert [(s["kind"], s["name"], s["candidate_id"]) for s in spans] == [
        ("node", "code", PARENT),
        ("llm", "chat fake-model", PARENT),
        ("node", "train", PARENT),
        ("trial", "proxy seed 0", PARENT),
        ("node", "code", CHILD),
        ("llm", "chat fake-model", CHILD),
        ("node", "train", CHILD),
        ("trial", "proxy seed 0", CHILD),
    ]
    for node, child in zip(spans[::2], spans[1::2], strict=True):
        assert child["parent_id"] == node["span_id"]
        assert node["start"] <= child["start"] <= child["end"] <= node["end"]
    assert [s["role"] for s in spans[:4]] == ["coder", "coder", "trainer", "trainer"]
    crashed = spans[6]
    assert crashed["status"] == "error"
    assert crashed["error"] == "RuntimeError: trainer crashed"
    assert spans[1]["attributes"]["gen_ai.usage.input_tokens"] == 300


def test_trace_json_filters(home: Path) -> None:
    spans = json.loads(cli(home, "trace", RUN[:8], "--json"))
    assert {"kind", "name", "role", "candidate_id", "status", "start", "end"} <= spans[0].keys()
    failed = json.loads(cli(home, "trace", RUN, "--failed", "--json"))
    assert [(s["kind"], s["candidate_id"]) for s in failed] == [("node", CHILD), ("trial", CHILD)]
    coder = json.loads(cli(home, "trace", RUN, "--role", "coder", "--candidate", "bbbb", "--json"))
    assert [s["kind"] for s in coder] == ["node", "llm"]


def test_trace_folds_long_prompts_unless_full(home: Path) -> None:
    folded = cli(home, "trace", RUN)
    assert "[... 1,016 chars]" in folded
    assert "x" * 1000 not in folded.replace("\n", "")
    assert "x" * 1000 in cli(home, "trace", RUN, "--full").replace("\n", "")


def test_otlp_export(home: Path, tmp_path: Path) -> None:
    cli(home, "export-otel", RUN, "-o", str(tmp_path / "otel.json"))
    otlp = json.loads((tmp_path / "otel.json").read_text())
    spans = otlp["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert len(spans) == 8
    assert {s["traceId"] for s in spans} == {trace_id(RUN)}
    assert len(trace_id(RUN)) == 32 and all(len(s["spanId"]) == 16 for s in spans)
    assert spans[1]["parentSpanId"] == spans[0]["spanId"]
    assert int(spans[0]["startTimeUnixNano"]) <= int(spans[0]["endTimeUnixNano"])
    llm = {a["key"]: a["value"] for a in spans[1]["attributes"]}
    assert llm["gen_ai.request.model"] == {"stringValue": "fake-model"}
    assert llm["gen_ai.usage.output_tokens"] == {"intValue": "50"}
    assert spans[6]["status"] == {"code": 2, "message": "RuntimeError: trainer crashed"}


def test_diff_and_lineage(home: Path) -> None:
    diff = cli(home, "diff", "aaaa", "bbbb")
    assert diff.startswith(f"--- {PARENT}\n+++ {CHILD}\n")
    assert "-    return torch.nn.Linear(4, 4)\n+    return torch.nn.Linear(4, 8)" in diff
    tree = cli(home, "lineage", RUN)
    assert tree.index("aaaa0000") < tree.index("bbbb1111")
    assert "0.5000" in tree and "mutate" in tree


def test_export_writes_a_torch_only_module(home: Path, tmp_path: Path) -> None:
    cli(home, "export", "aaaa", "-o", str(tmp_path / "model.py"))
    module = (tmp_path / "model.py").read_text()
    tree = ast.parse(module)
    assert PARENT in (ast.get_docstring(tree) or "")
    assert module.endswith(PARENT_SOURCE)


def test_export_refuses_other_imports(home: Path, tmp_path: Path) -> None:
    memory = Memory(home / MEMORY_FILE)
    _candidate(memory, "cccc2222", "import os\nimport torch\n", [], status="ok")
    with pytest.raises(ArchlabError, match="imports os"):
        cli(home, "export", "cccc", "-o", str(tmp_path / "model.py"))
    assert not (tmp_path / "model.py").exists()


def test_sql_is_read_only(home: Path) -> None:
    rows = json.loads(
        cli(home, "sql", "SELECT name, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1", "--json")
    )
    assert rows == [{"name": "code", "n": 2}, {"name": "train", "n": 2}]
    with pytest.raises(ArchlabError, match="read-only"):
        cli(home, "sql", "DELETE FROM candidates")
    assert len(Memory(home / MEMORY_FILE).candidates(RUN)) == 2


def test_report_is_self_contained(home: Path, tmp_path: Path) -> None:
    memory = Memory(home / MEMORY_FILE)
    memory.save_check(PARENT, "static", "passed")
    memory.save_check(CHILD, "smoke", "failed", message="smoke-failure-message")
    memory.save_verdict(candidate_id=PARENT, run_id=RUN, verdict="accept", reason="parent-why")
    cli(home, "report", RUN, "-o", str(tmp_path / "report.html"))
    page = (tmp_path / "report.html").read_text()
    assert "<svg" in page and "<circle" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for text in (PARENT, CHILD, "idea aaaa0000parent", "shape"):
        assert text in page
    # each candidate's section shows its own checks and verdict
    parent, child = page.split(f'id="{PARENT}"')[1], page.split(f'id="{CHILD}"')[1]
    assert "parent-why" in parent.split(f'id="{CHILD}"')[0] and "parent-why" not in child
    assert "smoke-failure-message" in child


def test_spans_ride_in_the_state_until_the_candidate_is_recorded(tmp_path: Path) -> None:
    memory = Memory(tmp_path / MEMORY_FILE)
    ctx: Any = SimpleNamespace(memory=memory, run_id=RUN)
    state: dict[str, Any] = {"candidate": {"candidate_id": PARENT}}

    def think(state: Any) -> dict[str, Any]:
        return {"history": ["thought"]}

    def write(state: Any) -> dict[str, Any]:
        memory.save_check(PARENT, "static", "passed")
        return {}

    for name, node in (("plan", think), ("verify", write)):
        state.update(traced(ctx, name, node)(state))
    assert [s["name"] for s in state["spans"]] == ["plan", "verify"]  # the checkpoint's
    assert memory.spans(RUN) == [] and len(memory.checks(PARENT)) == 1
    assert traced(ctx, "record", write)(state)["spans"] == []
    assert [s["name"] for s in memory.spans(RUN)] == ["plan", "verify", "record"]
    # killed after the commit, before the checkpoint: record runs again from the same state
    traced(ctx, "record", write)(state)
    assert [s["name"] for s in memory.spans(RUN)] == ["plan", "verify", "record", "record"]
    assert len(memory.checks(PARENT)) == 1


def test_a_failing_node_leaves_its_span_and_none_of_its_writes(tmp_path: Path) -> None:
    memory = Memory(tmp_path / MEMORY_FILE)
    ctx: Any = SimpleNamespace(memory=memory, run_id=RUN)
    handed_on = traced(ctx, "plan", lambda state: {})({})["spans"]

    def record(state: Any) -> dict[str, Any]:
        memory.save_check(PARENT, "proxy", "passed")
        memory.save_verdict(candidate_id=PARENT, run_id=RUN, verdict="accept", reason="r")
        raise RuntimeError("failed half-way")

    with pytest.raises(RuntimeError):
        traced(ctx, "record", record)({"spans": handed_on})
    assert memory.checks(PARENT) == [] and memory.verdict(PARENT) is None
    spans = memory.spans(RUN)
    assert [(s["name"], s["status"]) for s in spans] == [("plan", "ok"), ("record", "error")]
    assert spans[1]["error"] == "RuntimeError: failed half-way"
