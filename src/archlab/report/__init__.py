"""Reviewing runs: code diffs, the family tree, standalone exports and the HTML report."""

from __future__ import annotations

import ast
import difflib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from rich.markup import escape
from rich.tree import Tree

from archlab.errors import ArchlabError
from archlab.memory.store import Memory
from archlab.memory.weights import run_weights
from archlab.records import final_verdict, metric_shown, plan_title
from archlab.report.highlight import highlight
from archlab.report.plots import curve_plots, score_plot

#: what an exported module may import: it must run anywhere torch does
EXPORT_IMPORTS = {"torch", "math", "typing", "__future__"}


def code_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The unified diff from candidate a's code to candidate b's, line endings and trailing
    blanks aside: a hand-written parent saved with CRLF or trailing spaces would otherwise
    differ on every line from the code derived from it."""
    return "".join(
        difflib.unified_diff(
            _lines(a["source"]),
            _lines(b["source"]),
            fromfile=a["candidate_id"],
            tofile=b["candidate_id"],
        )
    )


def _lines(source: str) -> list[str]:
    return [line.rstrip() + "\n" for line in source.splitlines()]


def _label(c: dict[str, Any]) -> str:
    score = "-" if c["score"] is None else f"{c['score']:.4f}"
    operator = (c["plan"] or {}).get("operator", c["origin"])
    color = "green" if c["status"] == "ok" else "red"
    return f"{c['candidate_id'][:8]} [{color}]{c['status']}[/] {score} [cyan]{escape(operator)}[/]"


def family(candidates: list[dict[str, Any]]) -> dict[str | None, list[dict[str, Any]]]:
    """Each candidate's children (by first parent, oldest first); under None the roots,
    whose parent is not in this run (the baseline, or a parent from an earlier run)."""
    ids = {c["candidate_id"] for c in candidates}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for c in sorted(candidates, key=lambda c: c["created_at"]):
        parent = c["parents"][0] if c["parents"] and c["parents"][0] in ids else None
        children.setdefault(parent, []).append(c)
    return children


def lineage_tree(run_id: str, candidates: list[dict[str, Any]]) -> Tree:
    """The run's candidates under their first parent."""
    children = family(candidates)
    tree = Tree(f"run {run_id}")

    def grow(branch: Tree, parent: str | None) -> None:
        for c in children.get(parent, []):
            grow(branch.add(_label(c)), c["candidate_id"])

    grow(tree, None)
    return tree


def standalone(candidate: dict[str, Any], run: dict[str, Any]) -> str:
    """The candidate's module with a provenance header; refuses code that imports anything
    but torch, math and typing, since the export promises a module that needs only torch."""
    source: str = candidate["source"]
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ArchlabError(f"candidate {candidate['candidate_id']} does not parse: {e}") from None
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add("." if node.level else (node.module or "").split(".")[0])
    extra = sorted(imported - EXPORT_IMPORTS)
    if extra:
        raise ArchlabError(
            f"candidate {candidate['candidate_id']} imports {', '.join(extra)}: an export "
            f"may import only {', '.join(sorted(EXPORT_IMPORTS))}"
        )
    plan = candidate["plan"] or {}
    score = "-" if candidate["score"] is None else f"{candidate['score']:.4f}"
    about = (
        f"archlab candidate {candidate['candidate_id']}\n\n"
        f"Task: {candidate['task']} (fingerprint {candidate['task_fingerprint']})\n"
        f"Run: {run['run_id']}; brain: {candidate['brain']}; origin: {candidate['origin']}\n"
        f"Parents: {', '.join(candidate['parents']) or 'none'}\n"
        f"Status: {candidate['status']}; score: {score}; parameters: {candidate['n_params']}\n"
        f"Plan: {plan_title(plan) or '-'}\n"
        f"Exported {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; it imports only torch.\n"
    )
    # a docstring: keep backslashes and triple quotes from the plan inert
    about = about.replace("\\", "\\\\").replace('"""', "'''")
    return f'"""{about}"""\n\n{source}'


def templates(*loaders: jinja2.BaseLoader) -> jinja2.Environment:
    """Jinja2 for HTML, autoescaped (code and model answers are untrusted), with the report's
    templates (and the `svg_plot` macro) after any given loaders."""
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([*loaders, jinja2.PackageLoader("archlab.report", ".")]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals["plan_title"] = plan_title
    env.filters["highlight"] = highlight
    env.globals["final_verdict"] = final_verdict
    env.globals["metric_shown"] = metric_shown
    return env


def _weights_link(home: Path, record: dict[str, Any] | None) -> dict[str, Any] | None:
    """A kept weights file as the report links it: the report may be read anywhere on
    this machine, so the link is the file's absolute address."""
    if record is None:
        return None
    path = home / record["path"]
    return {**record, "file": str(path), "url": path.absolute().as_uri()}


def html_report(memory: Memory, run_id: str) -> str:
    with memory.connect():  # one open of the file for the six reads
        run = memory.get_run(run_id)
        leaderboard = memory.candidates(run["run_id"])
        checks, verdicts = memory.run_checks(run["run_id"]), memory.verdicts(run["run_id"])
        trials = memory.run_trials(run["run_id"])
        kept = run_weights(memory, run["run_id"])
    by_time = [
        {
            **c,
            "checks": checks.get(c["candidate_id"], []),
            "verdict": verdicts.get(c["candidate_id"]),
            "curves": curve_plots(trials.get(c["candidate_id"], [])),
            "weights": _weights_link(memory.path.parent, kept.get(c["candidate_id"])),
        }
        for c in sorted(leaderboard, key=lambda c: c["created_at"])
    ]
    page = templates().get_template("report.html.j2")
    return page.render(
        run=run,
        candidates=by_time,
        leaderboard=leaderboard,
        verdicts={cid: v["verdict"] for cid, v in verdicts.items()},
        failures=[c for c in by_time if c["status"] not in ("ok", "pending", "duplicate")],
        plot=score_plot(by_time, href=_anchor),
        family=family(leaderboard),
        anchor=_anchor,
    )


def _anchor(candidate_id: str) -> str:
    """A candidate's section in the report."""
    return f"#{candidate_id}"
