"""The `archlab` command line. Progress goes to stderr, results to stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from archlab.config import Settings, load_settings
from archlab.errors import ArchlabError
from archlab.eval.tasks import BUILTIN_TASKS, get_task
from archlab.memory.store import MEMORY_FILE, Memory

app = typer.Typer(
    help="Automated neural-architecture discovery: planner, coder, trainer and critic agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
progress = Console(stderr=True)


class _Global:
    home: Path | None = None
    config: Path | None = None


@app.callback()
def _global(
    home: Annotated[Path | None, typer.Option(help="data directory [env: ARCHLAB_HOME]")] = None,
    config: Annotated[
        Path | None, typer.Option(help="config file [env: ARCHLAB_CONFIG; default ./archlab.toml]")
    ] = None,
) -> None:
    _Global.home, _Global.config = home, config


def _settings(**flags: Any) -> Settings:
    """Settings with the flags that were actually given on top."""
    nested: dict[str, Any] = {}
    for dotted, value in flags.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        nested.setdefault(section, {})[key] = value
    if _Global.home is not None:
        nested["home"] = _Global.home
    return load_settings(_Global.config, nested)


def _memory(settings: Settings) -> Memory:
    return Memory.open_existing(settings.home_dir / MEMORY_FILE)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _fmt(score: float | None) -> str:
    return "-" if score is None else f"{score:.4f}"


@app.command()
def run(
    task: Annotated[str | None, typer.Option(help="task to discover architectures for")] = None,
    trials: Annotated[
        int | None, typer.Option(help="candidates to evaluate, baseline included")
    ] = None,
    minutes: Annotated[float | None, typer.Option(help="wall-clock budget in minutes")] = None,
    seed: Annotated[int | None, typer.Option(help="search seed")] = None,
) -> None:
    """Run an autonomous discovery until its budget is spent."""
    from archlab.lab import discover  # torch and langgraph load only for commands that need them

    settings = _settings(
        **{"run.task": task, "run.trials": trials, "run.minutes": minutes, "run.seed": seed}
    )
    try:
        run_id = discover(settings, progress)
    except KeyboardInterrupt:
        progress.print("[yellow]interrupted[/]: the memory keeps everything finished so far")
        raise typer.Exit(130) from None
    _show_leaderboard(_memory(settings), run_id)


@app.command()
def runs(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List the runs in the memory."""
    rows = _memory(_settings()).runs()
    if as_json:
        _print_json(rows)
        return
    table = Table("run", "task", "status", "brain", "candidates", "best", "started")
    for column in table.columns:
        column.no_wrap = True
    for r in rows:
        table.add_row(
            r["run_id"],
            r["task"],
            r["status"],
            r["brain"],
            str(r["n_candidates"]),
            _fmt(r["best_score"]),
            f"{r['started_at']:%Y-%m-%d %H:%M}",
        )
    out.print(table)


def _leaderboard(memory: Memory, run_id: str) -> dict[str, Any]:
    run_row = memory.get_run(run_id)
    candidates = [
        {
            "id": c["candidate_id"],
            "status": c["status"],
            "score": c["score"],
            "metrics": c["metrics"],
            "brain": c["brain"],
            "origin": c["origin"],
            "parents": c["parents"],
            "n_params": c["n_params"],
            "summary": c["plan"].get("summary") or c["plan"].get("hypothesis"),
            "error_class": c["error_class"],
            "message": c["message"],
        }
        for c in memory.candidates(run_row["run_id"])
    ]
    return {
        "run_id": run_row["run_id"],
        "task": run_row["task"],
        "status": run_row["status"],
        "candidates": candidates,
    }


def _show_leaderboard(memory: Memory, run_id: str) -> None:
    board = _leaderboard(memory, run_id)
    table = Table(title=f"run {board['run_id']} ({board['task']}, {board['status']})")
    table.add_column("#", justify="right")
    table.add_column("candidate", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("brain", no_wrap=True)
    table.add_column("parents", no_wrap=True)
    table.add_column("what", ratio=1, overflow="fold")
    for rank, c in enumerate(board["candidates"], 1):
        ok = c["status"] in ("ok", "duplicate")
        table.add_row(
            str(rank),
            c["id"],
            c["status"],
            _fmt(c["score"]),
            f"{c['n_params']:,}" if c["n_params"] else "-",
            c["brain"],
            " ".join(p[:6] for p in c["parents"]),
            c["summary"] if ok else f"{c['error_class']}: {c['message']}",
        )
    out.print(table)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="run id or a unique prefix of it")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show a run's leaderboard."""
    memory = _memory(_settings())
    if as_json:
        _print_json(_leaderboard(memory, run_id))
    else:
        _show_leaderboard(memory, run_id)


@app.command("eval")
def eval_(
    file: Annotated[Path, typer.Argument(help="a candidate module defining build_model(spec)")],
    task: Annotated[str | None, typer.Option(help="task to evaluate it on")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Verify and train a hand-written candidate, and record it in the memory."""
    from archlab.lab import evaluate_file

    result = evaluate_file(_settings(**{"run.task": task}), file, progress)
    keys = (
        "run_id",
        "candidate_id",
        "status",
        "error_class",
        "message",
        "score",
        "metrics",
        "n_params",
        "verdict",
    )
    report = {k: result.get(k) for k in keys}
    if as_json:
        _print_json(report)
    else:
        out.print(
            f"candidate {report['candidate_id']}: {report['status']}"
            + (f", score {report['score']:.4f}" if report["score"] is not None else "")
            + (f" ({report['error_class']}: {report['message']})" if report["error_class"] else "")
        )
    if report["status"] not in ("ok", "duplicate"):
        raise typer.Exit(1)


@app.command()
def tasks(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List the tasks candidates can be evaluated on."""
    options = _settings().tasks
    rows: list[dict[str, Any]] = []
    for name in sorted(BUILTIN_TASKS):
        task = get_task(name, options.get(name))
        rows.append(
            {
                "name": name,
                "description": task.description,
                "spec": task.spec,
                "score": task.score_name,
                "fingerprint": task.fingerprint(),
                "proxy_steps": task.budgets["proxy"].steps,
            }
        )
    if as_json:
        _print_json(rows)
        return
    table = Table("task", "description", "spec", "score", "proxy steps")
    for r in rows:
        spec = ", ".join(f"{k}={v}" for k, v in r["spec"].items())
        table.add_row(r["name"], r["description"], spec, r["score"], str(r["proxy_steps"]))
    out.print(table)


def main() -> None:
    try:
        app()
    except ArchlabError as e:
        progress.print(f"[red]error:[/] {e}", highlight=False)
        sys.exit(2)
