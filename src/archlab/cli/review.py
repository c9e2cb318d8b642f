"""Reviewing runs after (or while) they happen: trace, diff, lineage, export, sql,
export-otel, report and the web UI."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from archlab.cli.common import app, cli_settings, existing_memory, out, print_json, progress

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
    if span["kind"] == "llm" and span["attributes"]["archlab.tokens_per_s"] is not None:
        attributes = span["attributes"]
        say(
            f"{attributes['gen_ai.usage.output_tokens']} tokens out, "
            f"{attributes['archlab.tokens_per_s']:g} tokens/s"
        )
    if span["kind"] == "trial" and span["attributes"]["archlab.score"] is not None:
        say(f"score {span['attributes']['archlab.score']:.4f}")


@app.command()
def trace(
    run_id: Annotated[str, typer.Argument(help="run name, id or a unique prefix of the id")],
    candidate: Annotated[str | None, typer.Option(help="only this candidate (id prefix)")] = None,
    role: Annotated[str | None, typer.Option(help="planner, coder, trainer, critic or lab")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="only spans that failed")] = False,
    full: Annotated[bool, typer.Option("--full", help="prompts and answers unfolded")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The agents' steps in order: graph nodes, with their LLM calls and trials."""
    from archlab.memory.spans import spans_of

    memory = existing_memory(cli_settings())
    spans = [
        s
        for s in spans_of(memory, memory.get_run(run_id)["run_id"])
        if (candidate is None or (s["candidate_id"] or "").startswith(candidate))
        and (role is None or s["role"] == role)
        and (not failed or s["status"] != "ok")
    ]
    if as_json:
        print_json(spans)
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

    memory = existing_memory(cli_settings())
    sys.stdout.write(code_diff(memory.get_candidate(a), memory.get_candidate(b)))


@app.command()
def lineage(
    run_id: Annotated[str, typer.Argument(help="run name, id or a unique prefix of the id")],
) -> None:
    """The run's family tree: each candidate under its first parent."""
    from archlab.report import lineage_tree

    memory = existing_memory(cli_settings())
    run_row = memory.get_run(run_id)
    out.print(lineage_tree(run_row["run_id"], memory.candidates(run_row["run_id"])))


@app.command()
def export(
    candidate: Annotated[str, typer.Argument(help="candidate id or unique prefix")],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="directory for the module, its trained weights and load.py "
            "(a path ending in .py: the module alone)",
        ),
    ],
    force: Annotated[
        bool, typer.Option("--force", help="overwrite the export's files in a non-empty DIR")
    ] = False,
) -> None:
    """Write a candidate as a module that needs only torch, with its trained weights."""
    from archlab.report import standalone
    from archlab.report.bundle import BUNDLE_FILES, export_bundle

    memory = existing_memory(cli_settings())
    if output.suffix == ".py":
        row = memory.get_candidate(candidate)
        output.write_text(standalone(row, memory.get_run(row["run_id"])))
        progress.print(f"wrote {output}", highlight=False, markup=False)
        return
    cid = export_bundle(memory, candidate, output, force)
    progress.print(
        f"wrote {', '.join(BUNDLE_FILES)} of {cid} to {output}", highlight=False, markup=False
    )
    progress.print(f"try it: python {output / 'load.py'}", highlight=False, markup=False)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL; the memory is opened read-only")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Query the memory with SQL (read-only; the schema is in docs/memory-schema.md)."""
    columns, rows = existing_memory(cli_settings()).read_only_sql(query)
    if as_json:
        print_json([dict(zip(columns, r, strict=True)) for r in rows])
        return
    table = Table(*columns, box=box.SIMPLE_HEAD)
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r))
    out.print(table)


@app.command("export-otel")
def export_otel(
    run_id: Annotated[str, typer.Argument(help="run name, id or a unique prefix of the id")],
    output: Annotated[Path, typer.Option("-o", "--output", help="OTLP JSON file to write")],
) -> None:
    """Write the run's spans as OTLP JSON, for any OpenTelemetry backend."""
    from archlab.memory.spans import spans_of, to_otlp

    memory = existing_memory(cli_settings())
    run_row = memory.get_run(run_id)
    otlp = to_otlp(run_row["run_id"], spans_of(memory, run_row["run_id"]))
    output.write_text(json.dumps(otlp, indent=1) + "\n")
    n = len(otlp["resourceSpans"][0]["scopeSpans"][0]["spans"])
    progress.print(f"wrote {n} spans to {output}", highlight=False, markup=False)


@app.command()
def report(
    run_id: Annotated[str, typer.Argument(help="run name, id or a unique prefix of the id")],
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write")],
) -> None:
    """Write a self-contained HTML report of a run (opens offline)."""
    from archlab.report import html_report

    output.write_text(html_report(existing_memory(cli_settings()), run_id))
    progress.print(f"wrote {output}", highlight=False, markup=False)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="port to listen on (0: any free one)")] = 8765,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
) -> None:
    """Browse runs, candidates and agent traces in a web browser, also while a run is live."""
    from archlab.ui.server import serve

    serve(existing_memory(cli_settings()), host, port, progress)
