import subprocess
import sys
from pathlib import Path

import pytest

from archlab.errors import ArchlabError, MemoryCorruptError
from archlab.memory.queries import KnownGenomes
from archlab.memory.store import Memory, _migrations


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
    """DuckDB lets one process hold the file; others wait it out instead of failing."""
    path = tmp_path / "m.duckdb"
    memory = Memory(path)
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
    assert memory.runs() == []  # blocked until the other process let go
    assert holder.wait(timeout=30) == 0


def test_unknown_prefix_is_an_error(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    with pytest.raises(ArchlabError, match="no run"):
        memory.get_run("nope")
