"""Trials on a real local Ray cluster: a `ray start --head` of our own, which the CLI joins
with --ray-address. The results have the local executor's shape; the sandbox is the
worker's: the head runs without bubblewrap on its PATH, so its workers can only offer the
basic level, whatever this machine's own level is."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from archlab.sandbox.levels import make_launcher
from support import TINY_CONFIG, archlab, as_json

pytest.importorskip("ray", reason="the Ray executor needs the optional ray package")
pytestmark = pytest.mark.slow

#: no Ray token to set up, and nothing reported home
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
#: trial columns that differ between any two runs
VARYING = {"trial_id", "candidate_id", "run_id", "wall_time_s", "cpu_time_s", "peak_rss_mb",
           "finished_at", "log_tail", "isolation"}  # fmt: skip


def _free_port() -> int:
    # outside Ray's worker port range (10002-19999): the kernel's ephemeral ports
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """One Ray head for the module (starting one costs ~5 s and ~0.8 GB): 2 CPUs."""
    port = _free_port()
    folder = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # its sockets' paths must stay short
    ray = Path(sys.executable).with_name("ray")
    tools = Path(folder) / "bin"  # unshare but no bwrap: the workers' sandbox is basic
    tools.mkdir()
    if unshare := shutil.which("unshare"):
        (tools / "unshare").symlink_to(unshare)
    # no network guard: Ray's own agents listen on this machine's address, not loopback;
    # the trials' network is cut by the basic sandbox itself
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(RAY_ENV, PATH=f"{ray.parent}:{tools}")
    head = subprocess.Popen(
        [str(ray), "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
         "--node-ip-address=127.0.0.1", f"--temp-dir={folder}", "--include-dashboard=false",
         "--disable-usage-stats", "--block"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, "ray start --head exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head did not come up"
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()  # --block: the head drains and stops what it started
        head.wait(timeout=90)
        shutil.rmtree(folder, ignore_errors=True)


def _trials(folder: Path) -> list[dict[str, Any]]:
    query = "SELECT * FROM trials ORDER BY stage, seed"
    return list(as_json(archlab(folder, "sql", query, "--json")))


def _lab(folder: Path) -> Path:
    folder.mkdir()
    (folder / "archlab.toml").write_text(TINY_CONFIG)
    return folder


def test_a_discovery_on_ray_records_trials_as_the_local_executor_does(
    ray_head: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in RAY_ENV.items():
        monkeypatch.setenv(name, value)
    local, remote = _lab(tmp_path / "local"), _lab(tmp_path / "ray")
    archlab(local, "run", "--trials", "1", "--workers", "2")
    ran = archlab(
        remote, "run", "--trials", "1", "--executor", "ray", "--ray-address", ray_head,
        "--workers", "2",
    )  # fmt: skip
    assert f"2 Ray worker(s) at {ray_head}" in ran.stderr

    local_rows, ray_rows = _trials(local), _trials(remote)
    assert [(r["stage"], r["seed"]) for r in ray_rows] == [
        ("confirm", 1), ("confirm", 2), ("proxy", 0), ("smoke", 0)
    ]  # fmt: skip
    for ours, theirs in zip(local_rows, ray_rows, strict=True):
        assert ours.keys() == theirs.keys()
        assert theirs["status"] == "ok" and theirs["wall_time_s"] > 0
        # the same seeds give the same training, wherever it runs
        assert {k: v for k, v in ours.items() if k not in VARYING} == {
            k: v for k, v in theirs.items() if k not in VARYING
        }
    assert {r["isolation"] for r in local_rows} == {make_launcher("basic", 0).level}
    assert {r["isolation"] for r in ray_rows} == {"basic"}  # the worker's level
    # the confirmed baseline's weights came back from the worker in its report: the same
    # training gives the same bytes, kept beside each memory
    query = "SELECT candidate_id, bytes, sha256 FROM weights"
    local_kept, ray_kept = (
        as_json(archlab(lab, "sql", query, "--json")) for lab in (local, remote)
    )
    assert len(ray_kept) == 1 and ray_kept[0]["bytes"] > 0
    assert ray_kept[0]["sha256"] == local_kept[0]["sha256"]
    assert (remote / "home" / "weights" / f"{ray_kept[0]['candidate_id']}.safetensors").is_file()


def test_an_unreachable_ray_address_is_one_clear_line(tmp_path: Path) -> None:
    lab = _lab(tmp_path / "lab")
    ran = archlab(
        lab, "run", "--executor", "ray", "--ray-address", f"127.0.0.1:{_free_port()}", check=False
    )
    assert ran.returncode == 2
    assert "cannot reach a Ray cluster at 127.0.0.1:" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_a_worker_without_the_required_sandbox_refuses_the_trial(
    ray_head: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in RAY_ENV.items():
        monkeypatch.setenv(name, value)
    lab = _lab(tmp_path / "lab")
    (lab / "archlab.toml").write_text(
        TINY_CONFIG.replace("[sandbox]", '[sandbox]\nlevel = "strict"')
    )
    ran = archlab(lab, "run", "--executor", "ray", "--ray-address", ray_head, check=False)
    assert ran.returncode == 2
    assert "on a Ray worker: the config requires sandbox level 'strict'" in ran.stderr
    assert "Traceback" not in ran.stderr
