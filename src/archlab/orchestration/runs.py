"""Starting runs: wire settings, memory, task, executor and graph together, drive the
run's lanes, and conclude it."""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver
from rich.console import Console

from archlab.config import Settings
from archlab.errors import ArchlabError
from archlab.llm.brains import build_brains
from archlab.memory import leases
from archlab.memory.store import MEMORY_FILE, Memory
from archlab.orchestration.budget import RunBudget
from archlab.orchestration.graph import build_graph, live_status
from archlab.orchestration.state import LabState
from archlab.orchestration.tracing import traced
from archlab.roles import coder, ladder
from archlab.roles.context import Cancelled, RunContext
from archlab.sandbox.executor import Executor, make_executor
from archlab.sandbox.launcher import kill_group
from archlab.tasks import get_task

CHECKPOINT_FILE = "checkpoints.sqlite"


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"


def open_memory(home: Path) -> Memory:
    return Memory(home / MEMORY_FILE)


@contextmanager
def _run(
    settings: Settings,
    console: Console,
    brain: str | None = None,
    resumed: dict[str, Any] | None = None,
    executor: Executor | None = None,
) -> Iterator[RunContext]:
    """Register a run (or take up the `resumed` one), yield its context, and close it with
    the right status whatever happens.

    `brain` names what proposes the candidates when it is not the configured roles."""
    home = settings.home_dir
    task = get_task(settings.run.task, settings.tasks.get(settings.run.task))
    memory = open_memory(home)
    run_id = resumed["run_id"] if resumed else new_run_id()
    # the lease first: a second process resuming this run is refused before it reads anything
    with leases.hold(home, run_id):
        brains = build_brains(settings, memory, run_id)
        # local trials use the run's own task and data (ctx's, once it exists)
        executor = executor or make_executor(
            settings, home / "trials" / run_id, lambda _: (ctx.task, ctx.data)
        )
        ctx = RunContext(
            run_id=run_id,
            settings=settings,
            task=task,
            memory=memory,
            executor=executor,
            brains=brains,
            home=home,
            console=console,
        )
        elapsed_s = (resumed or {}).get("elapsed_s") or 0.0
        ctx.budget = RunBudget(settings.run, memory, run_id, elapsed_s)
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
            _finish(ctx, "interrupted", "stopped by the user")
            raise
        except Exception as e:
            _finish(ctx, "failed", f"{type(e).__name__}: {e}")
            raise
        finally:
            executor.close()
        _finish(ctx, "finished", ctx.stopped)


def _finish(ctx: RunContext, status: str, message: str | None) -> None:
    ctx.budget.save_elapsed()
    ctx.memory.finish_run(ctx.run_id, status, message)


def _thread_id(run_id: str, lane: int) -> str:
    """Lane 0 keeps the run id as its checkpoint thread, as runs without lanes had."""
    return run_id if lane == 0 else f"{run_id}/lane{lane}"


def _drive(ctx: RunContext, start: LabState | None) -> list[LabState]:
    """Run the lanes to their end, each from `start`, or with None from its last
    checkpoint: the node that was interrupted runs again, everything before it is kept."""
    # check_same_thread=False: LangGraph writes checkpoints from its own worker threads.
    conn = sqlite3.connect(ctx.home / CHECKPOINT_FILE, check_same_thread=False)
    # WAL without a sync per commit: a killed process loses no committed checkpoint (the
    # OS holds its writes); a power cut may lose the last few, and resuming from an older
    # one re-runs nodes whose memory writes are upserts: the memory is never behind.
    conn.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    try:
        saver = SqliteSaver(conn)
        graph = build_graph(ctx, saver)
        lanes = 1 if start and start.get("single") else ctx.settings.run.lanes
        configs: list[Any] = [
            {
                "configurable": {"thread_id": _thread_id(ctx.run_id, lane)},
                "recursion_limit": 10 * ctx.settings.run.trials + 20,
            }
            for lane in range(lanes)
        ]
        inputs: list[LabState | None] = []
        # killed before its first checkpoint, a run has no candidates and starts afresh;
        # with candidates, its checkpoints are lost and a fresh start would repeat steps
        if (
            start is None
            and saver.get_tuple(configs[0]) is None
            and ctx.memory.candidates(ctx.run_id)
        ):
            raise ArchlabError(f"run {ctx.run_id} left no checkpoint to resume from")
        fresh: LabState = {"run_id": ctx.run_id, "evaluated": 0, "history": []}
        for lane, config in enumerate(configs):
            snapshot = graph.get_state(config) if start is None else None
            if snapshot is not None and snapshot.values:
                inputs.append(None)
                ctx.budget.hold(_claim_held(ctx, snapshot.values))
            else:  # a new run, or a lane that had not started when the run stopped
                inputs.append({**(start or fresh), "lane": lane})
        ctx.data  # noqa: B018 -- generated once here, before the lanes share it
        return _run_lanes(ctx, graph, configs, inputs)
    finally:
        conn.close()


def _claim_held(ctx: RunContext, state: dict[str, Any]) -> int:
    """Whether a resumed lane holds a claimed slot: it is about to code a candidate that
    the memory has not saved yet (a planned idea, or the next attempt of a repair).

    `state` is the lane's live state: with the writes of a node that finished after the
    last checkpoint (LangGraph keeps them and does not run the node again), so the answer
    comes from the state and the memory, not from which node is next."""
    candidate = state.get("candidate")
    if not candidate:
        return 0
    cid = candidate["candidate_id"]
    if not ctx.memory.is_settled(cid):
        ctx.inflight.add(cid, candidate["origin"], coder.genome_key(candidate))
    if state.get("repair_next"):  # record claimed a slot for the next attempt
        cid = coder.repair_id(cid)
    saved = ctx.memory.candidate_exists(cid)
    return 0 if saved else 1


def _run_lanes(
    ctx: RunContext, graph: Any, configs: list[Any], inputs: list[LabState | None]
) -> list[LabState]:
    """Lanes are threads over one memory and one executor. Lane 0 goes first: the others
    start once the baseline, every lane's yardstick, is recorded."""
    results: list[LabState] = [{} for _ in configs]
    failures: list[BaseException] = []

    def lane(k: int) -> None:
        try:
            results[k] = graph.invoke(inputs[k], config=configs[k], durability="sync")
        except Cancelled:
            pass
        except BaseException as e:  # one lane's failure stops the run
            failures.append(e)
            ctx.cancel.set()

    threads = [
        threading.Thread(target=lane, args=(k,), name=f"lane-{k}", daemon=True)
        for k in range(len(configs))
    ]
    try:
        threads[0].start()
        while len(threads) > 1 and threads[0].is_alive() and not _baseline_settled(ctx):
            threads[0].join(0.5)
        for thread in threads[1:]:
            thread.start()
        for thread in threads:
            while thread.is_alive():  # join with a timeout: Ctrl-C reaches this thread
                thread.join(0.5)
    except KeyboardInterrupt:
        ctx.cancel.set()
        for thread in threads:
            while thread.is_alive():  # again and again: a lane may start one more trial
                _stop_trials()  # before it sees the cancel
                thread.join(0.2)
        raise
    if failures:
        raise failures[0]
    return results


def _baseline_settled(ctx: RunContext) -> bool:
    return ctx.cancel.is_set() or ctx.baseline_id() is not None


def _stop_trials() -> None:
    """Ctrl-C reaches only the main thread: end the trials the lanes are waiting on (each
    child leads its own process group); the lanes then leave without recording them."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = stat.read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue  # gone meanwhile
        if parent == me:
            kill_group(int(stat.parent.name))


def _conclude(ctx: RunContext) -> dict[str, Any]:
    """Once every lane is done: the scale stage and the run's summary, once per run."""

    def conclude(state: LabState) -> dict[str, Any]:
        with live_status(ctx, "the best", "scale"):
            scaled = ladder.scale(ctx, ctx.budget.time_left())
        summary = ladder.summary(ctx, scaled)
        ctx.memory.set_run_summary(ctx.run_id, summary)
        return {"summary": summary}

    return traced(ctx, "conclude", conclude)({"run_id": ctx.run_id})


def _stopped(results: list[LabState]) -> str | None:
    return next((r["stopped"] for r in results if r.get("stopped")), None)


def discover(settings: Settings, console: Console, executor: Executor | None = None) -> str:
    """Run a discovery until its budget is spent; return the run id. `executor` replaces
    the configured one (the orchestration benchmark answers trials from a recording)."""
    with _run(settings, console, executor=executor) as ctx:
        run = settings.run
        console.print(
            f"run [bold]{ctx.run_id}[/] on task [bold]{ctx.task.name}[/]: "
            f"{run.trials} candidates"
            + (f" or {run.minutes:g} minutes" if run.minutes else "")
            + (f", {run.lanes} lanes" if run.lanes > 1 else "")
            + f", {ctx.brains.describe()} brain ({run.mode} mode), "
            f"{ctx.executor.describe()}, home {ctx.home}"
        )
        ctx.stopped = _stopped(_drive(ctx, {"run_id": ctx.run_id, "evaluated": 0, "history": []}))
        _conclude(ctx)
        return ctx.run_id


def resume(home: Path, run_id: str, console: Console, executor: Executor | None = None) -> str:
    """Continue a run that was killed or interrupted, with the settings it started with
    (`executor`, as for `discover`)."""
    run = open_memory(home).get_run(run_id)
    if run["status"] == "finished":
        raise ArchlabError(f"run {run['run_id']} already finished")
    settings = Settings.model_validate({**run["config"], "home": str(home)})
    with _run(settings, console, resumed=run, executor=executor) as ctx:
        console.print(f"resuming run [bold]{ctx.run_id}[/] ({run['status']}) from its checkpoint")
        ctx.stopped = _stopped(_drive(ctx, None))
        _conclude(ctx)
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
        ctx.budget.hold(1)  # the candidate comes with the run: no planner claims its slot
        (state,) = _drive(
            ctx,
            {
                "run_id": ctx.run_id,
                "single": True,
                "evaluated": 0,
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
