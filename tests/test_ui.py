"""The web UI over real HTTP: a server on an ephemeral loopback port, urllib as the client.

Fast tests use a memory filled through the store's API with hostile strings; the slow ones
use the memory of a real short run (shared with test_ui_browser.py) and a run that is live
while the UI is polled."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from markupsafe import escape

from archlab.memory import in_flight, leases, weights
from archlab.memory.spans import spans_of
from archlab.memory.store import MEMORY_FILE, Memory, now
from archlab.report.plots import params_plot, score_plot
from archlab.ui.views import _trace, candidate_href
from support import FAKE_WEIGHTS, HOSTILE, serving, start

RUN = "20260101-000000-beef"
BASE = "aaaa0000base"
CHILD = "bbbb1111child"
LONG_PROMPT = "write " + "x" * 5000 + HOSTILE
SOURCE = "import torch\n\n\ndef build_model(spec):\n    return torch.nn.Linear(4, 4)\n"


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def ok(url: str) -> str:
    status, body, _ = get(url)
    assert status == 200, f"{url}: {status}\n{body[:2000]}"
    return body


# --- a memory filled through the store's API ------------------------------------------------


@pytest.fixture
def hostile_memory(tmp_path: Path) -> Iterator[Memory]:
    """A live run (this process drives it) whose candidate's plan, code, error, verdict and
    LLM call carry hostile text."""
    memory = Memory(tmp_path / "home" / MEMORY_FILE)
    memory.start_run(
        run_id=RUN,
        task="mqar",
        task_fingerprint="fp",
        brain="llm:default",
        seed=0,
        config={"run": {"trials": 4, "minutes": 10, "max_tokens": 1000, "max_usd": 0.5}},
    )
    for cid, parents, source in ((BASE, [], SOURCE), (CHILD, [BASE], SOURCE + f"# {HOSTILE}\n")):
        memory.save_candidate(
            candidate_id=cid, run_id=RUN, task="mqar", task_fingerprint="fp", source=source,
            source_hash=cid, parents=parents, brain="llm:default", status="pending",
            origin="proposed" if parents else "baseline",
            plan={"operator": "mutate", "summary": f"idea {HOSTILE}", "hypothesis": HOSTILE},
        )  # fmt: skip
    memory.set_outcome(BASE, status="ok", score=0.5, n_params=1234)
    memory.set_outcome(CHILD, status="failed", error_class="shape", message=HOSTILE)
    memory.save_verdict(
        candidate_id=CHILD, run_id=RUN, verdict="reject", reason=HOSTILE, insight=HOSTILE
    )
    memory.save_check(CHILD, "smoke", "failed", "shape", HOSTILE, {"note": HOSTILE})
    memory.save_trial(
        trial_id="t1", candidate_id=BASE, run_id=RUN, stage="proxy", seed=0, budget={},
        status="ok", exit_reason="exited", wall_time_s=1.0, isolation="basic", score=0.5,
        curve=[{"step": 8, "accuracy": 0.2}, {"step": 16, "accuracy": 0.5}],
        loss_curve=[{"step": 1, "loss": 4.0}, {"step": 16, "loss": 2.0}],
    )  # fmt: skip
    started = now()  # the coder's node span, enclosing its LLM call
    memory.save_llm_call(
        call_id="call1", run_id=RUN, role="coder", purpose="write", candidate_id=CHILD, step=1,
        repair=0, attempt=2, retry=1, brain="llm:default", model="fake-model",
        base_url="http://127.0.0.1:1/v1", status="ok", prompt_tokens=300, completion_tokens=50,
        tokens_estimated=False, cost_usd=0.25, latency_s=0.0,
        request={"messages": [{"role": "user", "content": LONG_PROMPT}]},
        content=f"here {HOSTILE}", reasoning=f"thinking {HOSTILE}",
    )  # fmt: skip
    memory.save_span(
        span_id="node1", run_id=RUN, name="code", role="coder", candidate_id=CHILD,
        status="ok", started_at=started, ended_at=now(),
    )  # fmt: skip
    with leases.hold(tmp_path / "home", RUN):
        yield memory


def test_pages_escape_what_the_memory_holds(hostile_memory: Memory) -> None:
    with serving(hostile_memory) as url:
        pages = [
            ok(url + "/"),
            ok(f"{url}/runs/{RUN}"),
            ok(f"{url}/candidates/{BASE}"),
            child := ok(f"{url}/candidates/{CHILD[:6]}"),  # a unique prefix is enough
        ]
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page
        # the only script a page may load is the server's own
        assert page.count("<script") == page.count('<script src="/live.js"')
    escaped = "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;"
    # plan, code, error, verdict, check, prompt, answer and reasoning: all shown, all inert
    assert child.count(escaped) >= 8
    assert "write " + "x" * 5000 in child  # a long prompt is folded, never cut
    assert f"{len(LONG_PROMPT):,} characters" in child
    assert "$0.25000" in child and "300 in, 50 out" in child and "retry 1" in child
    assert "+# &lt;script&gt;" in child  # the diff to its parent


def test_a_candidate_with_kept_weights_links_them_and_the_export_command(
    hostile_memory: Memory,
) -> None:
    weights.stash(hostile_memory, BASE, FAKE_WEIGHTS)
    weights.keep(hostile_memory, BASE, run_id=RUN, trial_id="t1", spec={"vocab_size": 8})
    with serving(hostile_memory) as url:
        page = ok(f"{url}/candidates/{BASE}")
        child = ok(f"{url}/candidates/{CHILD}")
        with urllib.request.urlopen(f"{url}/weights/{BASE}.safetensors", timeout=60) as got:
            status, body, headers = got.status, got.read(), dict(got.headers)
        answers = [
            get(f"{url}/weights/{name}")[0]
            for name in (f"{CHILD}.safetensors", BASE, "..%2Fmemory.duckdb", "%2E%2E")
        ]
        kept = hostile_memory.path.parent / "weights" / f"{BASE}.safetensors"
        kept.write_bytes(b"changed behind the memory's back")
        tampered = get(f"{url}/weights/{BASE}.safetensors")
    assert f'href="/weights/{BASE}.safetensors" download' in page
    assert (
        f"archlab export {BASE} -o {BASE}" in page
        and hashlib.sha256(FAKE_WEIGHTS).hexdigest() in page
    )
    assert "No weights kept" in child and "/weights/" not in child
    assert status == 200 and body == FAKE_WEIGHTS
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == f'attachment; filename="{BASE}.safetensors"'
    assert answers == [404, 404, 404, 404]
    assert tampered[0] == 503 and "not the one the memory recorded" in tampered[1]


def test_run_page_shows_budgets_against_the_config(hostile_memory: Memory) -> None:
    with serving(hostile_memory) as url:
        page = ok(f"{url}/runs/{RUN}")
        status, body, headers = get(f"{url}/api/runs/{RUN[:10]}")
    assert status == 200 and headers["Content-Type"] == "application/json"
    state = json.loads(body)
    assert state["run_id"] == RUN and state["live"] is True and state["n_candidates"] == 2
    budgets = {b["name"]: b for b in state["budgets"]}
    assert (budgets["candidates"]["spent"], budgets["candidates"]["limit"]) == (2, 4)
    assert (budgets["tokens"]["spent"], budgets["tokens"]["fraction"]) == (350, 0.35)
    assert budgets["dollars"]["fraction"] == 0.5 and budgets["wall time"]["limit"] == 600
    assert {c["candidate_id"] for c in state["candidates"]} == {BASE, CHILD}
    # a live run: the page follows it with the server's script, and says so
    assert 'id="live"' in page and '<script src="/live.js"' in page
    assert 'value="0.35"' in page and "$0.2500" in page
    assert page.count("<svg") == 2 and f'href="/candidates/{BASE}"' in page


def _in_flight(page: str) -> str:
    """The run page's paragraph on the stages in flight (empty if it has none)."""
    return page.partition('<p id="in-flight">')[2].partition("</p>")[0]


def test_a_live_run_page_shows_the_stages_in_flight(hostile_memory: Memory) -> None:
    in_flight.mark(hostile_memory, RUN, 0, CHILD, "proxy")
    in_flight.mark(hostile_memory, RUN, 0, None, "scale")
    with serving(hostile_memory) as url:
        state = json.loads(ok(f"{url}/api/runs/{RUN}"))
        page = ok(f"{url}/runs/{RUN}")
        hostile_memory.finish_run(RUN, "finished")  # a finished run has nothing in flight
        ended = json.loads(ok(f"{url}/api/runs/{RUN}"))
        ended_page = ok(f"{url}/runs/{RUN}")
    stages = [(s["candidate_id"], s["stage"]) for s in state["in_flight"]]
    assert stages == [(CHILD, "proxy"), (None, "scale")] and state["lanes"] == 1
    assert all(0 <= s["seconds"] < 60 for s in state["in_flight"])
    flight = _in_flight(page)
    assert f'<a href="/candidates/{CHILD}"><code>{CHILD[:12]}</code></a>\nproxy (' in flight
    assert "the best candidates\nscale (" in flight and "lane" not in flight
    assert ended["in_flight"] == [] and 'id="in-flight"' not in ended_page


def test_a_running_run_that_no_process_drives_shows_as_killed(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "home" / MEMORY_FILE)
    memory.start_run(
        run_id=RUN, task="mqar", task_fingerprint="fp", brain="heuristic", seed=0, config={}
    )  # as a run killed with kill -9 leaves it: no process holds its lease
    with serving(memory) as url:
        state = json.loads(get(f"{url}/api/runs/{RUN}")[1])
        page = ok(f"{url}/runs/{RUN}")
    assert state["status"] == "killed" and state["live"] is False
    assert 'id="live"' not in page and "killed" in page


def test_unknown_pages_are_404_and_csp_forbids_foreign_content(hostile_memory: Memory) -> None:
    with serving(hostile_memory) as url:
        for path in ("/runs/nope", "/candidates/zzzz", "/api/runs/nope", "/elsewhere", "/runs/"):
            status, body, _ = get(url + path)
            assert status == 404, path
            assert "Not found" in body and "Traceback" not in body
        status, body, _ = get(f"{url}/runs/%3Cscript%3E")
        assert status == 404 and "<script>" not in body and "&lt;script&gt;" in body
        _, _, headers = get(url + "/")
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        # a page whose DNS name was rebound to 127.0.0.1 does not get the memory
        status, _, _ = get(url + "/", headers={"Host": "evil.example:80"})
        assert status == 403
        script = ok(url + "/live.js")
        assert "fetch(" in script and "://" not in script  # only this server


def test_ui_command_refuses_a_port_in_use_with_one_line(hostile_memory: Memory) -> None:
    with serving(hostile_memory) as url:
        port = url.rsplit(":", 1)[1]
        home = hostile_memory.path.parent
        proc = subprocess.run(
            [sys.executable, "-m", "archlab", "--home", str(home), "ui", "--port", port],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr


# --- a real short run -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_candidates_trace_reads_only_its_own_calls_and_trials(
    real_run: tuple[Memory, str],
) -> None:
    """The candidate page loads the trials and LLM calls of its candidate only, and finds
    the same spans, parented alike, as the whole run's spans do."""
    memory, run_id = real_run
    everything = spans_of(memory, run_id)
    planner_calls = [s for s in everything if s["kind"] == "llm" and s["candidate_id"] is None]
    assert planner_calls  # the model planner's calls name no candidate: the window finds them
    for c in memory.candidates(run_id):
        cid = c["candidate_id"]
        mine = spans_of(memory, run_id, cid)
        assert {s["span_id"] for s in mine if s["kind"] != "node"} < {
            s["span_id"] for s in everything if s["kind"] != "node"
        }
        nodes = {
            s["span_id"] for s in everything if s["kind"] == "node" and s["candidate_id"] == cid
        }
        expected = [
            s for s in everything
            if s["span_id"] in nodes or s["parent_id"] in nodes or s["candidate_id"] == cid
        ]  # fmt: skip
        assert _trace(memory, run_id, cid) == expected


@pytest.mark.slow
def test_pages_of_a_real_run(real_run: tuple[Memory, str]) -> None:
    memory, run_id = real_run
    candidates = memory.candidates(run_id)
    assert len(candidates) == 3
    with serving(memory) as url:
        started = time.monotonic()
        runs = ok(url + "/")
        run = ok(f"{url}/runs/{run_id}")
        pages = {c["candidate_id"]: ok(f"{url}/candidates/{c['candidate_id']}") for c in candidates}
        seconds = time.monotonic() - started
    print(f"{2 + len(pages)} pages in {seconds:.2f} s")
    assert f'href="/runs/{run_id}"' in runs and "finished" in runs
    assert 'id="live"' not in run and "/live.js" not in run  # a finished run stays still
    for c in candidates:
        assert f'href="/candidates/{c["candidate_id"]}"' in run
    assert run.count("<svg") == 2 and run.count("<circle") >= 4  # scores, and against params
    assert "Best " in run and "vs the baseline" in run
    for cid, page in pages.items():
        c = memory.get_candidate(cid)
        assert "<script>alert" not in page and "<script" not in page
        assert "Verification ladder" in page and "smoke" in page and "proxy" in page
        assert page.count("<svg") >= 2  # training loss and held-out accuracy
        if c["origin"] == "baseline":  # always confirmed: its trained weights are kept
            assert f'href="/weights/{cid}.safetensors" download' in page
        if c["origin"] != "baseline":
            assert "gated recurrence at width" in page and "&lt;script&gt;alert" in page
            # the planner's call, with its prompt, answer and reasoning, in the agent trace
            assert "prompt (system)" in page and "reasoning &lt;script&gt;" in page
            assert "fake-model" in page and "latency" in page
            assert str(escape(memory.verdict(cid)["reason"])) in page


@pytest.mark.slow
def test_ui_follows_a_live_run(lab_dir: Path) -> None:
    home = lab_dir / "home"
    with (lab_dir / "archlab.toml").open("a") as config:  # fewer trials per candidate
        config.write("\n[ladder]\nconfirm_seeds = 1\nscale_top = 0\n")
    writer = start(lab_dir, "run", "--trials", "3")
    seen: list[int] = []
    live_pages = 0
    stages: set[str] = set()  # the stages in flight the page showed
    try:
        while not (home / MEMORY_FILE).exists() and writer.poll() is None:
            time.sleep(0.2)
        memory = Memory(home / MEMORY_FILE)
        with serving(memory) as url:
            while writer.poll() is None:
                for run in memory.runs():  # any error page fails the test in ok()
                    state = json.loads(ok(f"{url}/api/runs/{run['run_id']}"))
                    page = ok(f"{url}/runs/{run['run_id']}")
                    if state["live"] and 'id="live"' in page:
                        live_pages += 1
                    shown = _in_flight(page)
                    stages |= {s["stage"] for s in state["in_flight"] if s["stage"] in shown}
                    for c in state["candidates"]:
                        ok(f"{url}/candidates/{c['candidate_id']}")
                    seen.append(state["n_candidates"])
                ok(url + "/")
                time.sleep(0.2)
            (run,) = memory.runs()
            final = json.loads(ok(f"{url}/api/runs/{run['run_id']}"))
            page = ok(f"{url}/runs/{run['run_id']}")
    finally:
        if writer.poll() is None:
            writer.kill()
        _, errors = writer.communicate(timeout=60)
    assert writer.returncode == 0, errors
    assert live_pages >= 2, "the UI never showed the run live"
    assert stages & {"verify", "proxy", "confirm"}, "the UI never showed a trial in flight"
    assert final["in_flight"] == []
    assert seen == sorted(seen) and len(set(seen)) >= 2, seen  # progress, never going back
    assert final["status"] == "finished" and not final["live"] and final["n_candidates"] == 3
    assert 'id="live"' not in page and page.count('href="/candidates/') >= 3
    assert final["n_trials"] == len(memory.read_only_sql("SELECT * FROM trials")[1])


def test_plots_fit_the_box_and_the_best_so_far_never_drops() -> None:
    scores = [0.3, None, 0.5, 0.4, 0.7]
    candidates = [
        {"candidate_id": f"c{i}", "score": s, "n_params": 10 ** (i + 3), "status": "ok"}
        for i, s in enumerate(scores)
    ]
    p = score_plot(candidates, candidate_href)
    frame = p.frame
    assert [d["href"] for d in p.dots] == [f"/candidates/c{i}" for i in (0, 2, 3, 4)]
    assert all(frame["left"] <= d["x"] <= frame["right"] for d in p.dots)
    assert all(frame["top"] <= d["y"] <= frame["bottom"] for d in p.dots)
    best = [float(xy.split(",")[1]) for xy in p.lines[0]["points"].split()]
    assert best == sorted(best, reverse=True)  # SVG y grows downwards: the line only rises
    assert [label for _, label in p.x_ticks] == ["1", "2", "3", "4", "5"]
    log = params_plot(candidates, candidate_href, {})
    assert [label for _, label in log.x_ticks] == ["1000", "1e4", "1e5", "1e6", "1e7"]
    ticks = [x for x, _ in log.x_ticks]  # evenly spaced decades
    assert max(b - a for a, b in pairwise(ticks)) - min(b - a for a, b in pairwise(ticks)) < 0.2
