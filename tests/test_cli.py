"""The real CLI, as a user runs it: a subprocess per command, a tiny task, a fresh home."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from archlab.sandbox.strict import strict_missing
from support import NON_CAUSAL, archlab, as_json, path_without_bubblewrap, start

BROKEN_SHAPE = """
import torch

def build_model(spec):
    return torch.nn.Embedding(spec.vocab_size, 8)
"""


@pytest.mark.slow
def test_discovery_end_to_end_and_memory_persists(lab_dir: Path) -> None:
    first = archlab(lab_dir, "run", "--task", "mqar", "--trials", "3", "--seed", "1")
    assert "run " in first.stderr

    (run,) = as_json(archlab(lab_dir, "runs", "--json"))
    assert run["task"] == "mqar" and run["status"] == "finished"

    board = as_json(archlab(lab_dir, "show", run["run_id"], "--json"))
    assert board["run_id"] == run["run_id"] and board["task"] == "mqar"
    candidates = board["candidates"]
    assert len(candidates) == 3
    for c in candidates:
        assert {"id", "status", "score", "metrics", "brain", "parents"} <= c.keys()
        assert len(c["code_sha256"]) == 64
        assert c["verdict"] in ("accept", "reject")  # each candidate was judged
        assert c["accepted"] is (c["verdict"] == "accept")
    baseline = next(c for c in candidates if c["brain"] == "baseline")
    assert baseline["status"] == "ok" and 0 <= baseline["score"] <= 1
    # the baseline, then the brain and a random sample of its space (the honest yardstick)
    assert {c["brain"] for c in candidates} == {"baseline", "heuristic", "random"}
    assert baseline["seeds"]["n"] == 3  # the baseline is always confirmed
    summary = board["summary"]
    assert summary["best_id"] is not None and summary["budget_s"] is None
    assert summary["elapsed_s"] > 0 and summary["vs_random"]["samples"] <= 1  # not ready
    # the run's last words: what it found, or that it found nothing (wrapped at 80 columns)
    assert summary["sentence"].startswith(("found: ", "nothing found: "))
    assert " ".join(first.stdout.split()).endswith(" ".join(summary["sentence"].split()))

    # A second run starts from what the first learned: the baseline is not trained again,
    # and the first run's candidates are eligible parents.
    archlab(lab_dir, "run", "--trials", "3", "--seed", "2")
    runs = as_json(archlab(lab_dir, "runs", "--json"))
    second = next(r for r in runs if r["run_id"] != run["run_id"])
    board2 = as_json(archlab(lab_dir, "show", second["run_id"][:17], "--json"))
    assert {c["brain"] for c in board2["candidates"]} <= {"heuristic", "random"}
    first_ids = {c["id"] for c in candidates}
    parents = {p for c in board2["candidates"] for p in c["parents"]}
    assert parents <= first_ids | {c["id"] for c in board2["candidates"]}

    con = duckdb.connect(str(lab_dir / "home" / "memory.duckdb"), read_only=True)
    try:
        (n_candidates,) = con.execute("SELECT count(*) FROM candidates").fetchone()
        (n_proxy,) = con.execute("SELECT count(*) FROM trials WHERE stage = 'proxy'").fetchone()
        (n_verdicts,) = con.execute("SELECT count(*) FROM verdicts").fetchone()
        (pending,) = con.execute(
            "SELECT count(*) FROM candidates WHERE status = 'pending'"
        ).fetchone()
        motivations = con.execute(
            "SELECT plan->>'motivation' FROM candidates WHERE run_id = ? AND brain = 'heuristic'",
            [second["run_id"]],
        ).fetchall()
        ladders = con.execute(
            "SELECT list(stage ORDER BY checked_at) FROM checks JOIN candidates USING "
            "(candidate_id) WHERE candidates.status = 'ok' GROUP BY candidate_id"
        ).fetchall()
    finally:
        con.close()
    # the brain's proposals are edits of the first run's candidates, or draws it preferred
    # by a surrogate fitted to their scores: either way, built on what the first run learned
    fitted = [int(n) for (m,) in motivations for n in re.findall(r"fitted to the (\d+) scored", m)]
    assert parents & first_ids or (fitted and max(fitted) >= 2), motivations
    assert n_candidates == 6 and n_verdicts == 6 and pending == 0
    assert ladders
    for (stages,) in ladders:
        assert stages[:6] == ["static", "dedup", "smoke", "causality", "complexity", "proxy"]
    trained = ("ok", "stopped")  # one proxy trial each (a stopped one, cut short)
    assert n_proxy == sum(1 for c in candidates + board2["candidates"] if c["status"] in trained)
    assert (lab_dir / "home" / "checkpoints.sqlite").is_file()


@pytest.mark.slow
def test_eval_of_a_broken_candidate_is_recorded(lab_dir: Path) -> None:
    path = lab_dir / "broken.py"
    path.write_text(BROKEN_SHAPE)
    proc = archlab(lab_dir, "eval", str(path), "--task", "mqar", "--json", check=False)
    assert proc.returncode == 1
    report = as_json(proc)
    assert report["status"] == "rejected" and report["error_class"] == "shape"
    assert "logits must have shape" in report["message"]
    assert report["score"] is None and report["metrics"] is None
    assert [(s["stage"], s["status"]) for s in report["stages"]] == [
        ("static", "passed"), ("dedup", "passed"), ("smoke", "failed")
    ]  # fmt: skip
    assert as_json(archlab(lab_dir, "runs", "--json")) == []  # an evaluation, listed with --all
    (run,) = as_json(archlab(lab_dir, "runs", "--all", "--json"))
    assert run["kind"] == "eval"
    board = as_json(archlab(lab_dir, "show", run["run_id"], "--json"))
    assert board["candidates"][0]["id"] == report["candidate_id"]


@pytest.mark.slow
def test_eval_of_a_good_candidate_then_its_duplicate(lab_dir: Path) -> None:
    from archlab.tasks.mqar import MQAR

    path = lab_dir / "baseline.py"
    path.write_text(MQAR().baseline_source())
    report = as_json(archlab(lab_dir, "eval", str(path), "--json"))
    assert report["status"] == "ok" and 0 <= report["score"] <= 1
    assert set(report["metrics"]) >= {"accuracy", "accuracy_auc"}

    path.write_text(
        "# the same model, reformatted\n" + MQAR().baseline_source().replace("\n\n", "\n\n\n")
    )
    assert [s["stage"] for s in report["stages"]][:6] == [
        "static", "dedup", "smoke", "causality", "complexity", "proxy"
    ]  # fmt: skip
    proc = archlab(lab_dir, "eval", str(path), "--json", check=False)
    assert proc.returncode == 1  # not trained: its result is the original's, and rejected
    again = as_json(proc)
    assert again["status"] == "duplicate" and again["score"] == report["score"]
    assert [(s["stage"], s["status"]) for s in again["stages"]] == [
        ("static", "passed"), ("dedup", "failed")
    ]  # fmt: skip


@pytest.mark.slow
def test_eval_rejects_a_model_that_sees_the_future(lab_dir: Path) -> None:
    path = lab_dir / "leaky.py"
    path.write_text(NON_CAUSAL)
    proc = archlab(lab_dir, "eval", str(path), "--json", check=False)
    report = as_json(proc)
    assert proc.returncode == 1
    assert (report["status"], report["error_class"]) == ("rejected", "causality")
    assert report["stages"][-1]["stage"] == "causality"
    assert report["stages"][-1]["status"] == "failed"


def test_tasks_lists_mqar(lab_dir: Path) -> None:
    assert "mqar" in archlab(lab_dir, "tasks").stdout
    tasks = {t["name"]: t for t in as_json(archlab(lab_dir, "tasks", "--json"))}
    assert tasks["mqar"]["spec"]["vocab_size"] == 64  # the [tasks.mqar] options apply


def test_bad_config_is_one_clear_line(lab_dir: Path) -> None:
    (lab_dir / "archlab.toml").write_text("[run]\ntrails = 3\n")
    proc = archlab(lab_dir, "runs", check=False)
    assert proc.returncode == 2
    assert "unknown key 'run.trails'" in proc.stderr and "archlab.toml" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_corrupt_memory_is_one_clear_line(lab_dir: Path) -> None:
    (lab_dir / "home").mkdir()
    (lab_dir / "home" / "memory.duckdb").write_bytes(b"garbage" * 1000)
    proc = archlab(lab_dir, "runs", check=False)
    assert proc.returncode == 2 and "corrupt" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_memory_is_one_clear_line(lab_dir: Path) -> None:
    proc = archlab(lab_dir, "show", "nope", check=False)
    assert proc.returncode == 2 and "no memory" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_run_is_one_clear_line(lab_dir: Path) -> None:
    archlab(lab_dir, "tasks")
    (lab_dir / "home").mkdir()
    from archlab.memory.store import Memory

    Memory(lab_dir / "home" / "memory.duckdb")
    proc = archlab(lab_dir, "show", "nope", check=False)
    assert proc.returncode == 2 and "no run" in proc.stderr


def _processes_in(directory: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if Path(os.readlink(proc / "cwd")).is_relative_to(directory):
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
@pytest.mark.parametrize(
    ("level", "stop"),
    [("basic", signal.SIGINT), ("strict", signal.SIGINT), ("basic", signal.SIGTERM)],
    ids=["basic Ctrl-C", "strict Ctrl-C", "SIGTERM"],
)
def test_ctrl_c_stops_cleanly_and_kills_the_trial(
    lab_dir: Path, level: str, stop: signal.Signals
) -> None:
    """Ctrl-C, or SIGTERM (`kill`, a scheduler's time limit), stops the run as it stands."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHLAB_")}
    env["ARCHLAB_HOME"] = str(lab_dir / "home")
    if level == "basic":
        env["PATH"] = path_without_bubblewrap(lab_dir / "path")
    elif strict_missing():
        pytest.skip("strict is unavailable here: see `archlab doctor`")
    proc = subprocess.Popen(
        [sys.executable, "-m", "archlab", "run", "--trials", "20"],
        cwd=lab_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal delivers it: a shell starts background jobs (a CI script's
        # `cmd &`) with SIGINT ignored, and Python then keeps ignoring it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    trials = lab_dir / "home" / "trials"
    deadline = time.monotonic() + 120
    while not list(trials.glob("*/*-proxy-*/log.txt")):
        assert time.monotonic() < deadline and proc.poll() is None, "no training started"
        time.sleep(0.1)
    proc.send_signal(stop)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert f"sandbox {level}" in stderr and "Traceback" not in stderr
    assert _processes_in(trials) == []  # at once: not even for the second a trial takes
    (run,) = as_json(archlab(lab_dir, "runs", "--json"))
    assert run["status"] == "interrupted"
    assert run["message"] == (
        "stopped by SIGTERM" if stop == signal.SIGTERM else "stopped by the user"
    )
    assert f"`archlab resume {run['run_id']}` continues the run" in stderr  # on one line


@pytest.mark.slow
def test_an_interrupted_eval_resumes_to_its_one_candidate(lab_dir: Path) -> None:
    from archlab.tasks.mqar import MQAR

    path = lab_dir / "baseline.py"
    path.write_text(MQAR().baseline_source())
    proc = start(lab_dir, "eval", str(path))
    trials = lab_dir / "home" / "trials"
    deadline = time.monotonic() + 120
    while not list(trials.glob("*/*/log.txt")):
        assert time.monotonic() < deadline and proc.poll() is None, "no trial started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    (run,) = as_json(archlab(lab_dir, "runs", "--all", "--json"))
    assert proc.returncode == 130 and run["status"] == "interrupted"
    assert f"`archlab resume {run['run_id']}` continues the run" in stderr

    more = archlab(lab_dir, "resume", run["run_id"], "--trials", "2", check=False)
    assert more.returncode == 2 and "--trials and --minutes do not apply" in more.stderr
    resumed = archlab(lab_dir, "resume", run["run_id"])
    assert "candidate 1 of 1" in resumed.stderr  # not a discovery of the run's trial budget
    (run,) = as_json(archlab(lab_dir, "runs", "--all", "--json"))
    assert (run["status"], run["n_candidates"], run["summary"]) == ("finished", 1, None)
    assert run["best_score"] is not None
    again = archlab(lab_dir, "resume", run["run_id"], check=False)
    assert again.returncode == 2 and "already finished" in again.stderr
