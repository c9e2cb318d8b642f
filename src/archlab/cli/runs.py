"""Running discoveries and following them: run, resume, eval, the human in the loop
(approve, reject, steer), and the runs' leaderboards (runs, show)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from archlab.cli.common import (
    LLM_BASE_URL,
    LLM_MAX_OUTPUT_TOKENS,
    LLM_MODEL,
    LLM_STRUCTURED,
    LLM_TIMEOUT,
    app,
    cli_settings,
    existing_memory,
    fmt_score,
    llm_flags,
    out,
    print_json,
    progress,
    whole_lines,
)
from archlab.config import Settings
from archlab.errors import ArchlabError
from archlab.memory.store import Memory
from archlab.records import final_verdict, is_accepted, metric_shown, plan_title

# where trials run: [executor] in the config
_WORKERS = typer.Option(help="trials running at once")
_EXECUTOR = typer.Option("--executor", help="local (this machine) or ray (a Ray cluster)")
_RAY_ADDRESS = typer.Option(help="HOST:PORT of a Ray head (default: a local Ray instance)")


def _executor_flags(workers: int | None, kind: str | None, address: str | None) -> dict[str, Any]:
    return {"executor.workers": workers, "executor.kind": kind, "executor.ray_address": address}


@app.command()
def run(
    task: Annotated[str | None, typer.Option(help="task to discover architectures for")] = None,
    trials: Annotated[
        int | None,
        typer.Option(
            help="candidates to evaluate, baseline included (default 12; with --minutes, no limit)"
        ),
    ] = None,
    minutes: Annotated[float | None, typer.Option(help="wall-clock budget in minutes")] = None,
    seed: Annotated[int | None, typer.Option(help="search seed")] = None,
    brain: Annotated[
        str | None,
        typer.Option(
            help="every role's brain: heuristic, evolution, tpe, llm, llm:PROFILE or replay:RUN"
        ),
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="compose (genomes) or design (free-form code)")
    ] = None,
    llm_base_url: Annotated[str | None, LLM_BASE_URL] = None,
    llm_model: Annotated[str | None, LLM_MODEL] = None,
    llm_structured_output: Annotated[str | None, LLM_STRUCTURED] = None,
    llm_timeout: Annotated[float | None, LLM_TIMEOUT] = None,
    llm_max_output_tokens: Annotated[int | None, LLM_MAX_OUTPUT_TOKENS] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="stop once the LLM calls used this many tokens")
    ] = None,
    max_usd: Annotated[
        float | None, typer.Option(help="stop once the LLM calls cost this many dollars")
    ] = None,
    workers: Annotated[int | None, _WORKERS] = None,
    executor: Annotated[str | None, _EXECUTOR] = None,
    ray_address: Annotated[str | None, _RAY_ADDRESS] = None,
    lanes: Annotated[
        int | None, typer.Option(help="graph threads proposing and evaluating at once")
    ] = None,
    review: Annotated[
        bool | None,
        typer.Option("--review", help="pause before each training for `archlab approve`"),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="the run's name, accepted wherever its id is")
    ] = None,
) -> None:
    """Run an autonomous discovery until its budget is spent."""
    from archlab.orchestration.runs import (
        discover,  # torch and langgraph load only for commands that need them
    )

    settings = cli_settings(
        **{
            "run.task": task,
            "run.trials": trials,
            "run.minutes": minutes,
            "run.seed": seed,
            "run.brain": brain,
            "run.mode": mode,
            "run.max_tokens": max_tokens,
            "run.max_usd": max_usd,
            "run.lanes": lanes,
            "run.review": review,
            **llm_flags(
                llm_base_url,
                llm_model,
                llm_structured_output,
                llm_timeout,
                llm_max_output_tokens,
            ),
            **_executor_flags(workers, executor, ray_address),
        }
    )
    _until_done(lambda: discover(settings, progress, name=name), settings)


# --- the human in the loop: from another terminal, while the run goes on --------------
_RUN_ID = typer.Argument(help="run name, id or a unique prefix of the id")
_CANDIDATE = typer.Option(help="the waiting candidate (id or prefix); default: every one")


@app.command()
def approve(
    run_id: Annotated[str, _RUN_ID],
    candidate: Annotated[str | None, _CANDIDATE] = None,
    reason: Annotated[str | None, typer.Option(help="why, kept with the review")] = None,
) -> None:
    """Let a candidate of a `--review` run go on to training."""
    _decide("approve", run_id, candidate, reason)


@app.command()
def reject(
    run_id: Annotated[str, _RUN_ID],
    candidate: Annotated[str | None, _CANDIDATE] = None,
    reason: Annotated[str | None, typer.Option(help="why, kept with the review")] = None,
) -> None:
    """Stop a candidate of a `--review` run before training; the run goes on to the next."""
    _decide("reject", run_id, candidate, reason)


def _decide(decision: str, run_id: str, candidate: str | None, reason: str | None) -> None:
    from archlab.memory import reviews

    memory = existing_memory(cli_settings())
    run = memory.get_run(run_id)
    for cid in reviews.decide(memory, run["run_id"], decision, candidate, reason):
        typer.echo(f"{decision.removesuffix('e')}ed {cid}")


@app.command()
def steer(
    run_id: Annotated[str, _RUN_ID],
    note: Annotated[str, typer.Argument(help='guidance for the planner, e.g. "avoid conv"')],
) -> None:
    """Hand the planner of a run a note that shapes its next proposals."""
    from archlab.memory import reviews

    memory = existing_memory(cli_settings())
    run = memory.get_run(run_id)
    reviews.add_note(memory, run["run_id"], note)
    typer.echo(f"noted for run {run['run_id']}: the planner reads it before its next proposal")


def _until_done(start: Callable[[], str], settings: Settings) -> None:
    """Run to the end and show the leaderboard; Ctrl-C leaves the run resumable."""
    with _resumable_on_interrupt():
        run_id = start()
    _show_leaderboard(existing_memory(settings), run_id)


@contextmanager
def _resumable_on_interrupt() -> Iterator[None]:
    """Ctrl-C or SIGTERM: say what was kept and how to go on, and exit 130."""
    from archlab.orchestration.runs import RunInterrupted

    try:
        yield
    except RunInterrupted as e:
        progress.print(
            "[yellow]interrupted[/]: everything finished so far is kept; "
            f"`archlab resume {e.run_id}` continues the run",
            highlight=False,
            soft_wrap=whole_lines(),
        )
        raise typer.Exit(130) from None
    except KeyboardInterrupt:  # before the run was registered: nothing to keep
        progress.print("[yellow]interrupted[/] before the run started")
        raise typer.Exit(130) from None


@app.command()
def resume(
    run_id: Annotated[str, _RUN_ID],
    trials: Annotated[
        int | None, typer.Option(min=1, help="add this many candidates to its trial budget")
    ] = None,
    minutes: Annotated[
        float | None,
        typer.Option(
            min=0, help="add this many minutes to its time budget (alone: no trial limit)"
        ),
    ] = None,
    llm_base_url: Annotated[str | None, LLM_BASE_URL] = None,
    llm_model: Annotated[str | None, LLM_MODEL] = None,
    llm_structured_output: Annotated[str | None, LLM_STRUCTURED] = None,
) -> None:
    """Continue a killed, interrupted or failed run from its last checkpoint, with its own
    settings; extend a finished one. What the flags change is recorded with the run."""
    from archlab.orchestration.runs import resume as resume_run

    settings = cli_settings()
    flags = llm_flags(llm_base_url, llm_model, llm_structured_output)
    _until_done(
        lambda: resume_run(
            settings.home_dir,
            run_id,
            progress,
            trials=trials or 0,
            minutes=minutes or 0.0,
            flags=flags,
        ),
        settings,
    )


#: a run's statuses as `runs` shows them (killed: running, but no process drives it)
_STATUSES = ("running", "killed", "interrupted", "failed", "finished")


@app.command()
def runs(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="also the runs `archlab eval` made")
    ] = False,
    task: Annotated[str | None, typer.Option(help="only the runs of this task")] = None,
    status: Annotated[
        str | None,
        typer.Option(help="only the runs with this status: " + ", ".join(_STATUSES)),
    ] = None,
) -> None:
    """List the runs in the memory (ids whole: every command takes them, or the names)."""
    if status not in (None, *_STATUSES):
        raise ArchlabError(f"no run status '{status}': one of {', '.join(_STATUSES)}")
    rows = existing_memory(cli_settings()).runs(evals=show_all, task=task, status=status)
    if as_json:
        print_json(rows)
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    # the id never shrinks (every other command needs it whole), nor do the short columns;
    # a long name, task or brain folds to fit
    for header in ("run", "name", "task", "status", "brain", "n", "best", "started"):
        table.add_column(header, overflow="fold", no_wrap=header not in ("name", "task", "brain"))
    table.columns[0].min_width = max((len(r["run_id"]) for r in rows), default=0)
    for r in rows:
        table.add_row(
            r["run_id"],
            escape(r["name"] or ("(eval)" if r["kind"] == "eval" else "")),
            r["task"],
            r["status"],
            escape(r["brain"]),
            str(r["n_candidates"]),
            fmt_score(r["best_score"]),
            f"{r['started_at']:%m-%d %H:%M}",
        )
    out.print(table)


@app.command()
def rm(
    run_id: Annotated[str, _RUN_ID],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Delete a run and everything that is only its own (candidates other runs build on stay)."""
    from archlab.memory.removal import plan_removal, remove_run
    from archlab.orchestration.lanes import forget

    memory = existing_memory(cli_settings())
    removal = plan_removal(memory, run_id)
    run_row = removal.run
    label = run_row["run_id"] + (f" ({run_row['name']})" if run_row["name"] else "")
    progress.print(
        f"run {escape(label)}: {len(removal.deleted)} candidates, their trials, checks, "
        "verdicts and weights, and the run's LLM calls, spans, notes, checkpoints and trial "
        "files will be deleted",
        highlight=False,
    )
    if removal.kept:
        progress.print(
            f"kept: {len(removal.kept)} candidates that other runs build on (parents, originals "
            f"of duplicates, a task's baseline and random samples): {' '.join(removal.kept)}",
            highlight=False,
        )
    if not yes and not typer.confirm("delete?", err=True):
        raise typer.Exit(1)
    remove_run(memory, removal)
    forget(memory.path.parent, run_row["run_id"])
    typer.echo(f"removed run {run_row['run_id']}")


def _weights(memory: Memory, record: dict[str, Any] | None) -> dict[str, Any] | None:
    """Where a candidate's kept weights lie (`path` relative to the home, `file` absolute)."""
    if record is None:
        return None
    keys = ("path", "bytes", "sha256", "trial_id")
    return {**{k: record[k] for k in keys}, "file": str(memory.path.parent / record["path"])}


def _leaderboard(memory: Memory, run_id: str) -> dict[str, Any]:
    from archlab.memory.weights import run_weights

    run_row = memory.get_run(run_id)
    verdicts = {cid: v["verdict"] for cid, v in memory.verdicts(run_row["run_id"]).items()}
    kept = run_weights(memory, run_row["run_id"])
    candidates = [
        {
            "id": c["candidate_id"],
            "status": c["status"],
            "score": c["score"],
            # where the score negates a lower-is-better metric: that metric, as people
            # read it (charlm: "2.0512 bits per byte")
            "score_as_metric": metric_shown(c),
            "metrics": c["metrics"],
            "brain": c["brain"],
            "origin": c["origin"],
            "parents": c["parents"],
            "n_params": c["n_params"],
            "summary": plan_title(c["plan"]),
            "code_sha256": hashlib.sha256(c["source"].encode()).hexdigest(),
            "error_class": c["error_class"],
            "message": c["message"],
            "seeds": c["seeds"],
            "scale_score": c["scale_score"],
            "audit": c["audit"],
            # one reading of the verdict for every view (records.final_verdict): accept or
            # reject (repair: a design-mode attempt sent back), None while undecided
            "verdict": final_verdict(verdicts.get(c["candidate_id"])),
            "accepted": is_accepted(verdicts.get(c["candidate_id"])),
            "weights": _weights(memory, kept.get(c["candidate_id"])),
        }
        for c in memory.candidates(run_row["run_id"])
    ]
    return {
        "run_id": run_row["run_id"],
        "task": run_row["task"],
        "status": run_row["status"],
        "message": run_row["message"],
        "summary": _summary(run_row),
        "candidates": candidates,
    }


def _summary(run_row: dict[str, Any]) -> dict[str, Any] | None:
    """The run's conclusion (None until it concludes) with its time as the budget counts it
    (over every session: the later of the summary's and the runs table's, stored when the
    run stopped) and its minutes budget in seconds (None: no time limit)."""
    summary = run_row["summary"]
    if summary is None:
        return None
    minutes = ((run_row["config"] or {}).get("run") or {}).get("minutes")
    elapsed = [s for s in (summary.get("elapsed_s"), run_row["elapsed_s"]) if s is not None]
    return {
        **summary,
        "elapsed_s": max(elapsed) if elapsed else None,
        "budget_s": minutes * 60 if minutes else None,
    }


def _show_leaderboard(memory: Memory, run_id: str) -> None:
    board = _leaderboard(memory, run_id)
    table = Table(
        title=f"run {board['run_id']} ({board['task']}, {board['status']})",
        box=box.SIMPLE_HEAD,
        caption="ids are shortened; any unique prefix works",
    )
    wide = out.width >= 110  # on a narrow terminal, room for "what" matters more
    columns = (
        "#", "id", "status", "score", "verdict",
        *(("seeds", "params", "brain", "parents") if wide else ()),
    )  # fmt: skip
    for name in columns:
        numeric = name in ("#", "score", "params")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    table.add_column("what", ratio=1, overflow="fold")
    for rank, c in enumerate(board["candidates"], 1):
        ok = c["status"] in ("ok", "duplicate")
        cells = [
            str(rank),
            c["id"][:8],
            c["status"],
            fmt_score(c["score"]) + (f" ({c['score_as_metric']})" if c["score_as_metric"] else ""),
            c["verdict"] or "-",
        ]
        if wide:
            cells += [
                str(c["seeds"]["n"]) if c["seeds"] else "1" if c["score"] is not None else "-",
                f"{c['n_params'] / 1000:,.0f}k" if c["n_params"] else "-",
                c["brain"],
                " ".join(p[:6] for p in c["parents"]),
            ]
        # a failure's error; else its architecture (the verdict says why, or is to come:
        # a run that stopped before the critique leaves its candidate pending)
        failed = not ok and c["status"] != "stopped" and c["error_class"]
        what = f"{c['error_class']}: {c['message']}" if failed else c["summary"]
        table.add_row(*cells, escape(what))
    out.print(table)
    for line in _conclusion(board.get("summary")):
        out.print(escape(line), highlight=False)


def _conclusion(summary: dict[str, Any] | None) -> list[str]:
    """The run's conclusion in words: the scale stage, then what was found (the last line)."""
    if not summary or "sentence" not in summary:  # not concluded, or by an older archlab
        return []
    lines = []
    scale = summary.get("scale") or {}
    if scale.get("status") == "done":
        holds = "holds" if scale["ranking_holds"] else "does NOT hold"
        lines.append(f"scale stage: the proxy ranking {holds} at the larger budget")
    elif scale:
        lines.append(f"scale stage skipped: {scale.get('reason')}")
    return [*lines, summary["sentence"]]


@app.command()
def show(
    run_id: Annotated[str, _RUN_ID],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show a run's leaderboard."""
    memory = existing_memory(cli_settings())
    if as_json:
        print_json(_leaderboard(memory, run_id))
    else:
        _show_leaderboard(memory, run_id)


@app.command("eval")
def eval_(
    file: Annotated[Path, typer.Argument(help="a candidate module defining build_model(spec)")],
    task: Annotated[str | None, typer.Option(help="task to evaluate it on")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    workers: Annotated[int | None, _WORKERS] = None,
    executor: Annotated[str | None, _EXECUTOR] = None,
    ray_address: Annotated[str | None, _RAY_ADDRESS] = None,
) -> None:
    """Verify and train a hand-written candidate, and record it in the memory."""
    from archlab.orchestration.runs import evaluate_file

    settings = cli_settings(**{"run.task": task, **_executor_flags(workers, executor, ray_address)})
    with _resumable_on_interrupt():
        result = evaluate_file(settings, file, progress)
    keys = (
        "run_id",
        "candidate_id",
        "status",
        "error_class",
        "message",
        "score",
        "metrics",
        "n_params",
        "seeds",
        "verdict",
        "stages",
    )
    report = {k: result.get(k) for k in keys}
    if as_json:
        print_json(report)
    else:
        for stage in result["stages"]:
            note = stage["message"] or ""
            name = " ".join(filter(None, (stage["stage"], stage.get("name"))))
            out.print(f"  {name:<11} {stage['status']:<8} {escape(note)}")
        out.print(
            f"candidate {report['candidate_id']}: {report['status']}"
            + (f", score {report['score']:.4f}" if report["score"] is not None else "")
            + (
                f" ({report['error_class']}: {escape(str(report['message']))})"
                if report["error_class"]
                else ""
            )
        )
    # 0 only for a candidate that trained and was accepted (after its audit, where its gain
    # needed one); a duplicate reuses another's result and is rejected
    verdict = (report["verdict"] or {}).get("verdict")
    if report["status"] != "ok" or verdict == "reject":
        raise typer.Exit(1)
