"""Starting runs: wire settings, memory, task, executor and graph together, drive the
run's lanes (`lanes`), and conclude it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from archlab.config import Settings
from archlab.errors import ArchlabError
from archlab.memory import leases
from archlab.memory.store import MEMORY_FILE, Memory
from archlab.orchestration.budget import RunBudget
from archlab.orchestration.console import Reporter
from archlab.orchestration.lab import Lab
from archlab.orchestration.lanes import drive
from archlab.orchestration.state import LabState
from archlab.orchestration.tracing import traced
from archlab.records import Candidate
from archlab.roles import ladder
from archlab.roles.brains import build_brains
from archlab.sandbox.executor import Executor, make_executor
from archlab.tasks import get_task


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
) -> Iterator[Lab]:
    """Register a run (or take up the `resumed` one), yield its context, and close it with
    the right status whatever happens.

    `brain` names what proposes the candidates when it is not the configured roles."""
    home = settings.home_dir
    task = get_task(settings.run.task, settings.tasks.get(settings.run.task))
    memory = open_memory(home)
    run_id = resumed["run_id"] if resumed else new_run_id()
    # the lease first: a second process resuming this run is refused before it reads anything
    with leases.hold(home, run_id):
        cancel = threading.Event()  # the lanes' and the LLM calls': Ctrl-C stops both
        brains = build_brains(settings, memory, run_id, cancel)
        trials_dir = home / "trials" / run_id
        # local trials use the run's own task and data (the lab's, once it exists)
        executor = executor or make_executor(
            settings, trials_dir, lambda request: (lab.task, lab.data_for(request.data_seed))
        )
        lab = Lab(
            run_id=run_id,
            settings=settings,
            task=task,
            memory=memory,
            executor=executor,
            brains=brains,
            home=home,
            cancel=cancel,
        )
        elapsed_s = (resumed or {}).get("elapsed_s") or 0.0
        lab.budget = RunBudget(settings.run, memory, run_id, elapsed_s)
        lab.report = Reporter(console, lab.budget, trials_dir)
        if resumed:
            memory.resume_run(run_id)
        else:
            memory.start_run(
                run_id=lab.run_id,
                task=task.name,
                task_fingerprint=lab.task_fingerprint,
                brain=brain or brains.describe(),
                seed=settings.run.seed,
                config=settings.model_dump(mode="json"),
            )
        try:
            yield lab
        except KeyboardInterrupt:
            _finish(lab, "interrupted", "stopped by the user")
            raise
        except Exception as e:
            _finish(lab, "failed", f"{type(e).__name__}: {e}")
            raise
        finally:
            executor.close()
        _finish(lab, "finished", lab.stopped)


def _finish(lab: Lab, status: str, message: str | None) -> None:
    lab.budget.save_elapsed()
    lab.memory.finish_run(lab.run_id, status, message)


def _conclude(lab: Lab) -> dict[str, Any]:
    """Once every lane is done: the scale stage and the run's summary, once per run."""

    def conclude(state: LabState) -> dict[str, Any]:
        with lab.report.live(None, "scale"):
            scaled = ladder.scale(lab, lab.budget.time_left())
        minutes = lab.settings.run.minutes
        summary = {
            **ladder.summary(lab, scaled),
            # the time as the budget counts it (over every session), and the time budget
            "elapsed_s": lab.budget.elapsed(),
            "budget_s": minutes * 60 if minutes else None,
        }
        lab.memory.set_run_summary(lab.run_id, summary)
        return {"summary": summary}

    return traced(lab, "conclude", conclude)({"run_id": lab.run_id})


def _stopped(results: list[LabState]) -> str | None:
    return next((r["stopped"] for r in results if r.get("stopped")), None)


def discover(settings: Settings, console: Console, executor: Executor | None = None) -> str:
    """Run a discovery until its budget is spent; return the run id. `executor` replaces
    the configured one (the orchestration benchmark answers trials from a recording)."""
    with _run(settings, console, executor=executor) as lab:
        run = settings.run
        lab.report.say(
            f"run [bold]{lab.run_id}[/] on task [bold]{lab.task.name}[/]: "
            + " or ".join(
                [f"{run.trials} candidates"] * bool(run.trials)
                + [f"{run.minutes:g} minutes"] * bool(run.minutes)
            )
            + (f", {run.lanes} lanes" if run.lanes > 1 else "")
            + f", {lab.brains.describe()} brain ({run.mode} mode), "
            f"{lab.executor.describe()}, home {lab.home}"
        )
        with lab.report.running(lab.task_fingerprint):
            start: LabState = {"run_id": lab.run_id, "evaluated": 0, "history": []}
            lab.stopped = _stopped(drive(lab, start))
            _conclude(lab)
        return lab.run_id


def resume(home: Path, run_id: str, console: Console, executor: Executor | None = None) -> str:
    """Continue a run that was killed or interrupted, with the settings it started with
    (`executor`, as for `discover`)."""
    run = open_memory(home).get_run(run_id)
    if run["status"] == "finished":
        raise ArchlabError(f"run {run['run_id']} already finished")
    settings = Settings.model_validate({**run["config"], "home": str(home)})
    with _run(settings, console, resumed=run, executor=executor) as lab:
        lab.report.say(f"resuming run [bold]{lab.run_id}[/] ({run['status']}) from its checkpoint")
        with lab.report.running(lab.task_fingerprint):
            lab.stopped = _stopped(drive(lab, None))
            _conclude(lab)
        return lab.run_id


def evaluate_file(
    settings: Settings, path: Path, console: Console, executor: Executor | None = None
) -> dict[str, Any]:
    """Evaluate a hand-written candidate through the same verify and train path; record it
    (`executor`, as for `discover`)."""
    try:
        source = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ArchlabError(f"cannot read candidate {path}: {e}") from None
    with _run(settings, console, brain="manual", executor=executor) as lab:
        candidate: Candidate = {
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
        lab.budget.hold(1)  # the candidate comes with the run: no planner claims its slot
        start: LabState = {
            "run_id": lab.run_id,
            "single": True,
            "evaluated": 0,
            "candidate": candidate,
            "history": [],
        }
        with lab.report.running(lab.task_fingerprint, candidates=1):
            (state,) = drive(lab, start)
        stages = [
            {k: check[k] for k in ("stage", "name", "status", "error_class", "message", "details")}
            for check in lab.memory.checks(candidate["candidate_id"])
        ]
        return {
            "run_id": lab.run_id,
            "candidate_id": candidate["candidate_id"],
            **state["outcome"],
            "verdict": state["verdict"],
            "stages": stages,
        }
