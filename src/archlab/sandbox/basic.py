"""The basic isolation level: a subprocess in its own session with rlimits, a cleared
environment, no network where `unshare` allows, and a wall-clock kill of the whole process
group. It works wherever Python does, and is what `make_launcher` falls back to where the
strict level (`strict.py`) cannot be had.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from functools import cache
from pathlib import Path

from archlab.sandbox.prewarm import HarnessStarts, Started, harness_argv, start_key
from archlab.sandbox.process import (
    Outcome,
    clean_env,
    kill_group,
    prologue,
    spawn,
    supervise,
    watch_child,
)
from archlab.sandbox.protocol import LOG_FILE, Execution, ExitReason, Limits, Watcher


def _first_that_runs(*prefixes: tuple[str, ...]) -> tuple[str, ...]:
    """The first command prefix that runs `true` here; () when none does."""
    for args in prefixes:
        try:
            ok = subprocess.run([*args, "true"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return args
    return ()


@cache
def network_isolation_prefix() -> tuple[str, ...]:
    """`unshare` arguments that give the child an empty network namespace, if allowed here."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    return _first_that_runs((unshare, "--net"), (unshare, "--map-root-user", "--net"))


@cache
def die_with_orchestrator_prefix() -> tuple[str, ...]:
    """`setpriv` arguments that kill the child when the thread that started it dies: a
    trial whose orchestrator was killed (`kill -9`) must not train on with no clock on it.
    Last before the command, after any namespace change that could clear the setting."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return ()
    return _first_that_runs((setpriv, "--pdeathsig", "KILL", "--"))


class BasicLauncher(HarnessStarts):
    """A subprocess in its own session with rlimits, a cleared environment, no network
    where `unshare` allows, and a wall-clock kill of the whole process group."""

    level = "basic"

    def __init__(self, log_tail_bytes: int = 4000, prewarm: bool = False) -> None:
        super().__init__(prewarm)
        self.log_tail_bytes = log_tail_bytes

    def _argv(self, limits: Limits, argv: list[str]) -> list[str]:
        # CUDA reserves far more address space than memory: no address-space cap for GPUs
        address_space = not limits.gpus
        return [
            *prologue(limits, address_space),
            *network_isolation_prefix(),
            *die_with_orchestrator_prefix(),
            *argv,
        ]

    def run(self, argv: list[str], trial_dir: Path, limits: Limits) -> Execution:
        outcome = supervise(
            self._argv(limits, argv),
            trial_dir / LOG_FILE,
            limits,
            self.log_tail_bytes,
            kill=kill_group,
            cwd=trial_dir,
            env=clean_env(trial_dir, limits.threads, limits.gpus),
        )
        return _basic_execution(outcome)

    def start_harness(self, limits: Limits) -> Started:
        # it starts in / and moves into its trial directory (and HOME there) at the go line
        proc = spawn(
            self._argv(limits, harness_argv()),
            cwd="/",
            env=clean_env(Path("/"), limits.threads, limits.gpus),
        )
        return Started(proc, start_key(limits), kill_group)

    def go(
        self, started: Started, trial_dir: Path, limits: Limits, watcher: Watcher | None
    ) -> Execution:
        early = started.send_go(str(trial_dir.resolve()))
        outcome = watch_child(
            started.proc,
            trial_dir / LOG_FILE,
            limits,
            self.log_tail_bytes,
            kill=kill_group,
            early_output=early,
            watcher=watcher,
        )
        return _basic_execution(outcome)


def _basic_execution(outcome: Outcome) -> Execution:
    reason: ExitReason
    if outcome.forced:
        reason = outcome.forced
    elif outcome.returncode == 0:
        reason = "ok"
    elif outcome.returncode == -signal.SIGKILL:
        reason = "oom"  # nobody else here sends SIGKILL: the kernel's OOM killer did
    else:
        reason = "crash"
    return Execution(
        exit_reason=reason,
        returncode=outcome.returncode,
        wall_s=outcome.wall_s,
        cpu_s=outcome.cpu_s,
        peak_rss_mb=outcome.peak_rss_mb,
        log_tail=outcome.log_tail,
    )
