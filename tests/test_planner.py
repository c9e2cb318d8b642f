"""The planner with the heuristic brain: what it hands the brain from the memory."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from archlab.config import load_settings
from archlab.orchestration.runs import discover, open_memory
from archlab.roles.planner import _baseline_genome
from archlab.search.genome import Genome, baseline_genome
from archlab.tasks.digits import Digits
from archlab.tasks.mqar import MQAR
from support import TINY_MQAR, FakeExecutor


def test_only_the_packaged_transformer_baseline_is_the_baseline_genome() -> None:
    assert _baseline_genome(MQAR(**TINY_MQAR)) == baseline_genome()
    assert _baseline_genome(Digits()) is None


def test_the_baseline_is_a_tried_parent_not_a_new_idea(tmp_path: Path) -> None:
    """Before, the brain's first proposal was the baseline's own genome, rendered: a wasted
    trial. Now the transformer baseline is the baseline genome, tried, and a parent."""
    settings = load_settings(
        flags={
            "home": str(tmp_path / "home"),
            "run": {"trials": 3, "seed": 0, "lanes": 1},
            "tasks": {"mqar": {**TINY_MQAR, "proxy_steps": 8}},
            "ladder": {"confirm_seeds": 1, "scale_top": 0},
            # no random restarts (a draw of the run id picked one, one run in ten)
            "search": {"random_samples": 0, "random_rate": 0},
        },
        environ={},
    )
    run_id = discover(settings, Console(quiet=True), FakeExecutor())
    candidates = open_memory(settings.home_dir).candidates(run_id)
    rows = sorted(candidates, key=lambda row: row["created_at"])
    assert [r["origin"] for r in rows] == ["baseline", "proposed", "proposed"]
    baseline_id = rows[0]["candidate_id"]
    genomes = [Genome.model_validate(r["genome"]).key() for r in rows[1:]]
    assert baseline_genome().key() not in genomes and len(set(genomes)) == 2
    assert rows[1]["parents"] == [baseline_id]  # the only parent the pool holds
