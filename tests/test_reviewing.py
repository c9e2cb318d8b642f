"""Reviewing a run (issue 20, item 9): the params plot's colours and legend, a budget
overrun, the HTML report's lineage and curves, highlighted code, diffs against a
hand-written parent and the genome's change, the heuristic critic's insight, and scores
that negate a metric shown with the metric.

A memory filled through the store's API, the UI over real HTTP on loopback, and one run of
the real graph with trials answered by FakeExecutor."""

from __future__ import annotations

import json
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from archlab.config import load_settings
from archlab.memory.store import MEMORY_FILE, Memory, now
from archlab.orchestration.runs import discover, open_memory
from archlab.report import code_diff, html_report
from archlab.report.highlight import highlight
from archlab.report.plots import OUTCOME_COLORS, params_plot
from archlab.search.genome import (
    Genome,
    baseline_genome,
    genome_changes,
    genome_of,
    render,
    transformer_source,
)
from archlab.ui.views import _budgets, candidate_href
from support import HOSTILE, TINY_MQAR, FakeExecutor, Scripted, cli, serving

RUN = "20260101-000000-cafe"
GENOME = {"d_model": 64, "blocks": [{"mixer": "gru", "channel": "mlp"}]}
CHILD_GENOME = {"d_model": 64, "blocks": [{"mixer": "softmax_attention", "channel": "mlp"}]}
HAND = "import torch\r\n\r\ndef build_model(spec):   \r\n    return torch.nn.Linear(4, 4)\r\n"
#: charlm's fitness: bits per byte, negated
BPB = {"metric": "bits_per_byte", "higher_is_better": False, "param_penalty": 0.0,
       "latency_penalty": 0.0, "expression": "-bits_per_byte"}  # fmt: skip


def _save(memory: Memory, cid: str, parents: list[str], **fields: Any) -> None:
    row = {"source": "def build_model(spec): ...\n", "genome": None, "status": "ok", **fields}
    outcome = {k: row.pop(k) for k in ("status", "score", "n_params", "fitness") if k in row}
    memory.save_candidate(
        candidate_id=cid, run_id=RUN, task="charlm", task_fingerprint="fp",
        source_hash=cid, parents=parents, brain="heuristic", origin="proposed", status="pending",
        plan={"operator": "mutate", "hypothesis": f"idea {cid}"}, **row,
    )  # fmt: skip
    memory.set_outcome(cid, **outcome)


@pytest.fixture
def memory(tmp_path: Path) -> Memory:
    """A finished charlm run: a hand-written root, a mutant of it, a genome parent and its
    child; verdicts accept, reject and none; a trial with curves."""
    memory = Memory(tmp_path / "home" / MEMORY_FILE)
    memory.start_run(
        run_id=RUN, task="charlm", task_fingerprint="fp", brain="heuristic", seed=0,
        config={"run": {"trials": 4, "minutes": 5}},
    )  # fmt: skip
    _save(memory, "hand", [], source=HAND, score=-2.5, n_params=1000, fitness=BPB)
    _save(memory, "mutant", ["hand"], source=HAND.replace("\r\n", "\n").replace("4)", "8)"),
          score=-2.25, n_params=2000, fitness=BPB)  # fmt: skip
    _save(memory, "gparent", ["hand"], genome=GENOME, score=-2.0, n_params=30000, fitness=BPB)
    _save(memory, "gchild", ["gparent"], genome=CHILD_GENOME, score=-2.1, n_params=40000,
          fitness=BPB, source=f"import torch  # {HOSTILE}\n")  # fmt: skip
    _save(memory, "broken", ["hand"], status="failed", score=-3.0, n_params=500)
    _save(memory, "baseline", [], source=transformer_source())
    wider = {**baseline_genome().model_dump(mode="json"), "d_model": 128}
    _save(memory, "fromgenome", ["baseline"], genome=wider, source=render(Genome(**wider)))
    for cid, verdict in (("mutant", "accept"), ("gchild", "reject")):
        memory.save_verdict(candidate_id=cid, run_id=RUN, verdict=verdict, reason="r")
    memory.save_trial(
        trial_id="t1", candidate_id="mutant", run_id=RUN, stage="proxy", seed=0, budget={},
        status="ok", exit_reason="exited", wall_time_s=1.0, isolation="basic", score=-2.25,
        curve=[{"step": 8, "bits_per_byte": 3.0}, {"step": 16, "bits_per_byte": 2.25}],
        loss_curve=[{"step": 1, "loss": 4.0}, {"step": 16, "loss": 2.0}],
    )  # fmt: skip
    memory.finish_run(RUN, "finished", "trial budget spent")
    memory.set_elapsed(RUN, 394.0)
    return memory


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return str(answer.read().decode())


def test_the_params_plot_colours_dots_by_verdict_as_its_legend_says(memory: Memory) -> None:
    candidates = memory.candidates(RUN)
    verdicts = {cid: v["verdict"] for cid, v in memory.verdicts(RUN).items()}
    plot = params_plot(candidates, candidate_href, verdicts)
    colour = {d["href"].rsplit("/", 1)[1]: d["color"] for d in plot.dots}
    green, red, blue = (OUTCOME_COLORS[k][0] for k in ("accept", "reject", None))
    assert colour == {"mutant": green, "gchild": red, "broken": red, "hand": blue, "gparent": blue}
    assert plot.legend == [(green, "accepted"), (red, "rejected or failed"), (blue, "undecided")]
    with serving(memory) as url:
        page = get(f"{url}/runs/{RUN}")
    assert "rejected or failed</span>" in page and "red: rejected" not in page


def test_a_budget_overrun_shows_how_far_over(memory: Memory) -> None:
    run = memory.get_run(RUN)
    (wall,) = [b for b in _budgets(run, 5, 0, 0.0) if b["name"] == "wall time"]
    assert wall["fraction"] == pytest.approx(394 / 300) and wall["over_shown"] == "94 s"
    with serving(memory) as url:
        page = get(f"{url}/runs/{RUN}")
    assert "131%: <span" in page and "94 s over the limit" in page and 'value="1"' in page
    within = {**run, "elapsed_s": 150.0, "started_at": now() - timedelta(seconds=150)}
    (wall,) = [b for b in _budgets(within, 5, 0, 0.0) if b["name"] == "wall time"]
    assert wall["over_shown"] is None and wall["fraction"] == 0.5


def test_the_report_has_lineage_curves_verdicts_and_highlighted_code(memory: Memory) -> None:
    report = html_report(memory, RUN)
    lineage = report.partition('<div id="lineage">')[2].partition("</div>")[0]
    # the hand-written root holds its mutants, and the genome parent its child
    assert lineage.index("hand") < lineage.index("gparent") < lineage.index("gchild")
    assert lineage.count('<ul class="tree">') == 4  # roots; hand's, gparent's, baseline's
    mutant = report.partition('<details id="mutant">')[2].partition("</details>")[0]
    assert "Training curves" in mutant and mutant.count("<svg") == 2  # loss, bits per byte
    assert '<span class="verdict accept">accept</span>' in report
    summary = mutant.partition("</summary>")[0]  # each candidate's verdict in its heading
    assert 'verdict <span class="verdict accept">accept</span>' in summary
    assert '<span class="py-kw">import</span>' in report
    assert HOSTILE not in report  # the code's comment is escaped inside its span


def test_scores_that_negate_a_metric_show_the_metric_beside_them(
    memory: Memory, tmp_path: Path
) -> None:
    report = html_report(memory, RUN)
    assert '-2.2500 <span class="muted">(2.2500 bits per byte)</span>' in report
    with serving(memory) as url:
        page = get(f"{url}/candidates/mutant")
    assert "(2.2500 bits per byte)" in page
    home = tmp_path / "home"
    assert "-2.2500 (2.2500 bits per byte)" in cli(home, "show", RUN)
    (mutant,) = [c for c in json.loads(cli(home, "show", RUN, "--json"))["candidates"]
                 if c["id"] == "mutant"]  # fmt: skip
    assert mutant["score_as_metric"] == "2.2500 bits per byte"


def test_highlighting_escapes_everything_and_leaves_broken_code_plain() -> None:
    html = str(highlight('x = "<b>" if y else 1  # </pre>\n'))
    assert html == (
        'x = <span class="py-str">&#34;&lt;b&gt;&#34;</span> <span class="py-kw">if</span> y '
        '<span class="py-kw">else</span> <span class="py-num">1</span>  '
        '<span class="py-com"># &lt;/pre&gt;</span>\n'
    )
    assert str(highlight("def f(:\n  <x>")) == "def f(:\n  &lt;x&gt;"


def test_a_diff_against_a_hand_written_parent_shows_only_the_change(memory: Memory) -> None:
    hand, mutant = memory.get_candidate("hand"), memory.get_candidate("mutant")
    changed = [
        line for line in code_diff(hand, mutant).splitlines()
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]  # fmt: skip
    assert changed == ["-    return torch.nn.Linear(4, 4)", "+    return torch.nn.Linear(4, 8)"]
    with serving(memory) as url:
        page = get(f"{url}/candidates/gchild")
        of_baseline = get(f"{url}/candidates/fromgenome")
    changes = page.partition('<ul id="genome-changes">')[2].partition("</ul>")[0]
    assert "blocks[0].mixer: gru -&gt; softmax_attention" in changes
    # a mutant of the packaged baseline: the diff is against the baseline's genome, rendered
    assert "as its genome renders it" in of_baseline
    diff = of_baseline.partition('id="diff">')[2].partition("</pre>")[0]
    assert 0 < diff.count('<span class="add">') < 10, diff
    assert "d_model: 64 -&gt; 128" in of_baseline


def test_the_heuristic_critics_insight_says_which_change_moved_the_score(
    tmp_path: Path,
) -> None:
    settings_flags = {
        "home": str(tmp_path / "home"),
        "run": {"trials": 3, "lanes": 1},
        "tasks": {"mqar": TINY_MQAR},
        "search": {"random_samples": 0},
        "ladder": {"confirm_seeds": 2, "scale_top": 0},
    }
    settings = load_settings(flags=settings_flags, environ={})
    script = {1: Scripted(score=0.3), 2: Scripted(score=0.6), 3: Scripted(score=0.2)}
    run_id = discover(settings, Console(quiet=True), FakeExecutor(script))
    memory = open_memory(tmp_path / "home")
    verdicts = memory.verdicts(run_id)
    mutants = [c for c in memory.candidates(run_id) if c["plan"]["operator"] == "mutate"]
    mutant = min(mutants, key=lambda c: c["created_at"])  # the second edits the first
    (parent,) = mutant["parents"]  # the packaged baseline, mutated as its genome
    insight = verdicts[mutant["candidate_id"]]["insight"]
    assert f"moved the score +0.3008 (0.3008 -> 0.6016) against parent {parent}" in insight
    changes = genome_changes(genome_of(memory.get_candidate(parent)), mutant["genome"])
    assert changes and f"({'; '.join(changes)})" in insight, insight
    for c in memory.candidates(run_id):
        assert verdicts[c["candidate_id"]]["reason"] not in verdicts[c["candidate_id"]]["insight"]
