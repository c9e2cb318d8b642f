"""The `archlab` command line. Progress goes to stderr, results to stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from archlab.config import Settings, load_settings
from archlab.errors import ArchlabError
from archlab.memory.store import MEMORY_FILE, Memory
from archlab.tasks import get_task, task_names

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
        *sections, key = dotted.split(".")
        node = nested
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = value
    if _Global.home is not None:
        nested["home"] = _Global.home
    return load_settings(_Global.config, nested)


def _memory(settings: Settings) -> Memory:
    return Memory.open_existing(settings.home_dir / MEMORY_FILE)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _fmt(score: float | None) -> str:
    return "-" if score is None else f"{score:.4f}"


# `--brain llm` uses the [llm.default] profile; these flags fill it in.
_LLM_BASE_URL = typer.Option(help="OpenAI-compatible base URL of the llm.default profile")
_LLM_MODEL = typer.Option(help="model of the llm.default profile")
_LLM_STRUCTURED = typer.Option(help="json_schema, json_object or prompt")


def _llm_flags(base_url: str | None, model: str | None, structured: str | None) -> dict[str, Any]:
    return {
        "llm.default.base_url": base_url,
        "llm.default.model": model,
        "llm.default.structured_output": structured,
    }


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
        int | None, typer.Option(help="candidates to evaluate, baseline included")
    ] = None,
    minutes: Annotated[float | None, typer.Option(help="wall-clock budget in minutes")] = None,
    seed: Annotated[int | None, typer.Option(help="search seed")] = None,
    brain: Annotated[
        str | None,
        typer.Option(help="every role's brain: heuristic, llm, llm:PROFILE or replay:RUN"),
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="compose (genomes) or design (free-form code)")
    ] = None,
    llm_base_url: Annotated[str | None, _LLM_BASE_URL] = None,
    llm_model: Annotated[str | None, _LLM_MODEL] = None,
    llm_structured_output: Annotated[str | None, _LLM_STRUCTURED] = None,
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
) -> None:
    """Run an autonomous discovery until its budget is spent."""
    from archlab.orchestration.runs import (
        discover,  # torch and langgraph load only for commands that need them
    )

    settings = _settings(
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
            **_llm_flags(llm_base_url, llm_model, llm_structured_output),
            **_executor_flags(workers, executor, ray_address),
        }
    )
    _until_done(lambda: discover(settings, progress), settings)


# --- the human in the loop: from another terminal, while the run goes on --------------
_RUN_ID = typer.Argument(help="run id or a unique prefix of it")
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

    memory = _memory(_settings())
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

    memory = _memory(_settings())
    run = memory.get_run(run_id)
    reviews.add_note(memory, run["run_id"], note)
    typer.echo(f"noted for run {run['run_id']}: the planner reads it before its next proposal")


def _until_done(start: Callable[[], str], settings: Settings) -> None:
    """Run to the end and show the leaderboard; Ctrl-C leaves the run resumable."""
    try:
        run_id = start()
    except KeyboardInterrupt:
        progress.print(
            "[yellow]interrupted[/]: everything finished so far is kept; "
            "`archlab resume RUN_ID` continues the run"
        )
        raise typer.Exit(130) from None
    _show_leaderboard(_memory(settings), run_id)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="run id or a unique prefix of it")],
) -> None:
    """Continue a killed or interrupted run from its last checkpoint, with its own settings."""
    from archlab.orchestration.runs import resume as resume_run

    settings = _settings()
    _until_done(lambda: resume_run(settings.home_dir, run_id, progress), settings)


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
    verdicts = memory.verdicts(run_row["run_id"])
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
            "seeds": c["seeds"],
            "scale_score": c["scale_score"],
            "audit": c["audit"],
            "verdict": verdicts.get(c["candidate_id"], {}).get("verdict"),
        }
        for c in memory.candidates(run_row["run_id"])
    ]
    return {
        "run_id": run_row["run_id"],
        "task": run_row["task"],
        "status": run_row["status"],
        "message": run_row["message"],
        "summary": run_row["summary"],
        "candidates": candidates,
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
            _fmt(c["score"]),
            c["verdict"] or "-",
        ]
        if wide:
            cells += [
                str(c["seeds"]["n"]) if c["seeds"] else "1" if c["score"] is not None else "-",
                f"{c['n_params'] / 1000:,.0f}k" if c["n_params"] else "-",
                c["brain"],
                " ".join(p[:6] for p in c["parents"]),
            ]
        what = c["summary"] if ok else f"{c['error_class']}: {c['message']}"
        table.add_row(*cells, escape(what))
    out.print(table)
    for line in _conclusion(board.get("summary")):
        out.print(line, highlight=False)


def _interval(d: dict[str, float]) -> str:
    return f"{d['estimate']:+.4f} (95% CI {d['low']:+.4f} to {d['high']:+.4f})"


def _conclusion(summary: dict[str, Any] | None) -> list[str]:
    """The run's honest comparison, in words."""
    if not summary or not summary.get("best"):
        return []
    best = summary["best"]
    kind = "accepted" if best["accepted"] else "best scored (none accepted)"
    lines = [
        f"{kind}: {best['candidate_id']} score {best['score']:.4f} over {best['seeds']} seed(s)"
    ]
    if "vs_baseline" in summary:
        lines.append(f"  vs the baseline: {_interval(summary['vs_baseline'])}")
    if "vs_random" in summary:
        r = summary["vs_random"]
        lines.append(
            f"  vs random sampling ({r['random_samples']} architectures, mean "
            f"{r['random_mean']:.4f}): {_interval(r)}"
        )
    scale = summary.get("scale") or {}
    if scale.get("status") == "done":
        holds = "holds" if scale["ranking_holds"] else "does NOT hold"
        lines.append(f"  scale stage: the proxy ranking {holds} at the larger budget")
    elif scale:
        lines.append(f"  scale stage skipped: {scale.get('reason')}")
    return lines


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
    workers: Annotated[int | None, _WORKERS] = None,
    executor: Annotated[str | None, _EXECUTOR] = None,
    ray_address: Annotated[str | None, _RAY_ADDRESS] = None,
) -> None:
    """Verify and train a hand-written candidate, and record it in the memory."""
    from archlab.orchestration.runs import evaluate_file

    settings = _settings(**{"run.task": task, **_executor_flags(workers, executor, ray_address)})
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
        _print_json(report)
    else:
        for stage in result["stages"]:
            note = stage["message"] or ""
            out.print(f"  {stage['stage']:<11} {stage['status']:<8} {escape(note)}")
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
                "fingerprint": task.fingerprint(),
                "proxy_steps": task.budgets["proxy"].steps,
            }
        )
    if as_json:
        _print_json(rows)
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

    report = diagnose(_settings().sandbox.level)
    if as_json:
        _print_json(report)
    else:
        out.print(render(report), highlight=False, markup=False, soft_wrap=True)
    if not report["ok"]:
        raise typer.Exit(1)


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
) -> None:
    """Measure the sandbox, orchestration, memory, worker scaling and search quality."""
    from archlab.benchmarks import TARGETS, run_benchmarks

    results = run_benchmarks(quick, [n.strip() for n in only.split(",")] if only else [])
    if json_file:
        json_file.write_text(json.dumps(results, indent=2) + "\n")
    met = results.pop("targets_met")
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


llm_app = typer.Typer(help="LLM profiles: check that an endpoint works.", no_args_is_help=True)
app.add_typer(llm_app, name="llm")


@llm_app.command("check")
def llm_check(
    profile: Annotated[
        str | None, typer.Argument(help="profile to check (default: those the roles use)")
    ] = None,
    llm_base_url: Annotated[str | None, _LLM_BASE_URL] = None,
    llm_model: Annotated[str | None, _LLM_MODEL] = None,
    llm_structured_output: Annotated[str | None, _LLM_STRUCTURED] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Send one small structured request per profile; report latency and what is wrong."""
    from archlab.llm.brains import profiles_in_use
    from archlab.llm.client import LLM, LLMError, check
    from archlab.prompts import Prompts

    settings = _settings(**_llm_flags(llm_base_url, llm_model, llm_structured_output))
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
        _print_json(reports)
    else:
        for r in reports:
            head = f"{r['profile']}: {r['model']} at {r['base_url']}"
            if "latency_s" not in r:
                out.print(f"{head}: [red]failed[/]: {r['problem']}", highlight=False)
                continue
            mode = settings.llm[r["profile"]].structured_output
            out.print(
                f"{head}: answered in {r['latency_s']:.2f} s "
                f"({r['prompt_tokens']} tokens in, {r['completion_tokens']} out)\n"
                f"  structured output ({mode}): {r['structured']}\n"
                f"  reasoning kept apart: {r['reasoning_chars']:,} characters"
                + (f"\n  [red]problem[/]: {r['problem']}" if r["problem"] else ""),
                highlight=False,
            )
    if not all(r["ok"] for r in reports):
        raise typer.Exit(1)


# --- reviewing runs -------------------------------------------------------------
_FOLD = 400  # characters of a prompt or answer that `trace` shows unless --full


def _fold(text: str, full: bool) -> str:
    return text if full or len(text) <= _FOLD else f"{text[:_FOLD]} [... {len(text):,} chars]"


def _show_span(span: dict[str, Any], full: bool) -> None:
    child = span["parent_id"] is not None
    pad = "    " if child else ""

    def say(line: str) -> None:  # whole lines: easier to grep and to copy
        out.print(pad + line, highlight=False, soft_wrap=True)

    color = "green" if span["status"] == "ok" else "red"
    seconds = (span["end"] - span["start"]).total_seconds()
    say(
        f"{span['start']:%H:%M:%S} [bold]{span['kind']}[/] {escape(span['name'])} "
        f"{span['role']} {(span['candidate_id'] or '-')[:8]} [{color}]{span['status']}[/] "
        f"{seconds:.2f} s"
    )
    pad += "    "
    if span["error"]:
        say(f"[red]error[/]: {escape(_fold(span['error'], full))}")
    for message in span.get("input", []):
        say(f"[dim]{message.get('role')}>[/] {escape(_fold(str(message.get('content')), full))}")
    if span.get("output"):
        say(f"[dim]answer>[/] {escape(_fold(span['output'], full))}")
    if span["kind"] == "trial" and span["attributes"]["archlab.score"] is not None:
        say(f"score {span['attributes']['archlab.score']:.4f}")


@app.command()
def trace(
    run_id: Annotated[str, typer.Argument(help="run id or a unique prefix of it")],
    candidate: Annotated[str | None, typer.Option(help="only this candidate (id prefix)")] = None,
    role: Annotated[str | None, typer.Option(help="planner, coder, trainer, critic or lab")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="only spans that failed")] = False,
    full: Annotated[bool, typer.Option("--full", help="prompts and answers unfolded")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The agents' steps in order: graph nodes, with their LLM calls and trials."""
    from archlab.memory.spans import spans_of

    memory = _memory(_settings())
    spans = [
        s
        for s in spans_of(memory, memory.get_run(run_id)["run_id"])
        if (candidate is None or (s["candidate_id"] or "").startswith(candidate))
        and (role is None or s["role"] == role)
        and (not failed or s["status"] != "ok")
    ]
    if as_json:
        _print_json(spans)
        return
    for span in spans:
        _show_span(span, full)


@app.command()
def diff(
    a: Annotated[str, typer.Argument(help="candidate id or unique prefix")],
    b: Annotated[str, typer.Argument(help="candidate id or unique prefix")],
) -> None:
    """The unified diff between two candidates' code."""
    from archlab.report import code_diff

    memory = _memory(_settings())
    sys.stdout.write(code_diff(memory.get_candidate(a), memory.get_candidate(b)))


@app.command()
def lineage(run_id: Annotated[str, typer.Argument(help="run id or a unique prefix of it")]) -> None:
    """The run's family tree: each candidate under its first parent."""
    from archlab.report import lineage_tree

    memory = _memory(_settings())
    run_row = memory.get_run(run_id)
    out.print(lineage_tree(run_row["run_id"], memory.candidates(run_row["run_id"])))


@app.command()
def export(
    candidate: Annotated[str, typer.Argument(help="candidate id or unique prefix")],
    output: Annotated[Path, typer.Option("-o", "--output", help="module to write")],
) -> None:
    """Write a candidate as a standalone module that needs only torch."""
    from archlab.report import standalone

    memory = _memory(_settings())
    row = memory.get_candidate(candidate)
    output.write_text(standalone(row, memory.get_run(row["run_id"])))
    progress.print(f"wrote {output}", highlight=False)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL; the memory is opened read-only")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Query the memory with SQL (read-only; the schema is in the README)."""
    columns, rows = _memory(_settings()).read_only_sql(query)
    if as_json:
        _print_json([dict(zip(columns, r, strict=True)) for r in rows])
        return
    table = Table(*columns, box=box.SIMPLE_HEAD)
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r))
    out.print(table)


@app.command("export-otel")
def export_otel(
    run_id: Annotated[str, typer.Argument(help="run id or a unique prefix of it")],
    output: Annotated[Path, typer.Option("-o", "--output", help="OTLP JSON file to write")],
) -> None:
    """Write the run's spans as OTLP JSON, for any OpenTelemetry backend."""
    from archlab.memory.spans import spans_of, to_otlp

    memory = _memory(_settings())
    run_row = memory.get_run(run_id)
    otlp = to_otlp(run_row["run_id"], spans_of(memory, run_row["run_id"]))
    output.write_text(json.dumps(otlp, indent=1) + "\n")
    n = len(otlp["resourceSpans"][0]["scopeSpans"][0]["spans"])
    progress.print(f"wrote {n} spans to {output}", highlight=False)


@app.command()
def report(
    run_id: Annotated[str, typer.Argument(help="run id or a unique prefix of it")],
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write")],
) -> None:
    """Write a self-contained HTML report of a run (opens offline)."""
    from archlab.report import html_report

    output.write_text(html_report(_memory(_settings()), run_id))
    progress.print(f"wrote {output}", highlight=False)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="port to listen on (0: any free one)")] = 8765,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
) -> None:
    """Browse runs, candidates and agent traces in a web browser, also while a run is live."""
    from archlab.ui.server import serve

    serve(_memory(_settings()), host, port, progress)


def main() -> None:
    try:
        app()
    except ArchlabError as e:
        progress.print(f"[red]error:[/] {e}", highlight=False)
        sys.exit(2)
