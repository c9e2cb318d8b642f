"""Starting runs: wire settings, memory, task, sandbox and graph together."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver
from rich.console import Console

from archlab.agents.brains import build_brains
from archlab.agents.graph import build_graph
from archlab.agents.state import LabState, RunContext
from archlab.config import Settings
from archlab.errors import ArchlabError
from archlab.eval.tasks import get_task
from archlab.memory.store import MEMORY_FILE, Memory
from archlab.sandbox.launcher import make_launcher

CHECKPOINT_FILE = "checkpoints.sqlite"


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"


def open_memory(home: Path) -> Memory:
    return Memory(home / MEMORY_FILE)


@contextmanager
def _run(
    settings: Settings, console: Console, brain: str | None = None, resumed: str | None = None
) -> Iterator[RunContext]:
    """Register a run (or take up `resumed`), yield its context, and close it with the right
    status whatever happens.

    `brain` names what proposes the candidates when it is not the configured roles."""
    home = settings.home_dir
    task = get_task(settings.run.task, settings.tasks.get(settings.run.task))
    memory = open_memory(home)
    run_id = resumed or new_run_id()
    brains = build_brains(settings, memory, run_id)
    ctx = RunContext(
        run_id=run_id,
        settings=settings,
        task=task,
        memory=memory,
        launcher=make_launcher(settings.sandbox.level, settings.sandbox.log_tail_bytes),
        brains=brains,
        home=home,
        console=console,
    )
    if resumed:
        memory.resume_run(run_id)
    else:
        memory.start_run(
            run_id=ctx.run_id,
            task=task.name,
            task_fingerprint=ctx.task_fingerprint,
            brain=brain or brains.describe(),
            seed=settings.run.seed,
            config=settings.model_dump(mode="json"),
        )
    try:
        yield ctx
    except KeyboardInterrupt:
        memory.finish_run(ctx.run_id, "interrupted", "stopped by the user")
        raise
    except Exception as e:
        memory.finish_run(ctx.run_id, "failed", f"{type(e).__name__}: {e}")
        raise
    memory.finish_run(ctx.run_id, "finished", ctx.stopped)


def _invoke(ctx: RunContext, state: LabState | None) -> LabState:
    """Run the graph from `state`, or with None from the run's last checkpoint: the node
    that was interrupted runs again, everything before it is kept."""
    # check_same_thread=False: LangGraph writes checkpoints from its own worker threads.
    conn = sqlite3.connect(ctx.home / CHECKPOINT_FILE, check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        graph = build_graph(ctx, saver)
        config: Any = {
            "configurable": {"thread_id": ctx.run_id},
            "recursion_limit": 10 * ctx.settings.run.trials + 20,
        }
        if state is None and saver.get_tuple(config) is None:
            raise ArchlabError(f"run {ctx.run_id} left no checkpoint to resume from")
        result: LabState = graph.invoke(state, config=config, durability="sync")
        return result
    finally:
        conn.close()


def discover(settings: Settings, console: Console) -> str:
    """Run a discovery until its budget is spent; return the run id."""
    with _run(settings, console) as ctx:
        console.print(
            f"run [bold]{ctx.run_id}[/] on task [bold]{ctx.task.name}[/]: "
            f"{settings.run.trials} candidates"
            + (f" or {settings.run.minutes:g} minutes" if settings.run.minutes else "")
            + f", {ctx.brains.describe()} brain ({settings.run.mode} mode), "
            f"sandbox {ctx.launcher.level}, home {ctx.home}"
        )
        result = _invoke(
            ctx, {"run_id": ctx.run_id, "evaluated": 0, "started_at": time.time(), "history": []}
        )
        ctx.stopped = result.get("stopped")
        return ctx.run_id


def resume(home: Path, run_id: str, console: Console) -> str:
    """Continue a run that was killed or interrupted, with the settings it started with."""
    run = open_memory(home).get_run(run_id)
    if run["status"] == "finished":
        raise ArchlabError(f"run {run['run_id']} already finished")
    settings = Settings.model_validate({**run["config"], "home": str(home)})
    with _run(settings, console, resumed=run["run_id"]) as ctx:
        console.print(f"resuming run [bold]{ctx.run_id}[/] ({run['status']}) from its checkpoint")
        result = _invoke(ctx, None)
        ctx.stopped = result.get("stopped")
        return ctx.run_id


def evaluate_file(settings: Settings, path: Path, console: Console) -> dict[str, Any]:
    """Evaluate a hand-written candidate through the same verify and train path; record it."""
    try:
        source = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ArchlabError(f"cannot read candidate {path}: {e}") from None
    with _run(settings, console, brain="manual") as ctx:
        candidate: dict[str, Any] = {
            "candidate_id": uuid.uuid4().hex[:12],
            "origin": "manual",
            "brain": "manual",
            "parents": [],
            "genome": None,
            "source": source,
            "plan": {
                "operator": "manual",
                "hypothesis": f"hand-written candidate {path.name}",
                "motivation": "submitted with archlab eval",
                "expected_effect": "unknown",
            },
        }
        state = _invoke(
            ctx,
            {
                "run_id": ctx.run_id,
                "single": True,
                "evaluated": 0,
                "started_at": time.time(),
                "candidate": candidate,
                "history": [],
            },
        )
        stages = [
            {k: check[k] for k in ("stage", "status", "error_class", "message", "details")}
            for check in ctx.memory.checks(candidate["candidate_id"])
        ]
        return {
            "run_id": ctx.run_id,
            "candidate_id": candidate["candidate_id"],
            **state["outcome"],
            "verdict": state["verdict"],
            "stages": stages,
        }
