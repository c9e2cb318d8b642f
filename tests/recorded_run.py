"""`python recorded_run.py HOME CANDIDATES [RUN_ID]`: the soak's discovery (or, given a
run id, its resume) with trials answered from a recording after each kind's first
(RecordedExecutor), a line printed for each: a process that writes to the memory as fast
as the lab can, for the tests to kill. With `DIE_AFTER_PLAN=N` in its environment the
process kills itself at one exact point: once LangGraph has saved the writes of the Nth
plan node, before the checkpoint that follows them."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver
from rich.console import Console

from archlab.benchmarks import RecordedExecutor
from archlab.config import Settings, load_settings
from archlab.orchestration.runs import discover, resume
from archlab.sandbox.executor import TrialReport, TrialRequest, make_executor
from support import TINY_MQAR


def soak_settings(home: Path, candidates: int) -> Settings:
    """Four lanes, two workers, tiny MQAR trials, two confirm seeds."""
    soak = {**TINY_MQAR, "proxy_steps": 8, "train_examples": 128, "eval_examples": 16}
    return load_settings(
        flags={
            "home": str(home),
            "run": {"trials": candidates, "lanes": 4},
            "executor": {"workers": 2},
            "tasks": {"mqar": soak},
            "sandbox": {"memory_gb": 4},
            "ladder": {"confirm_seeds": 2, "scale_top": 0},
        },
        environ={},
    )


def recorded_executor(
    settings: Settings, kind: type[RecordedExecutor] = RecordedExecutor
) -> RecordedExecutor:
    return kind(make_executor(settings, settings.home_dir / "trials"))


class Announcing(RecordedExecutor):
    """Prints a line for each trial it answers, just before the lab records it: the kill
    tests count them to kill the process in the middle of its work."""

    def run(self, request: TrialRequest) -> TrialReport:
        report = super().run(request)
        print("answered", flush=True)
        return report


def main(home: Path, candidates: int, run_id: str | None) -> None:
    settings = soak_settings(home, candidates)
    console = Console(quiet=True)
    executor = recorded_executor(settings, Announcing)
    if run_id is None:
        discover(settings, console, executor)
    else:
        resume(home, run_id, console, executor)


def die_after_plan(nth: int) -> None:
    put_writes, planned = SqliteSaver.put_writes, []

    def dying(self: SqliteSaver, config: Any, writes: Sequence[tuple[str, Any]], *a: Any) -> None:
        put_writes(self, config, writes, *a)
        channels = dict(writes)
        if channels.get("candidate") and "step" in channels:  # plan's writes: an idea
            planned.append(a)
            if len(planned) == nth:
                os._exit(137)

    SqliteSaver.put_writes = dying  # type: ignore[method-assign]


if __name__ == "__main__":
    if "DIE_AFTER_PLAN" in os.environ:
        die_after_plan(int(os.environ["DIE_AFTER_PLAN"]))
    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
