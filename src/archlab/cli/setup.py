"""What this machine offers: tasks, the sandbox (doctor), benchmarks (bench) and the LLM
endpoints (llm check); and the salvage of a damaged memory."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
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
    llm_flags,
    out,
    print_json,
)
from archlab.errors import ArchlabError, ConfigError
from archlab.memory.shared_file import CORRUPT_SUFFIX
from archlab.memory.store import MEMORY_FILE
from archlab.search.space import SearchSpace
from archlab.tasks import get_task, task_names


@app.command()
def tasks(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List the tasks candidates can be evaluated on."""
    settings = cli_settings()
    options = settings.tasks
    gpus = settings.executor.gpus_per_trial  # a GPU widens the genome space
    rows: list[dict[str, Any]] = []
    for name in task_names():
        try:
            task = get_task(name, options.get(name))
        except ArchlabError as e:  # e.g. an optional extra that is not installed
            rows.append({"name": name, "available": False, "problem": str(e)})
            continue
        rows.append(
            {
                "name": name,
                "available": True,
                "description": task.description,
                "kind": task.kind,
                "spec": task.spec,
                "score": task.metric,
                "higher_is_better": task.higher_is_better,
                "fingerprint": task.fingerprint(settings.run.data_seed),
                "proxy_steps": task.budgets["proxy"].steps,
                "proxy_seconds": task.budgets["proxy"].seconds,
                "search_space": SearchSpace.for_task(task, gpus).describe(),
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table("task", "description", "spec", "score", "proxy steps")
    table.columns[0].no_wrap = True
    for r in rows:
        if not r["available"]:
            table.add_row(r["name"], f"[red]unavailable[/]: {escape(r['problem'])}", "", "", "")
            continue
        spec = ", ".join(f"{k}={v}" for k, v in r["spec"].items())
        metric = f"{r['score']} ({'higher' if r['higher_is_better'] else 'lower'} is better)"
        table.add_row(r["name"], r["description"], spec, metric, str(r["proxy_steps"]))
    out.print(table)


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Say which sandbox level candidate code gets here, and what a stronger one lacks."""
    from archlab.sandbox.doctor import diagnose, render

    report = diagnose(cli_settings().sandbox.level)
    if as_json:
        print_json(report)
    else:
        out.print(render(report), highlight=False, markup=False, soft_wrap=True)
    if not report["ok"]:
        raise typer.Exit(1)


@app.command()
def salvage() -> None:
    """Copy what can still be read of a damaged memory into a fresh one; the damaged file
    stays beside it as memory.duckdb.corrupt."""
    from archlab.memory.salvage import salvage as salvage_memory

    path = cli_settings().home_dir / MEMORY_FILE
    kept = salvage_memory(path)
    table = Table("table", "rows kept", "rows lost", title=f"salvaged {path}")
    for name, (rows, lost) in kept.items():
        table.add_row(name, str(rows), "unknown" if lost is None else str(lost))
    out.print(table)
    out.print(f"the damaged file is kept as {escape(str(path))}{CORRUPT_SUFFIX}", highlight=False)


@app.command()
def bench(
    quick: Annotated[bool, typer.Option(help="short trials, one repeat")] = False,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="also write the results to this file")
    ] = None,
    only: Annotated[
        str | None,
        typer.Option(
            help="these measurements alone, comma-separated: "
            "sandbox, launch, memory, orchestration, workers, search"
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="search: compare every brain (random, heuristic, evolution, tpe) on this "
            "task, configured as a run's, over cached landscapes"
        ),
    ] = None,
    search_seeds: Annotated[
        int | None,
        typer.Option(min=1, help="with --task: search seeds per brain (8; 2 with --quick)"),
    ] = None,
) -> None:
    """Measure the sandbox, orchestration, memory, worker scaling and search quality."""
    from archlab.benchmarks import TARGETS, SearchComparison, run_benchmarks

    if search_seeds is not None and task is None:
        raise ConfigError("--search-seeds needs --task")
    search = SearchComparison(cli_settings(), task, search_seeds) if task else None
    names = [n.strip() for n in only.split(",")] if only else []
    results = run_benchmarks(quick, names, search)
    if json_file:
        json_file.write_text(json.dumps(results, indent=2) + "\n")
    met = results.pop("targets_met")
    if "search" in results:
        _print_search(results.pop("search"))
    table = Table("measurement", "value", "target")
    for key, value in results.items():
        last = value[-1] if isinstance(value, list) and value else None
        if isinstance(last, float):  # a curve: whole in the JSON
            value = f"{len(value)} values, last {last:.4g}"
        target = ""
        if key in TARGETS:
            bound, limit = TARGETS[key]
            verdict = {True: "[green]met[/]", False: "[red]missed[/]", None: "not measured"}
            target = f"{bound} {limit:g}: {verdict[met[key]]}"
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value), target)
    out.print(table)
    if quick:
        out.print("--quick: shorter trials and fewer seeds than the targets are set for")


def _print_search(search: dict[str, Any]) -> None:
    """The brains compared on a task: one row each, with early stopping and without."""
    from archlab.benchmarks.brains import BRAINS

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    table = Table(
        "brain", "trials to target", "best at 16", "best at 32", "CPU s to target",
        "without early stop: trials", "CPU s",
        title=f"{search['task']}: target {search['target']:.4g} (random search's median "
        f"best of 64), {search['search_seeds']} search seeds",
    )  # fmt: skip
    for brain in BRAINS:
        row, off = search[brain], search[brain]["without_early_stop"]
        table.add_row(
            brain,
            *(fmt(row[k]) for k in ("trials_to_target_median", "best_at_16_mean")),
            *(fmt(row[k]) for k in ("best_at_32_mean", "cpu_s_to_target_median")),
            fmt(off["trials_to_target_median"]),
            fmt(off["cpu_s_to_target_median"]),
        )
    out.print(table)


llm_app = typer.Typer(help="LLM profiles: check that an endpoint works.", no_args_is_help=True)
app.add_typer(llm_app, name="llm")


@llm_app.command("check")
def llm_check(
    profile: Annotated[
        str | None, typer.Argument(help="profile to check (default: those the roles use)")
    ] = None,
    llm_base_url: Annotated[str | None, LLM_BASE_URL] = None,
    llm_model: Annotated[str | None, LLM_MODEL] = None,
    llm_structured_output: Annotated[str | None, LLM_STRUCTURED] = None,
    llm_timeout: Annotated[float | None, LLM_TIMEOUT] = None,
    llm_max_output_tokens: Annotated[int | None, LLM_MAX_OUTPUT_TOKENS] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Send one small structured request per profile; report latency and what is wrong."""
    from archlab.llm.brains import profiles_in_use
    from archlab.llm.check import check
    from archlab.llm.client import LLM, LLMError
    from archlab.prompts import Prompts

    settings = cli_settings(
        **llm_flags(
            llm_base_url,
            llm_model,
            llm_structured_output,
            llm_timeout,
            llm_max_output_tokens,
        )
    )
    names = [profile] if profile else profiles_in_use(settings)
    unknown = [n for n in names if n not in settings.llm]
    if unknown or not names:
        raise ArchlabError(
            f"no [llm.{unknown[0]}] profile in the configuration"
            if unknown
            else "no LLM profile configured: add [llm.NAME] or give --llm-base-url and --llm-model"
        )
    prompts = Prompts(settings.prompts_dir)
    reports: list[dict[str, Any]] = []
    for name in names:
        p = settings.llm[name]
        report: dict[str, Any] = {"profile": name, "model": p.model, "base_url": p.base_url}
        try:
            result = check(LLM(name, p, prompts))
            report.update(ok=result.problem is None, **asdict(result))
        except LLMError as e:
            report.update(ok=False, problem=str(e))
        reports.append(report)
    if as_json:
        print_json(reports)
    else:
        for r in reports:
            head = escape(f"{r['profile']}: {r['model']} at {r['base_url']}")
            if "latency_s" not in r:
                out.print(f"{head}: [red]failed[/]: {escape(r['problem'])}", highlight=False)
                continue
            mode = settings.llm[r["profile"]].structured_output
            out.print(
                f"{head}: answered in {r['latency_s']:.2f} s "
                f"({r['prompt_tokens']} tokens in, {r['completion_tokens']} out)\n"
                f"  structured output ({mode}): {r['structured']}\n"
                f"  reasoning kept apart: {r['reasoning_chars']:,} characters"
                + (f"\n  [red]problem[/]: {escape(r['problem'])}" if r["problem"] else ""),
                highlight=False,
            )
    if not all(r["ok"] for r in reports):
        raise typer.Exit(1)
