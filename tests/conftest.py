"""Shared fixtures. Every test gets its own archlab home, so nothing touches a real memory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from archlab.config import load_settings
from archlab.memory.store import MEMORY_FILE, Memory
from archlab.orchestration.runs import discover
from archlab.sandbox.doctor import STRICT_HOW
from archlab.tasks.base import Budget
from archlab.tasks.mqar import MQAR
from fake_llm import FakeLLM
from support import NETGUARD, TINY_CONFIG, TINY_MQAR, hostile_plan  # support: the net guard


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say why the tests of the strict sandbox level were skipped, and how to run them."""
    skipped = terminalreporter.stats.get("skipped", [])
    strict = [r for r in skipped if "strict is unavailable" in str(r.longrepr)]
    if strict:
        terminalreporter.write_line(
            f"{len(strict)} tests skipped: the strict sandbox level is unavailable here "
            f"(`archlab doctor` says what is missing). To run them: {STRICT_HOW}."
        )


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("ARCHLAB_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(NETGUARD), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tiny_task() -> MQAR:
    task = MQAR(**TINY_MQAR)
    task.budgets["proxy"] = Budget(steps=16, batch_size=16, eval_every=8, time_limit_s=60)
    return task


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    """The fake model server (tests/fake_llm.py), its answers queued by the test."""
    with FakeLLM() as server:
        yield server


@pytest.fixture
def lab_dir(tmp_path: Path) -> Path:
    """A working directory with a tiny-task archlab.toml and a home beneath it."""
    (tmp_path / "archlab.toml").write_text(TINY_CONFIG)
    return tmp_path


@pytest.fixture(scope="session")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Memory, str]:
    """A real 3-candidate run, its planner on the fake model (plans carry hostile text), the
    rest heuristic; shared by the UI's HTTP and browser tests."""
    home = tmp_path_factory.mktemp("ui") / "home"
    with FakeLLM() as fake, pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(NETGUARD))
        fake.queue("planner", hostile_plan(32), hostile_plan(48))
        settings = load_settings(
            flags={
                "home": str(home),
                # one lane (the fake's plans are queued), every proposal trained in full
                "run": {"trials": 3, "lanes": 1},
                "roles": {"planner": "llm:default"},
                "llm": {"default": {"base_url": fake.base_url, "model": "fake-model"}},
                "tasks": {"mqar": TINY_MQAR},
                "search": {"random_samples": 0},
                "ladder": {"confirm_seeds": 2, "scale_top": 0, "early_stop": False},
            },
            environ={},
        )
        run_id = discover(settings, Console(quiet=True))
    return Memory(home / MEMORY_FILE), run_id
