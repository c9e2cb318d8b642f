"""`archlab show` for a candidate a run left without an outcome (its critique failed)."""

from __future__ import annotations

from pathlib import Path

from archlab.memory.store import MEMORY_FILE, Memory
from support import cli


def test_a_candidate_left_pending_shows_its_plan_not_none(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    memory = Memory(home / MEMORY_FILE)
    memory.start_run(
        run_id="r1", task="mqar", task_fingerprint="f", brain="llm:x", seed=0, config={}
    )
    memory.finish_run("r1", "failed", "LLMError: the critic's endpoint went away")
    plan = {"operator": "new", "hypothesis": "h", "motivation": "m", "expected_effect": "e",
            "summary": "two-head transformer"}  # fmt: skip
    memory.save_candidate(
        candidate_id="c1", run_id="r1", task="mqar", task_fingerprint="f", source="",
        source_hash="s", ast_hash="a", parents=[], plan=plan, genome=None, genome_key=None,
        brain="llm:x", origin="proposed", status="pending",
    )  # fmt: skip
    shown = cli(home, "show", "r1")
    assert "None: None" not in shown
    assert "two-head transformer" in shown and "pending" in shown
