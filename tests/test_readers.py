"""Readers while a run writes: DuckDB lets one process at a time open the file, so the run
keeps it open and hands it over to each reader that asks (memory.store). Here a real run
and a stream of CLI readers share one home, and neither may see an error."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from support import archlab, start

pytestmark = pytest.mark.slow


def _count(lab_dir: Path, table: str) -> int:
    rows = json.loads(
        archlab(lab_dir, "sql", f"SELECT count(*) AS n FROM {table}", "--json").stdout
    )
    return int(rows[0]["n"])


def test_cli_readers_while_a_run_writes(lab_dir: Path) -> None:
    home = lab_dir / "home"  # where test_cli.archlab points every command
    writer = start(lab_dir, "run", "--trials", "3")
    seen: list[int] = []  # candidates each reader saw, in order
    traces = 0
    slowest = 0.0  # seconds, the slowest reader command (Python's start-up included)
    try:
        while not (home / "memory.duckdb").exists() and writer.poll() is None:
            time.sleep(0.2)
        while writer.poll() is None:
            # archlab() fails on any non-zero exit; json.loads on any invalid answer
            started = time.monotonic()
            runs = json.loads(archlab(lab_dir, "runs", "--json").stdout)
            slowest = max(slowest, time.monotonic() - started)
            if runs:
                json.loads(archlab(lab_dir, "trace", runs[0]["run_id"], "--json").stdout)
                traces += 1
            seen.append(_count(lab_dir, "candidates"))
    finally:
        if writer.poll() is None:
            writer.kill()
        _, errors = writer.communicate(timeout=60)
    assert writer.returncode == 0, errors
    assert traces >= 2, "the readers never saw the run live"
    print(f"\n{traces} rounds of readers; the slowest `archlab runs` took {slowest:.2f}s")
    assert not (home / "memory.duckdb.wanted").exists()  # every request was answered

    # nothing lost: the finished memory holds everything, and readers only ever saw growth
    (run,) = json.loads(archlab(lab_dir, "runs", "--json").stdout)
    assert run["status"] == "finished" and run["n_candidates"] == 3
    assert seen == sorted(seen) and seen[-1] <= 3
    spans = json.loads(archlab(lab_dir, "trace", run["run_id"], "--json").stdout)
    nodes = [s for s in spans if s["kind"] == "node"]
    assert sum(s["name"] == "record" for s in nodes) == 3
    assert nodes[-1]["name"] == "conclude"
    assert sum(s["kind"] == "trial" for s in spans) == _count(lab_dir, "trials")
    assert all(s["parent_id"] for s in spans if s["kind"] != "node")
