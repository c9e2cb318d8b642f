import itertools
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from archlab.errors import ArchlabError, MemoryCorruptError
from archlab.memory import shared_file
from archlab.memory.database import _migrations
from archlab.memory.queries import KnownGenomes
from archlab.memory.store import Memory, now
from archlab.roles.briefing import planner_context
from support import held_by_another_process


def _candidate(
    memory: Memory, cid: str, score: float | None, status: str = "ok", **extra: object
) -> None:
    fields = dict(
        candidate_id=cid,
        run_id="r1",
        task="mqar",
        task_fingerprint="fp",
        source="x = 1",
        source_hash=f"h-{cid}",
        ast_hash=None,
        parents=[],
        plan={"hypothesis": "h"},
        genome=None,
        genome_key=None,
        brain="heuristic",
        origin="proposed",
        status="pending",
    )
    fields.update(extra)
    memory.save_candidate(**fields)
    memory.set_outcome(cid, status=status, score=score, metrics={"accuracy": score})


def test_migrations_are_numbered_and_applied_once(tmp_path: Path) -> None:
    numbers = [n for n, _, _ in _migrations()]
    assert numbers == sorted(numbers) and numbers[0] == 1
    memory = Memory(tmp_path / "m.duckdb")
    assert memory.schema_version() == numbers[-1]
    Memory(tmp_path / "m.duckdb")  # reopening applies nothing twice
    with memory.connect() as con:
        count = con.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert count == (len(numbers),)


def test_a_result_flagged_audit_by_an_older_version_reads_as_undecided(tmp_path: Path) -> None:
    """Migration 6: `audit` was a verdict that never audited anything. Such a candidate is
    neither accepted nor rejected (its verdict NULL, its reasons kept), a summary no longer
    counts it as accepted, and the checks of a stage gain names (the audit has several)."""
    path = tmp_path / "m.duckdb"
    with duckdb.connect(str(path)) as con:  # a memory as version 5 left it
        con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                    "name VARCHAR NOT NULL, applied_at TIMESTAMP)")  # fmt: skip
        for version, name, sql in _migrations():
            if version <= 5:
                con.execute(sql)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
        best = {"best": {"candidate_id": "flagged", "accepted": True}, "scale": {}}
        con.execute("INSERT INTO runs (run_id, task, task_fingerprint, status, brain, seed, "
                    "config, started_at, summary) VALUES ('r1', 'mqar', 'fp', 'finished', "
                    "'heuristic', 0, '{}', now(), ?)", [json.dumps(best)])  # fmt: skip
        for cid, verdict in (("flagged", "audit"), ("fine", "accept")):
            con.execute("INSERT INTO verdicts VALUES (?, 'r1', ?, 'too good', 'insight', now(), "
                        "NULL, NULL)", [cid, verdict])  # fmt: skip
        con.execute("INSERT INTO checks VALUES ('fine', 'smoke', 'passed', NULL, NULL, NULL, "
                    "now())")  # fmt: skip
    memory = Memory(path)
    assert memory.schema_version() == _migrations()[-1][0]
    flagged, fine = memory.verdict("flagged"), memory.verdict("fine")
    assert flagged is not None and fine is not None
    assert flagged["verdict"] is None and flagged["insight"] == "insight"
    assert flagged["reason"].startswith("not audited") and flagged["reason"].endswith("too good")
    assert fine["verdict"] == "accept"
    assert memory.get_run("r1")["summary"]["best"] == {"candidate_id": "flagged", "accepted": False}
    assert [(c["stage"], c["name"]) for c in memory.checks("fine")] == [("smoke", "")]


def test_round_trip_and_ranking(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    memory.start_run(
        run_id="r1", task="mqar", task_fingerprint="fp", brain="heuristic", seed=0, config={"a": 1}
    )
    _candidate(memory, "a", 0.2)
    _candidate(memory, "b", 0.5, genome={"d_model": 64}, genome_key="k-b")
    _candidate(memory, "c", None, status="failed")
    memory.finish_run("r1", "finished")

    ranked = [c["candidate_id"] for c in memory.candidates("r1")]
    assert ranked == ["b", "a", "c"]
    assert memory.get_candidate("b")["genome"] == {"d_model": 64}
    assert [p["candidate_id"] for p in memory.parent_pool("fp")] == ["b", "a"]
    known = KnownGenomes(memory, "fp")
    assert "k-b" in known and "k-a" not in known and None not in known
    (run,) = memory.runs()
    assert run["status"] == "finished" and run["n_candidates"] == 3 and run["best_score"] == 0.5
    assert memory.get_run("r")["config"] == {"a": 1}


def test_novelty_answers_are_kept_for_one_planning_step(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    known = KnownGenomes(memory, "fp")
    assert "k-a" not in known
    _candidate(memory, "a", 0.2, genome_key="k-a")
    assert "k-a" not in known  # this step's answer; the next step asks again
    assert "k-a" in KnownGenomes(memory, "fp")


def test_seed_scores_of_several_candidates_in_one_query(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    trials = [("a", "confirm", 2, "ok", 0.3), ("a", "proxy", 0, "ok", 0.1),
              ("a", "confirm", 1, "failed", None), ("a", "scale", 0, "ok", 0.9),
              ("b", "proxy", 0, "ok", 0.5)]  # fmt: skip
    for i, (cid, stage, seed, status, score) in enumerate(trials):
        memory.save_trial(
            trial_id=f"t{i}", candidate_id=cid, run_id="r1", stage=stage, seed=seed,
            budget={}, status=status, exit_reason="exited", wall_time_s=1.0,
            isolation="basic", score=score,
        )  # fmt: skip
    assert memory.seed_scores_of(["a", "b", "c"]) == {"a": [0.1, 0.3], "b": [0.5]}
    assert memory.seed_scores("a") == [0.1, 0.3] and memory.seed_scores("c") == []
    assert memory.seed_scores_of([]) == {}


def test_verdicts_of_a_run_in_one_query(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    judged = (("a", "r1", "accept"), ("b", "r1", "reject"), ("c", "r2", "repair"))
    for cid, run_id, verdict in judged:
        memory.save_verdict(candidate_id=cid, run_id=run_id, verdict=verdict, reason="why")
    verdicts = memory.verdicts("r1")
    assert {cid: v["verdict"] for cid, v in verdicts.items()} == {"a": "accept", "b": "reject"}
    assert verdicts["a"] == memory.verdict("a")
    assert memory.verdicts("r3") == {}


def test_candidates_by_exact_ids_in_one_query(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    for cid in ("x1", "y2", "z3"):
        _candidate(memory, cid, 0.1)
    found = memory.candidates_by_id(["z3", "x1", "missing"])
    assert found == {"x1": memory.get_candidate("x1"), "z3": memory.get_candidate("z3")}
    assert memory.candidates_by_id(["x"]) == {}  # no prefixes, unlike get_candidate
    assert memory.candidates_by_id([]) == {}


def test_checks_of_a_run_in_one_query(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    for cid, run_id in (("a", "r1"), ("b", "r1"), ("c", "r2"), ("d", "r1")):
        _candidate(memory, cid, 0.1, run_id=run_id)
    for cid, stage in (("a", "static"), ("c", "static"), ("a", "dedup"), ("b", "static")):
        memory.save_check(cid, stage, "passed")
    checks = memory.run_checks("r1")
    assert checks == {cid: memory.checks(cid) for cid in ("a", "b")}  # d has none, c is r2's
    assert [c["stage"] for c in checks["a"]] == ["static", "dedup"]


def test_duplicates_found_by_either_hash(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    _candidate(memory, "a", 0.3, source_hash="s1", ast_hash="t1")
    assert memory.find_duplicate("fp", "s1", None)["candidate_id"] == "a"
    assert memory.find_duplicate("fp", "other", "t1")["candidate_id"] == "a"
    assert memory.find_duplicate("fp", "other", "other") is None
    assert memory.find_duplicate("another-task", "s1", "t1") is None


def test_upsert_keeps_one_row(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    _candidate(memory, "a", 0.1)
    _candidate(memory, "a", 0.4)
    rows = memory.candidates("r1")
    assert len(rows) == 1 and rows[0]["score"] == 0.4


def test_a_batch_that_rewrites_existing_rows_updates_them(tmp_path: Path) -> None:
    """A batch inserts the rows it upserts as new; one that exists (a node re-run after a
    crash) fails that INSERT, and the batch is written again with its keys looked up."""
    memory = Memory(tmp_path / "m.duckdb")
    with memory.batch():
        _candidate(memory, "a", 0.1)
    with memory.batch():
        _candidate(memory, "b", 0.2)
        _candidate(memory, "a", 0.4)
    scores = {row["candidate_id"]: row["score"] for row in memory.candidates("r1")}
    assert scores == {"a": 0.4, "b": 0.2}


def test_closing_does_not_wait_forever_on_an_operation_cut_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C between taking the connection and the `try` that gives it back leaves the
    operation counted: the process used to hang at exit waiting for it."""
    monkeypatch.setattr(shared_file, "_CLOSE_WAIT_S", 0.1)
    memory = Memory(tmp_path / "m.duckdb")
    memory._file._acquire(read_only=False)  # taken, never given back
    started = time.monotonic()
    memory._file.close()
    assert time.monotonic() - started < 5 and memory._file._con is None


def test_a_transaction_commits_its_writes_together_or_none(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    with memory.transaction():
        _candidate(memory, "a", 0.1)
        _candidate(memory, "b", 0.2)
    with pytest.raises(RuntimeError), memory.transaction():
        _candidate(memory, "c", 0.3)
        memory.set_outcome("a", status="failed")
        raise RuntimeError("the node failed half-way")
    rows = {r["candidate_id"]: r["status"] for r in memory.candidates("r1")}
    assert rows == {"a": "ok", "b": "ok"}


def test_a_batch_commits_at_its_end_and_its_thread_reads_what_it_wrote(
    tmp_path: Path,
) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    seen: list[int] = []

    def other_thread() -> None:
        seen.append(len(memory.checks("a")))

    with memory.batch():
        memory.save_check("a", "static", "passed")
        memory.save_check("a", "dedup", "passed")
        memory.save_check("a", "static", "failed", error_class="syntax")  # same key again
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert seen == [0]  # held: nothing committed yet
        assert {c["stage"]: c["status"] for c in memory.checks("a")} == {
            "static": "failed",
            "dedup": "passed",
        }  # the read committed them
        memory.save_check("a", "smoke", "passed")
    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert seen == [0, 3]


def test_a_batch_that_raises_drops_the_writes_it_held(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    _candidate(memory, "a", 0.1)
    with pytest.raises(RuntimeError), memory.batch():
        memory.set_outcome("a", status="failed")
        memory.save_verdict(candidate_id="a", run_id="r1", verdict="reject", reason="r")
        raise RuntimeError("the node failed half-way")
    assert memory.get_candidate("a")["status"] == "ok" and memory.verdict("a") is None


def test_upserts_insert_new_rows_and_update_existing_ones(tmp_path: Path) -> None:
    """Upserts of several tables in one commit, some keys new and some not, with an update
    between them: the same rows as one statement at a time."""
    memory = Memory(tmp_path / "m.duckdb")
    memory.save_check("a", "static", "passed")
    with memory.batch():
        for stage in ("static", "dedup", "smoke"):
            memory.save_check("a", stage, "failed", details={"stage": stage})
        _span(memory, "s1")
        memory.save_check("b", "static", "passed")
        _candidate(memory, "c", 0.2)  # an upsert, then an update of the same row
        memory.save_check("a", "proxy", "passed")
    checks = {(c["candidate_id"], c["stage"]): c for c in memory.checks("a") + memory.checks("b")}
    assert {k: c["status"] for k, c in checks.items()} == {
        ("a", "static"): "failed",
        ("a", "dedup"): "failed",
        ("a", "smoke"): "failed",
        ("a", "proxy"): "passed",
        ("b", "static"): "passed",
    }
    assert checks[("a", "dedup")]["details"] == {"stage": "dedup"}
    assert memory.get_candidate("c")["status"] == "ok"
    assert [s["span_id"] for s in memory.spans("r1")] == ["s1"]


def test_corrupt_memory_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(MemoryCorruptError, match="corrupt"):
        Memory(path)
    assert path.read_bytes().startswith(b"this is not")  # left as it was


def test_missing_memory_for_readers(tmp_path: Path) -> None:
    with pytest.raises(ArchlabError, match="no memory"):
        Memory.open_existing(tmp_path / "absent.duckdb")


def test_waits_for_another_process_holding_the_file(tmp_path: Path) -> None:
    """A process that cannot ask (a bare DuckDB client) holds the file: Memory waits it out
    instead of failing."""
    path = tmp_path / "m.duckdb"
    Memory(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "time.sleep(1.5); c.close()",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    assert Memory(path).runs() == []  # blocked until the other process let go
    assert holder.wait(timeout=30) == 0


def test_unknown_prefix_is_an_error(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    with pytest.raises(ArchlabError, match="no run"):
        memory.get_run("nope")


# --- one long-lived connection, shared by threads, handed over to other processes -------

# A child process on the same memory. It prints "ready" once imported (and open), then:
#   read: on a line on stdin, prints the seconds a fresh Memory took to answer;
#   write NAME N: on a line on stdin, N spans of its own, then its connection stats as JSON;
#   write NAME -1: the same in a tight loop until the file STOP exists;
#   hold NAME: writes one span and sleeps (to be killed).
CHILD = """
import json, os, sys, time
from pathlib import Path
from archlab.memory.store import Memory, now

path, action = Path(sys.argv[1]), sys.argv[2]
if action == "read":
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    memory = Memory.open_existing(path)
    with memory.connect() as con:
        (n,) = con.execute("SELECT count(*) FROM spans").fetchone()
    print(json.dumps({"seconds": time.perf_counter() - started, "spans": n}), flush=True)
    sys.exit()
memory = Memory(path)
name = sys.argv[3]
def span(i):
    t = now()
    memory.save_span(span_id=f"{name}-{i}", run_id=name, name="node", role="lab",
                     candidate_id=None, status="ok", error=None, started_at=t, ended_at=t)
span(0)
print("ready", flush=True)
if action == "hold":
    time.sleep(120)
sys.stdin.readline()
count, stop = int(sys.argv[4]), path.parent / "STOP"
i = 1
while i < count if count >= 0 else not stop.exists():
    span(i)
    i += 1
print(json.dumps({"written": i, **memory.connection_stats()}), flush=True)
"""


def _child(path: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _go(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def _last_json(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _span(memory: Memory, span_id: str, run_id: str = "r1") -> None:
    t = now()
    memory.save_span(
        span_id=span_id, run_id=run_id, name="node", role="lab", candidate_id=None,
        status="ok", error=None, started_at=t, ended_at=t,
    )  # fmt: skip


def test_threads_write_at_once(tmp_path: Path) -> None:
    """Lanes share one Memory: concurrent writes, same-key upserts included, lose nothing."""
    memory = Memory(tmp_path / "m.duckdb")
    _candidate(memory, "shared", 0.0)
    errors: list[BaseException] = []
    cursors: dict[int, object] = {}

    def lane(k: int) -> None:
        try:
            for i in range(6):
                _span(memory, f"s{k}-{i}")
                memory.save_check("shared", "smoke", "passed", details={"lane": k})
                memory.set_outcome("shared", score=float(i))
                with memory.connect() as outer, memory.connect() as inner:
                    assert outer is inner  # nested uses in a thread share its cursor
                    cursors[k] = outer
                    assert memory.candidates("r1")
        except BaseException as e:  # the assertion below shows what any thread raised
            errors.append(e)

    threads = [threading.Thread(target=lane, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(memory.spans("r1")) == 8 * 6
    assert len(memory.checks("shared")) == 1
    assert len({id(c) for c in cursors.values()}) == 8  # a cursor of its own per thread
    assert memory.connection_stats()["opens"] == 1


def test_transactions_stay_in_their_thread(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    began, checked = threading.Event(), threading.Event()
    seen: list[int] = []

    def other_thread() -> None:
        began.wait()
        seen.append(len(memory.spans("r1")))
        checked.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with memory.connect() as con:
        con.execute("BEGIN TRANSACTION")
        _span(memory, "uncommitted")
        began.set()
        checked.wait(timeout=10)
        con.execute("COMMIT")
    thread.join()
    assert seen == [0]  # the other thread did not see the open transaction
    assert [s["span_id"] for s in memory.spans("r1")] == ["uncommitted"]


def test_read_only_and_writes_alternate_in_one_process(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    memory = Memory(path)
    _span(memory, "a")
    assert memory.read_only_sql("SELECT count(*) FROM spans") == (["count_star()"], [(1,)])
    with pytest.raises(ArchlabError, match="read-only"):
        memory.read_only_sql("DELETE FROM spans")
    _span(memory, "b")  # back to writing
    with memory.connect(), pytest.raises(RuntimeError, match="cannot nest"):
        memory.read_only_sql("SELECT 1")
    assert len(Memory(path).spans("r1")) == 2  # a second Memory shares the connection
    memory.close()
    with duckdb.connect(str(path), read_only=True) as con:  # closed: the file is free
        assert con.execute("SELECT count(*) FROM spans").fetchone() == (2,)


def test_lock_held_too_long_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.duckdb"
    Memory(path).close()
    monkeypatch.setattr(shared_file, "_LOCK_RETRY_S", 0.3)
    with (
        held_by_another_process(path),
        pytest.raises(ArchlabError, match="stayed locked by another process"),
    ):
        Memory(path)


@pytest.mark.slow
def test_reader_process_gets_the_file_from_a_busy_writer(tmp_path: Path) -> None:
    """A process writing in a tight loop holds the file; a reader process asks for it and
    gets its answer in bounded time, and the writer carries on."""
    path = tmp_path / "m.duckdb"
    Memory(path).close()
    writer = _child(path, "write", "w", "-1")
    reader = _child(path, "read")
    _go(writer)
    try:
        time.sleep(0.5)  # the writer is well into its loop
        _go(reader)
        answer = _last_json(reader)
    finally:
        (tmp_path / "STOP").touch()
    stats = _last_json(writer)
    print(f"\nreader answered in {answer['seconds']:.3f}s; writer: {stats}")
    assert answer["seconds"] < 2.0 and answer["spans"] > 0
    assert stats["handovers"] >= 1 and stats["written"] > answer["spans"]
    assert len(Memory(path).spans("w")) == stats["written"]


@pytest.mark.slow
def test_two_writer_processes_interleave(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    Memory(path).close()
    writers = [_child(path, "write", name, "-1") for name in ("a", "b")]
    _go(*writers)
    time.sleep(1.5)
    (tmp_path / "STOP").touch()
    stats = [_last_json(w) for w in writers]
    memory = Memory(path)
    _, spans = memory.read_only_sql("SELECT run_id FROM spans ORDER BY started_at")
    assert len(spans) == sum(s["written"] for s in stats)  # none lost
    turns = sum(1 for x, y in itertools.pairwise(spans) if x != y)
    assert turns >= 2, "the writers never took turns"  # each yielded to the other
    assert sum(s["handovers"] for s in stats) >= 1


def test_in_flight_batch_delays_the_handover(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    memory = Memory(path)
    _span(memory, "a")
    reader = _child(path, "read")
    with memory.connect() as con:
        _go(reader)
        time.sleep(0.5)  # the reader asks meanwhile
        # another thread's operation, which the batch waits for, joins the batch's
        # connection instead of waiting for the handover forever
        other = threading.Thread(target=_span, args=(memory, "b"))
        other.start()
        other.join(timeout=10)
        assert not other.is_alive()
        assert con.execute("SELECT count(*) FROM spans").fetchone() == (2,)
    answer = _last_json(reader)
    assert 0.4 < answer["seconds"] < 2.0 and answer["spans"] == 2
    assert memory.connection_stats()["handovers"] == 1
    _span(memory, "c")  # and the writer takes the file back
    assert len(memory.spans("r1")) == 3


def test_killed_holder_frees_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    Memory(path).close()
    holder = _child(path, "hold", "killed")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    started = time.monotonic()
    memory = Memory(path)
    assert time.monotonic() - started < 2.0  # the OS dropped the lock: no waiting
    assert [s["span_id"] for s in memory.spans("killed")] == ["killed-0"]  # committed, kept


@pytest.mark.slow
def test_per_operation_cost(tmp_path: Path) -> None:
    """A measurement, not a limit (run with -s to see it): a small insert and the planner's
    context on the long-lived connection, and with an open and a close around each operation
    (what every operation cost before)."""
    memory = Memory(tmp_path / "m.duckdb")
    with memory.connect() as con:  # 2,000 candidates, half of them scored, in lineages
        con.execute(
            "INSERT INTO candidates (candidate_id, run_id, task, task_fingerprint, source, "
            "source_hash, parents, plan, brain, origin, status, score, metrics, created_at, "
            "updated_at) SELECT 'c' || i, 'r1', 'mqar', 'fp', 'x = 1', 'h' || i, "
            "CASE WHEN i > 0 THEN json_array('c' || (i // 2)) ELSE '[]' END, "
            "json_object('hypothesis', 'h' || (i % 97)), 'heuristic', 'proposed', "
            "CASE WHEN i % 2 = 0 THEN 'ok' ELSE 'failed' END, "
            "CASE WHEN i % 2 = 0 THEN random() END, '{}', now(), now() FROM range(2000) t(i)"
        )
    operations = {
        "insert": lambda i: _span(memory, f"s{i}"),
        "planner_context": lambda i: planner_context(memory, "fp", with_code=True),
    }
    costs: dict[str, float] = {}
    results: dict[str, list[object]] = {}
    for name, operation in operations.items():
        for short_lived in (False, True):
            mode = "short-lived" if short_lived else "long-lived"
            memory.release()  # each block starts with the file closed
            opens = memory.connection_stats()["opens"]
            times, results[f"{name} {mode}"] = [], []
            for i in range(15):
                started = time.perf_counter()
                results[f"{name} {mode}"].append(operation(f"{mode}{i}"))
                if short_lived:
                    memory.release()
                times.append(time.perf_counter() - started)
            costs[f"{name} {mode} ms"] = round(1000 * statistics.median(times), 2)
            assert memory.connection_stats()["opens"] - opens == (15 if short_lived else 1)
    print(f"\nper-operation cost (median of 15): {json.dumps(costs)}")
    context = results["planner_context long-lived"]
    assert context[0] == results["planner_context short-lived"][0]  # the same answer
    assert len(memory.spans("r1")) == 30
