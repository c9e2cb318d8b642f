"""Memory's public interface, method by method, on a real DuckDB file; and the rule that
every SQL statement of archlab lives in the memory package."""

from __future__ import annotations

import ast
import gc
import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

import archlab
from archlab.errors import ArchlabError
from archlab.memory import in_flight, queries, reviews, weights
from archlab.memory.store import MEMORY_FILE, Memory, now


@pytest.fixture
def memory(tmp_path: Path) -> Memory:
    memory = Memory(tmp_path / MEMORY_FILE)
    memory.start_run(
        run_id="run-1", task="mqar", task_fingerprint="fp", brain="heuristic", seed=0, config={}
    )
    return memory


def _candidate(memory: Memory, cid: str, **fields: Any) -> None:
    row: dict[str, Any] = dict(
        candidate_id=cid, run_id="run-1", task="mqar", task_fingerprint="fp",
        source=f"# {cid}", source_hash=f"h-{cid}", ast_hash=None, parents=[],
        plan={"summary": f"idea {cid}"}, genome=None, genome_key=f"k-{cid}",
        brain="heuristic", origin="proposed", status="ok", score=None,
    )  # fmt: skip
    memory.save_candidate(**{**row, **fields})


def _trial(memory: Memory, tid: str, cid: str, stage: str, seed: int, score: float) -> None:
    memory.save_trial(
        trial_id=tid, candidate_id=cid, run_id="run-1", stage=stage, seed=seed,
        budget={"steps": 1}, status="ok", exit_reason="done", wall_time_s=1.0,
        isolation="basic", score=score,
    )  # fmt: skip


def _llm_call(memory: Memory, call_id: str, step: int, answer: Any, **fields: Any) -> None:
    row: dict[str, Any] = dict(
        call_id=call_id, run_id="run-1", role="planner", purpose="plan", step=step,
        repair=0, attempt=1, retry=0, brain="llm:test", model="m", request={"n": 1},
        prompt_tokens=10, completion_tokens=5, tokens_estimated=False, cost_usd=0.25,
        latency_s=0.5, status="ok", answer=answer,
    )  # fmt: skip
    memory.save_llm_call(**{**row, **fields})


def test_runs_lifecycle(memory: Memory) -> None:
    assert memory.get_run("run")["status"] == "killed"  # running, but no process drives it
    memory.set_elapsed("run-1", 12.5)
    memory.set_run_summary("run-1", {"improvement": 0.1})
    memory.finish_run("run-1", "finished", "done")
    run = memory.get_run("run-1")
    assert (run["status"], run["message"], run["elapsed_s"]) == ("finished", "done", 12.5)
    assert run["summary"] == {"improvement": 0.1} and run["finished_at"] is not None
    memory.resume_run("run-1")
    assert memory.get_run("run-1")["message"] is None
    _candidate(memory, "a", score=0.5)
    (listed,) = memory.runs()
    assert (listed["run_id"], listed["n_candidates"], listed["best_score"]) == ("run-1", 1, 0.5)
    with pytest.raises(ArchlabError, match="no run"):
        memory.get_run("nope")
    assert memory.schema_version() >= 5


def test_candidates_saved_updated_and_found(memory: Memory) -> None:
    assert not memory.candidate_exists("abc-1") and not memory.is_settled("abc-1")
    _candidate(memory, "abc-1", status="pending")
    assert memory.candidate_exists("abc-1") and not memory.is_settled("abc-1")
    memory.set_outcome("abc-1", status="ok", score=0.7, metrics={"acc": 0.7})
    assert memory.is_settled("abc-1")
    found = memory.get_candidate("abc")  # by prefix
    assert (found["score"], found["metrics"], found["plan"]) == (
        0.7, {"acc": 0.7}, {"summary": "idea abc-1"},
    )  # fmt: skip
    _candidate(memory, "abc-2", score=0.9)
    with pytest.raises(ArchlabError, match="2 candidates"):
        memory.get_candidate("abc")
    assert set(memory.candidates_by_id(["abc-2", "zzz"])) == {"abc-2"}
    assert memory.candidates_by_id([]) == {}
    assert [c["candidate_id"] for c in memory.candidates("run-1")] == ["abc-2", "abc-1"]
    assert memory.count_candidates("run-1") == 2 and memory.count_candidates("other") == 0
    assert memory.genome_keys() == {"k-abc-1", "k-abc-2"}
    assert memory.scores_in_order("run-1") == [0.7, 0.9]
    assert [(p["candidate_id"], p["score"]) for p in memory.parent_pool("fp", limit=1)] == [
        ("abc-2", 0.9)
    ]


def test_duplicates_baseline_and_random_scores(memory: Memory) -> None:
    _candidate(memory, "base", origin="baseline", score=0.1, metrics={"acc": 0.1}, n_params=7)
    # the planner's yardstick sample; then a brain's own random restart (a proposal), and
    # a sample that failed: neither is a sample of the yardstick
    _candidate(memory, "rand", origin="random", score=0.3, plan={"operator": "random"})
    _candidate(memory, "restart", score=0.9, plan={"operator": "random"})
    _candidate(memory, "broken", origin="random", status="failed", plan={"operator": "random"})
    _candidate(memory, "later", origin="random", score=0.6, plan={"operator": "random"})
    _trial(memory, "t-later-0", "later", "proxy", 0, 0.4)  # its proxy seed, before confirm
    _trial(memory, "t-later-1", "later", "confirm", 1, 0.8)
    _candidate(memory, "wait", source_hash="h-base", status="pending")
    assert memory.find_duplicate("fp", "h-base", None) == {
        "candidate_id": "base", "score": 0.1, "metrics": {"acc": 0.1}, "n_params": 7,
    }  # fmt: skip
    assert memory.find_duplicate("fp", "other", "h-none") is None
    assert memory.baseline_id("fp") == "base"
    baseline = memory.baseline("fp")
    assert baseline is not None and baseline["origin"] == "baseline"
    assert memory.baseline("other") is None and memory.baseline_id("other") is None
    assert memory.random_samples("fp") == {"rand": 0.3, "later": 0.4}
    assert memory.random_sample_scores("fp") == [0.3, 0.6]  # as recorded
    assert memory.random_samples("other") == {}


def test_trials_and_seed_scores(memory: Memory) -> None:
    _candidate(memory, "a")
    _trial(memory, "t-smoke", "a", "smoke", 0, 0.01)
    _trial(memory, "t2", "a", "confirm", 2, 0.6)
    _trial(memory, "t1", "a", "proxy", 1, 0.5)
    _trial(memory, "t-audit", "a", "audit", 0, 0.9)  # the audit's: fresh data or a control
    assert [t["trial_id"] for t in memory.trials("a")] == ["t-smoke", "t2", "t1", "t-audit"]
    assert memory.trials("a")[0]["budget"] == {"steps": 1}
    trial = memory.trial("t-audit")
    assert trial is not None and (trial["stage"], trial["score"]) == ("audit", 0.9)
    assert memory.trial("t-none") is None
    assert memory.seed_scores("a") == [0.5, 0.6]  # by seed; proxy and confirm only
    assert memory.seed_scores_of(["a", "b"]) == {"a": [0.5, 0.6]}
    assert memory.seed_scores_of([]) == {}
    counts = memory.trial_counts("run-1")
    assert counts["trials"] == 4 and counts["last"] is not None
    assert memory.trial_counts("other")["trials"] == 0


def test_verdicts_and_checks(memory: Memory) -> None:
    _candidate(memory, "a")
    memory.save_verdict(candidate_id="a", run_id="run-1", verdict="accept", reason="good")
    memory.save_verdict(candidate_id="a", run_id="run-1", verdict="reject", reason="worse")
    verdict = memory.verdict("a")
    assert verdict is not None and (verdict["verdict"], verdict["reason"]) == ("reject", "worse")
    assert memory.verdict("b") is None
    assert list(memory.verdicts("run-1")) == ["a"]
    memory.save_check("a", "smoke", "failed", "Boom", "bad", details={"x": 1})
    memory.save_check("a", "smoke", "passed")  # replaces the earlier outcome
    memory.save_check("a", "proxy", "skipped")
    # a stage with several checks (the audit's) tells them apart by name
    memory.save_check("a", "audit", "passed", name="fresh_data", details={"score": 0.9})
    memory.save_check("a", "audit", "failed", name="shuffled_control")
    memory.save_check("a", "audit", "passed", name="shuffled_control")  # replaces it
    checks = memory.checks("a")
    assert [(c["stage"], c["name"], c["status"]) for c in checks] == [
        ("smoke", "", "passed"),
        ("proxy", "", "skipped"),
        ("audit", "fresh_data", "passed"),
        ("audit", "shuffled_control", "passed"),
    ]
    assert checks[0]["details"] is None and checks[0]["error_class"] is None
    assert checks[2]["details"] == {"score": 0.9}
    assert {k: len(v) for k, v in memory.run_checks("run-1").items()} == {"a": 4}


def test_llm_calls_usage_and_remembered_answers(memory: Memory) -> None:
    _llm_call(memory, "c1", 1, {"idea": "old"})
    _llm_call(memory, "c2", 1, {"idea": "new"})
    _llm_call(memory, "c3", 2, None, status="invalid", error="no json")
    assert [c["call_id"] for c in memory.llm_calls("run-1")] == ["c1", "c2", "c3"]
    assert memory.llm_calls("run-1")[0]["request"] == {"n": 1}
    assert memory.llm_usage("run-1") == (45, 0.75)
    assert memory.llm_usage("other") == (0, 0.0)
    assert memory.remembered_answer("run-1", "planner", 1, 0) == {"idea": "new"}
    assert memory.remembered_answer("run-1", "planner", 2, 0) is None  # not accepted
    assert memory.remembered_answer("run-1", "coder", 1, 0) is None
    assert memory.accepted_answers("run-1") == {("planner", 1, 0): {"idea": "new"}}


def test_spans_and_candidate_times(memory: Memory) -> None:
    start = now()
    memory.save_span(
        span_id="s1", run_id="run-1", name="plan", role="planner", candidate_id="a",
        status="ok", started_at=start, ended_at=start,
    )  # fmt: skip
    memory.save_handed_on_spans([
        dict(span_id="s2", run_id="run-1", name="code", role="coder", candidate_id="a",
             status="ok", started_at=start, ended_at=start),
    ])  # fmt: skip
    memory.save_handed_on_spans([  # handed on again by a node re-run: no second row
        dict(span_id="s2", run_id="run-1", name="code", role="coder", candidate_id="a",
             status="error", error="x", started_at=start, ended_at=start),
    ])  # fmt: skip
    assert [(s["span_id"], s["status"]) for s in memory.spans("run-1")] == [
        ("s1", "ok"), ("s2", "error"),
    ]  # fmt: skip
    _llm_call(memory, "c1", 1, {"x": 1}, candidate_id="a")
    ((first, last, llm_s),) = memory.candidate_times("run-1")
    assert (
        first == last == pytest.approx(start.replace(tzinfo=UTC).timestamp(), abs=1e-3)
        and llm_s == 0.5
    )


def test_reviews_and_notes(memory: Memory) -> None:
    reviews.request_review(memory, "run-1", "cand-a")
    reviews.request_review(memory, "run-1", "cand-a")  # asking again changes nothing
    reviews.request_review(memory, "run-1", "cand-b")
    assert reviews.waiting(memory, "run-1") == ["cand-a", "cand-b"]
    assert reviews.decide(memory, "run-1", "approve", "cand-a", "fine") == ["cand-a"]
    review = reviews.review_of(memory, "cand-a")
    assert review is not None and (review["decision"], review["reason"]) == ("approve", "fine")
    assert reviews.review_of(memory, "cand-z") is None
    with pytest.raises(ArchlabError, match="nothing of run run-1"):
        reviews.decide(memory, "run-1", "reject", "cand-a", None)
    assert reviews.decide(memory, "run-1", "reject", None, None) == ["cand-b"]
    assert reviews.waiting(memory, "run-1") == []
    first = reviews.add_note(memory, "run-1", " prefer recurrence ")
    reviews.add_note(memory, "run-1", "go deeper")
    assert len(first) == 12
    assert reviews.notes(memory, "run-1") == ["prefer recurrence", "go deeper"]
    with pytest.raises(ArchlabError, match="needs some text"):
        reviews.add_note(memory, "run-1", "  ")


def test_weights_are_kept_beside_the_memory(memory: Memory, tmp_path: Path) -> None:
    spec = {"vocab_size": 8, "seq_len": 4}
    kept = dict(run_id="run-1", trial_id="a-proxy-s0", spec=spec)
    assert weights.keep(memory, "a", **kept) is None  # nothing came back: nothing to keep
    weights.stash(memory, "a", b"first")
    weights.stash(memory, "a", b"tensors")  # a re-run's trial replaces the earlier
    row = weights.keep(memory, "a", **kept)
    assert row is not None and (tmp_path / "weights" / "a.safetensors").read_bytes() == b"tensors"
    assert not (tmp_path / "weights" / "pending" / "a.safetensors").exists()
    again = weights.keep(memory, "a", **kept)  # a node re-run after a crash: the same row
    assert again is not None and {**again, "created_at": None} == {**row, "created_at": None}
    stored = weights.weights_of(memory, "a")
    assert stored is not None and (stored["path"], stored["bytes"], stored["spec"]) == (
        "weights/a.safetensors", 7, spec,
    )  # fmt: skip
    assert stored["sha256"] == hashlib.sha256(b"tensors").hexdigest()
    assert weights.stored_bytes(memory, stored) == b"tensors"
    assert set(weights.run_weights(memory, "run-1")) == {"a"}
    assert weights.weights_of(memory, "b") is None
    weights.stash(memory, "b", b"unpromoted")
    weights.discard(memory, "b")
    weights.discard(memory, "a")  # kept ones stay
    assert weights.keep(memory, "b", **kept) is None and weights.stored_bytes(memory, stored)
    (tmp_path / "weights" / "a.safetensors").write_bytes(b"tensorz")
    with pytest.raises(ArchlabError, match="not the one the memory recorded"):
        weights.stored_bytes(memory, stored)
    (tmp_path / "weights" / "a.safetensors").unlink()
    (tmp_path / "weights" / "a.safetensors").symlink_to(tmp_path / MEMORY_FILE)
    with pytest.raises(ArchlabError, match="cannot be read"):
        weights.stored_bytes(memory, stored)
    with pytest.raises(ArchlabError, match="outside"):
        weights.stored_bytes(memory, {**stored, "path": "../elsewhere/a.safetensors"})
    with pytest.raises(ArchlabError, match="cannot name a weights file"):
        weights.stash(memory, "../a", b"x")
    weights.discard(memory, "../a")  # nothing waits under such an id
    assert weights.keep(memory, "../a", **kept) is None


def test_stages_in_flight_commit_at_once_apart_from_the_batch_around_them(
    memory: Memory,
) -> None:
    def seen() -> tuple[list[tuple[Any, ...]], bool]:
        """What another thread (as another process) sees: the stages, the held candidate."""
        with ThreadPoolExecutor(1) as other:
            rows = other.submit(in_flight.of_run, memory, "run-1").result()
            held = other.submit(memory.candidate_exists, "held").result()
        return [(r["lane"], r["candidate_id"], r["stage"]) for r in rows], held

    with memory.batch():  # a graph node's writes
        _candidate(memory, "held", status="pending")
        marker = in_flight.mark(memory, "run-1", 1, "held", "proxy")
        assert seen() == ([(1, "held", "proxy")], False)
        in_flight.clear(memory, marker)
        assert seen() == ([(1, "held", "proxy")], False)  # cleared with the node's writes
    assert seen() == ([], True)
    in_flight.mark(memory, "run-1", 0, None, "scale")  # the run's conclusion
    in_flight.mark(memory, "run-2", 0, "other", "verify")
    assert [r["stage"] for r in in_flight.of_run(memory, "run-1")] == ["scale"]
    in_flight.forget(memory, "run-1")
    assert in_flight.of_run(memory, "run-1") == [] and in_flight.of_run(memory, "run-2")


def test_the_best_of_a_run_is_its_best_accepted_else_best_scored_proposal(memory: Memory) -> None:
    assert memory.best_of_run("run-1") is None
    _candidate(memory, "base", origin="baseline", score=0.9)
    _candidate(memory, "failed", status="failed", score=0.8)
    _candidate(memory, "a", score=0.3)
    _candidate(memory, "b", score=0.4)
    _candidate(memory, "elsewhere", run_id="run-2", score=0.7)
    best = {"candidate_id": "b", "origin": "proposed", "score": 0.4, "accepted": False}
    assert memory.best_of_run("run-1") == best
    # as the run's summary names it: the best accepted before any better score not accepted
    memory.save_verdict(candidate_id="b", run_id="run-1", verdict="reject", reason="unconfirmed")
    memory.save_verdict(candidate_id="a", run_id="run-1", verdict="accept", reason="confirmed")
    best = {"candidate_id": "a", "origin": "proposed", "score": 0.3, "accepted": True}
    assert memory.best_of_run("run-1") == best


def test_planning_reads(memory: Memory) -> None:
    _candidate(memory, "a", score=0.2)
    _candidate(memory, "b", score=0.4, parents=["a"])
    _candidate(memory, "f", status="failed")
    memory.save_verdict(
        candidate_id="b", run_id="run-1", verdict="accept", reason="r", insight="depth"
    )
    assert [r["candidate_id"] for r in queries.ranked(memory, "fp", False, 5)] == ["b", "a"]
    assert "source" in queries.ranked(memory, "fp", True, 1)[0]
    assert [r["candidate_id"] for r in queries.failures(memory, "fp", 5)] == ["f"]
    assert [r["insight"] for r in queries.insights(memory, "fp", 5)] == ["depth"]
    assert [r["candidate_id"] for r in queries.lineage(memory, "b", 5)] == ["b", "a"]
    assert queries.totals(memory, "fp") == {
        "candidates": 3,
        "ok": 2,
        "failed": 1,
        "best_score": 0.4,
    }
    assert queries.known_ids(memory, "fp", ["a", "zz"]) == {"a"}
    assert queries.with_genome(memory, "fp", "k-b") == "b"
    assert "k-a" in queries.KnownGenomes(memory, "fp")
    assert queries.same_summary(memory, "fp", "Idea  B!") == "b"


def test_read_only_sql_answers_and_refuses_writes(memory: Memory) -> None:
    columns, rows = memory.read_only_sql("SELECT run_id, task FROM runs")
    assert columns == ["run_id", "task"] and rows == [("run-1", "mqar")]
    with pytest.raises(ArchlabError, match="query failed"):
        memory.read_only_sql("DELETE FROM runs")
    assert memory.count_candidates("run-1") == 0 and memory.get_run("run-1")["task"] == "mqar"


def test_a_batch_commits_together_and_a_raising_batch_leaves_nothing(
    memory: Memory, tmp_path: Path
) -> None:
    other = Memory(tmp_path / MEMORY_FILE)  # another reader of the file, as other threads
    with memory.batch():
        _candidate(memory, "a")
        _candidate(memory, "b")
    assert other.count_candidates("run-1") == 2
    with pytest.raises(RuntimeError), memory.batch():
        _candidate(memory, "c")
        memory.set_outcome("a", score=1.0)
        raise RuntimeError("the node failed")
    assert not memory.candidate_exists("c") and memory.get_candidate("a")["score"] is None
    with pytest.raises(RuntimeError), memory.transaction():
        _candidate(memory, "d")
        raise RuntimeError("rolled back")
    assert not memory.candidate_exists("d")
    stats = memory.connection_stats()
    assert stats["opens"] >= 1 and stats["handovers"] == 0
    memory.release()
    memory.close()
    assert other.candidate_exists("a")  # still open: the last Memory on a file closes it


# --- every SQL statement lives in the memory package --------------------------------------

#: a statement, not prose that starts with one of its words ("With `every_s`, ...")
_SQL = re.compile(
    r"^\s*(SELECT\b.*\bFROM\b|SELECT\s+\d|INSERT\s+INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b"
    r"|WITH\s+(RECURSIVE\s+)?\w+(\(.*?\))?\s+AS\s*\(|CREATE\s+(TABLE|INDEX|VIEW)\b)",
    re.IGNORECASE | re.DOTALL,
)


def _sql_strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        parts: list[str] = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            parts = [node.value]
        elif isinstance(node, ast.JoinedStr):  # an f-string: its literal parts, joined
            parts = [v.value for v in node.values if isinstance(v, ast.Constant)]
        text = "".join(str(p) for p in parts)
        if _SQL.match(text):
            found.append(f"{path}:{node.lineno}: {text[:60]!r}")
    return found


def test_a_cursor_keeps_its_memory_open(memory: Memory, tmp_path: Path) -> None:
    """`with Memory(path).connect() as con:` reads even though nothing else holds the
    Memory: a garbage-collected memory closes its file, but not under a cursor in use."""
    memory.close()
    with Memory(tmp_path / MEMORY_FILE).connect(read_only=True) as con:
        gc.collect()
        assert con.execute("SELECT run_id FROM runs").fetchall() == [("run-1",)]


def test_sql_is_written_only_in_the_memory_package() -> None:
    package = Path(archlab.__file__).parent
    outside = [path for path in package.rglob("*.py") if package / "memory" not in path.parents]
    assert len(outside) > 20  # the scan sees the code
    assert not [hit for path in outside for hit in _sql_strings(path)]


def test_the_sql_scan_finds_sql() -> None:
    sample = Path(__file__).parent.parent / "src" / "archlab" / "memory" / "store.py"
    assert _sql_strings(sample)  # the memory's own statements are seen
