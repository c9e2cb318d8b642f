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
from rich.markup import escape

from archlab.config import Settings, nested, stored_settings
from archlab.errors import ArchlabError, disk_full
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


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a registered run: it is recorded as interrupted and can
    be resumed."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id


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
    name: str | None = None,
    kind: str = "discovery",
) -> Iterator[Lab]:
    """Register a run (or take up the `resumed` one), yield its context, and close it with
    the right status whatever happens.

    `brain` names what proposes the candidates when it is not the configured roles; `name`
    is the run's own (`archlab run --name`); `kind` is discovery or eval."""
    home = settings.home_dir
    task = get_task(settings.run.task, settings.tasks.get(settings.run.task))
    memory = open_memory(home)
    if name is not None:
        memory.check_run_name(name)
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
                name=name,
                kind=kind,
            )
        try:
            yield lab
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (the CLI raises it so)
            _finish(lab, "interrupted", str(e) or "stopped by the user")
            raise RunInterrupted(run_id) from None
        except Exception as e:
            full = disk_full(e)
            if full is not None:  # nothing more can be written, the status neither
                raise ArchlabError(
                    f"a write found the disk full ({full}): everything committed before it "
                    "is kept; make room (`archlab rm` deletes a run with its trial files), "
                    f"then `archlab resume {run_id}` continues the run"
                ) from None
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


def discover(
    settings: Settings,
    console: Console,
    executor: Executor | None = None,
    name: str | None = None,
) -> str:
    """Run a discovery until its budget is spent; return the run id. `executor` replaces
    the configured one (the orchestration benchmark answers trials from a recording);
    `name` names the run."""
    with _run(settings, console, executor=executor, name=name) as lab:
        run = settings.run
        lab.report.say(
            f"run [bold]{lab.run_id}[/] on task [bold]{lab.task.name}[/]: "
            + " or ".join(
                [f"{run.trials} candidates"] * bool(run.trials)
                + [f"{run.minutes:g} minutes"] * bool(run.minutes)
            )
            + (f", {run.lanes} lanes" if run.lanes > 1 else "")
            + escape(
                f", {lab.brains.describe()} brain ({run.mode} mode), "
                f"{lab.executor.describe()}, home {lab.home}"
            )
        )
        with lab.report.running(lab.task_fingerprint):
            start: LabState = {"run_id": lab.run_id, "evaluated": 0, "history": []}
            lab.stopped = _stopped(drive(lab, start))
            _conclude(lab)
        return lab.run_id


def resume(
    home: Path,
    run_id: str,
    console: Console,
    executor: Executor | None = None,
    *,
    trials: int = 0,
    minutes: float = 0.0,
    flags: dict[str, Any] | None = None,
) -> str:
    """Continue a run that was killed, interrupted or failed, from its checkpoints, with
    the settings it started with, or extend a finished one: `trials` and `minutes` add to
    its budgets, `flags` (dotted keys, e.g. llm.default.model) replace settings. What they
    change is recorded with the run (`run_changes`). `executor`, as for `discover`. A run
    of `archlab eval` finishes its one candidate, and nothing more."""
    memory = open_memory(home)
    run = memory.get_run(run_id)
    config = run["config"]
    single = run["kind"] == "eval"
    if single:
        _check_eval_left(run, trials, minutes)
    wanted = {**(flags or {})}
    if trials:
        wanted["run.trials"] = (
            config["run"]["trials"] or memory.count_candidates(run["run_id"])
        ) + trials
    if minutes and not trials:  # M more minutes, candidates without limit (as `run --minutes`)
        wanted["run.trials"] = 0
    if minutes:
        wanted["run.minutes"] = (config["run"]["minutes"] or (run["elapsed_s"] or 0) / 60) + minutes
    changes = {
        key: (_dotted(config, key), value)
        for key, value in wanted.items()
        if value is not None and _dotted(config, key) != value
    }
    settings = stored_settings(
        {**config, "home": str(home)}, nested({k: new for k, (_, new) in changes.items()})
    )
    if run["status"] == "finished":
        _check_budget_left(memory, run, settings)
    with _run(settings, console, resumed=run, executor=executor) as lab:
        if changes:
            memory.save_run_changes(lab.run_id, changes)
            memory.set_run_config(lab.run_id, settings.model_dump(mode="json"))
        changed = "; ".join(f"{key} {old} -> {new}" for key, (old, new) in changes.items())
        lab.report.say(
            f"resuming run [bold]{lab.run_id}[/] ({run['status']}) from its checkpoint"
            + (f" with {escape(changed)}" if changed else "")
        )
        with lab.report.running(lab.task_fingerprint, candidates=1 if single else None):
            lab.stopped = _stopped(drive(lab, None, single))
            if not single:  # an eval run has no search to sum up
                _conclude(lab)
        return lab.run_id


def _dotted(config: dict[str, Any], key: str) -> Any:
    """The value at a dotted key of a nested config (None where there is none)."""
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _check_eval_left(run: dict[str, Any], trials: int, minutes: float) -> None:
    """A run of `archlab eval` goes on only to finish its candidate."""
    if trials or minutes:
        raise ArchlabError(
            f"run {run['run_id']} evaluates one hand-written candidate (`archlab eval`): "
            "--trials and --minutes do not apply to it"
        )
    if run["status"] == "finished":
        raise ArchlabError(f"run {run['run_id']} (`archlab eval`) already finished")


def _check_budget_left(memory: Memory, run: dict[str, Any], settings: Settings) -> None:
    """A finished run goes on only with budget left: a clear error that says how to add it."""
    budget = RunBudget(settings.run, memory, run["run_id"], run["elapsed_s"] or 0.0)
    spent = budget.spent()
    trials = settings.run.trials
    if spent is None and trials and memory.count_candidates(run["run_id"]) >= trials:
        spent = f"trial budget spent ({trials} candidates)"
    if spent:
        raise ArchlabError(
            f"run {run['run_id']} already finished: {spent}; add budget with "
            f"`archlab resume {run['run_id']} --trials N` or `--minutes M`"
        )


def evaluate_file(
    settings: Settings, path: Path, console: Console, executor: Executor | None = None
) -> dict[str, Any]:
    """Evaluate a hand-written candidate through the same verify and train path; record it
    (`executor`, as for `discover`)."""
    try:
        source = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ArchlabError(f"cannot read candidate {path}: {e}") from None
    with _run(settings, console, brain="manual", executor=executor, kind="eval") as lab:
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
            (state,) = drive(lab, start, single=True)
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
