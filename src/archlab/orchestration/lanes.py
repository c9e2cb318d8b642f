"""A run's lanes: concurrent LangGraph threads over one memory and one executor, each
checkpointed in SQLite beside the memory, started fresh or resumed from their checkpoints."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver

from archlab.errors import ArchlabError
from archlab.orchestration.graph import build_graph
from archlab.orchestration.lab import Lab
from archlab.orchestration.state import LabState
from archlab.roles import coder
from archlab.roles.context import Cancelled
from archlab.sandbox.process import kill_group

CHECKPOINT_FILE = "checkpoints.sqlite"


def _thread_id(run_id: str, lane: int) -> str:
    """Lane 0 keeps the run id as its checkpoint thread, as runs without lanes had."""
    return run_id if lane == 0 else f"{run_id}/lane{lane}"


def _open_checkpoints(path: Path) -> sqlite3.Connection:
    """The checkpoint database, or a clear error where the file is damaged."""
    # check_same_thread=False: LangGraph writes checkpoints from its own worker threads.
    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        # WAL without a sync per commit: a killed process loses no committed checkpoint
        # (the OS holds its writes); a power cut may lose the last few, and resuming from an
        # older one re-runs nodes whose memory writes are upserts: the memory is never behind.
        conn.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    except sqlite3.DatabaseError as e:
        conn.close()
        raise ArchlabError(
            f"the run checkpoints in {path} are damaged ({e}); move the file aside: new "
            "runs then start afresh and the memory keeps every result, but the runs it held "
            "cannot be resumed"
        ) from None
    return conn


def forget(home: Path, run_id: str) -> None:
    """Delete the checkpoints of a removed run's lanes (threads `run_id`, `run_id/laneK`)."""
    path = home / CHECKPOINT_FILE
    if not path.exists():
        return
    conn = _open_checkpoints(path)
    try:
        saver = SqliteSaver(conn)
        threads = {saved.config["configurable"]["thread_id"] for saved in saver.list(None)}
        for thread_id in threads:
            if thread_id == run_id or thread_id.startswith(f"{run_id}/lane"):
                saver.delete_thread(thread_id)
    finally:
        conn.close()


def drive(lab: Lab, start: LabState | None, single: bool = False) -> list[LabState]:
    """Run the lanes to their end, each from `start`, or with None from its last
    checkpoint: the node that was interrupted runs again, everything before it is kept.
    `single`: one lane, for the one candidate of `archlab eval`."""
    conn = _open_checkpoints(lab.home / CHECKPOINT_FILE)
    try:
        saver = SqliteSaver(conn)
        graph = build_graph(saver)
        lanes = 1 if single else lab.settings.run.lanes
        configs: list[Any] = [
            {
                "configurable": {"thread_id": _thread_id(lab.run_id, lane)},
                # a node or ten a candidate; no trial limit: a time budget's worth
                "recursion_limit": 10 * (lab.settings.run.trials or 100_000) + 20,
            }
            for lane in range(lanes)
        ]
        inputs: list[LabState | None] = []
        # killed before its first checkpoint, a run has no candidates and starts afresh;
        # with candidates, its checkpoints are lost and a fresh start would repeat steps
        if (
            start is None
            and saver.get_tuple(configs[0]) is None
            and lab.memory.candidates(lab.run_id)
        ):
            raise ArchlabError(f"run {lab.run_id} left no checkpoint to resume from")
        fresh: LabState = {"run_id": lab.run_id, "evaluated": 0, "history": []}
        for lane, config in enumerate(configs):
            snapshot = graph.get_state(config) if start is None else None
            if snapshot is not None and snapshot.values:
                # a lane that ended on a spent budget plans again: the budget may have grown
                # (resume --trials). Ended: no task left, not even one whose writes were
                # saved before a kill (LangGraph applies those instead of running it again)
                ended = not snapshot.tasks and snapshot.values.get("stopped")
                inputs.append({"stopped": None} if ended else None)
                lab.budget.hold(_claim_held(lab, snapshot.values))
                lab.turns.resume_after(snapshot.values.get("step") or 0)
            elif start is None and single:  # its candidate's source was in the state alone
                raise ArchlabError(
                    f"run {lab.run_id} stopped before it took up its candidate: "
                    "evaluate the file again with `archlab eval`"
                )
            else:  # a new run, or a lane that had not started when the run stopped
                inputs.append({**(start or fresh), "lane": lane})
        lab.data  # noqa: B018 -- generated once here, before the lanes share it
        return _run_lanes(lab, graph, configs, inputs)
    finally:
        conn.close()


def _claim_held(lab: Lab, state: dict[str, Any]) -> int:
    """Whether a resumed lane holds a claimed slot: it is about to code a candidate that
    the memory has not saved yet (a planned idea, or the next attempt of a repair).

    `state` is the lane's live state: with the writes of a node that finished after the
    last checkpoint (LangGraph keeps them and does not run the node again), so the answer
    comes from the state and the memory, not from which node is next."""
    candidate = state.get("candidate")
    if not candidate:
        return 0
    cid = candidate["candidate_id"]
    if not lab.memory.is_settled(cid):
        lab.inflight.add(cid, candidate["origin"], coder.genome_key(candidate))
    if state.get("repair_next"):  # record claimed a slot for the next attempt
        cid = coder.repair_id(cid)
    saved = lab.memory.candidate_exists(cid)
    return 0 if saved else 1


def _run_lanes(
    lab: Lab, graph: Any, configs: list[Any], inputs: list[LabState | None]
) -> list[LabState]:
    """Lanes are threads over one memory and one executor. Lane 0 goes first: the others
    start once the baseline, every lane's yardstick, is recorded."""
    results: list[LabState] = [{} for _ in configs]
    failures: list[BaseException] = []
    # Each lane says when it is done. Not Thread.is_alive: a Ctrl-C that interrupts
    # Thread.join can leave a running thread marked as stopped (CPython's bpo-45274
    # handling), and the trials of a lane taken for done outlived the run.
    done = [threading.Event() for _ in configs]
    started: list[threading.Event] = []

    def lane(k: int) -> None:
        try:
            results[k] = graph.invoke(inputs[k], config=configs[k], context=lab, durability="sync")
        except Cancelled:
            pass
        except BaseException as e:  # one lane's failure stops the run
            failures.append(e)
            lab.cancel.set()
        finally:
            done[k].set()

    def start(k: int) -> None:
        started.append(done[k])
        threading.Thread(target=lane, args=(k,), name=f"lane-{k}", daemon=True).start()

    try:
        start(0)
        while len(configs) > 1 and not done[0].is_set() and not _baseline_settled(lab):
            done[0].wait(0.5)
        for k in range(1, len(configs)):
            start(k)
        for lane_done in started:
            while not lane_done.wait(0.5):  # a timeout: Ctrl-C reaches this thread
                pass
    except KeyboardInterrupt:
        lab.cancel.set()
        for lane_done in started:
            while not lane_done.is_set():  # again and again: a lane may start one more
                _stop_trials()  # trial before it sees the cancel
                lane_done.wait(0.2)
        raise
    if failures:
        raise failures[0]
    return results


def _baseline_settled(lab: Lab) -> bool:
    return lab.cancel.is_set() or lab.baseline_id() is not None


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
