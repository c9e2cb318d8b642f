"""A run killed with SIGKILL mid-training, or stopped by a full disk, resumes from its
checkpoint: finished work is kept, the interrupted step runs again, nothing is duplicated."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from support import archlab, as_json, start

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


def test_a_full_disk_stops_the_run_with_one_clear_line_and_resume_finishes_it(
    lab_dir: Path,
) -> None:
    home = lab_dir / "home"
    home.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(home)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("a small file system for the home needs root and mount")
    try:
        proc = start(lab_dir, "run", "--trials", "3")
        deadline = time.monotonic() + 300
        while _proxy_logs(home) < 1:
            assert time.monotonic() < deadline and proc.poll() is None, "no training started"
            time.sleep(0.1)
        _fill(home / "filler")  # another program takes the last of the space
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 2 and "Traceback" not in stderr, stderr
        (run,) = as_json(archlab(lab_dir, "runs", "--json"))
        assert "a write found the disk full" in stderr
        assert f"`archlab resume {run['run_id']}` continues the run" in stderr

        (home / "filler").unlink()  # room made
        archlab(lab_dir, "resume", run["run_id"])
        (run,) = as_json(archlab(lab_dir, "runs", "--json"))
        assert (run["status"], run["n_candidates"]) == ("finished", 3)
    finally:
        subprocess.run(["umount", "--lazy", str(home)], check=False)


def _fill(path: Path) -> None:
    with open(path, "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(bytes(2**20))
        except OSError as e:
            assert e.errno == errno.ENOSPC
