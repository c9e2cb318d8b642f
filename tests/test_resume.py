"""A run killed with SIGKILL mid-training resumes from its checkpoint: finished work is
kept, the interrupted step runs again, nothing is duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from support import archlab, as_json

pytestmark = pytest.mark.slow


def _proxy_logs(home: Path) -> int:
    return len(list((home / "trials").glob("*/*-proxy-s0/log.txt")))


def test_kill_9_during_training_then_resume(lab_dir: Path) -> None:
    home = lab_dir / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHLAB_")}
    env["ARCHLAB_HOME"] = str(home)
    proc = subprocess.Popen(
        [sys.executable, "-m", "archlab", "run", "--trials", "3"],
        cwd=lab_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while _proxy_logs(home) < 2:  # the baseline is done; the second candidate is training
        assert time.monotonic() < deadline and proc.poll() is None, "the run never got there"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    (run,) = as_json(archlab(lab_dir, "runs", "--json"))
    assert run["status"] == "killed"  # nobody closed it, and no process drives it
    resumed = archlab(lab_dir, "resume", run["run_id"][:10])
    assert "resuming run" in resumed.stderr

    (run,) = as_json(archlab(lab_dir, "runs", "--json"))
    assert run["status"] == "finished"
    con = duckdb.connect(str(home / "memory.duckdb"), read_only=True)
    try:
        statuses = [s for (s,) in con.execute("SELECT status FROM candidates").fetchall()]
        (verdicts,) = con.execute("SELECT count(*) FROM verdicts").fetchone()
        (proxies,) = con.execute("SELECT count(*) FROM trials WHERE stage = 'proxy'").fetchone()
    finally:
        con.close()
    assert len(statuses) == 3 and "pending" not in statuses
    assert verdicts == 3
    # one proxy trial each (a stopped one, cut short), none repeated
    assert proxies == sum(1 for s in statuses if s in ("ok", "stopped"))

    again = archlab(lab_dir, "resume", run["run_id"], check=False)
    assert again.returncode == 2 and "already finished" in again.stderr
