"""Harnesses started ahead of their trials. A level runs the harness through
`HarnessStarts.run_harness`, which starts it in its sandbox before the trial: a fresh
process per trial, started with no inputs, that loads Python and torch and then waits for
a go line on stdin (the READY handshake); only then does it read its trial. With
`prewarm`, the next trial's harness starts while this one trains, so a trial no longer
waits for an interpreter and torch. Nothing is shared between trials: each harness is used
once, and one that is not used is killed.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from archlab.sandbox.harness import READY_LINE
from archlab.sandbox.process import POLL_S
from archlab.sandbox.protocol import Execution, Limits, Watcher

_READY = (READY_LINE + "\n").encode()
#: how long a harness's start-up (trusted code: Python and torch loading) is waited for
#: before its trial's wall clock starts anyway
STARTUP_S = 300.0


class Started:
    """A harness started in its sandbox ahead of its trial, waiting for the go line. It
    is used for one trial (`send_go`, then the level watches it) or discarded; `finish`
    ends what its level set up."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        key: Limits,
        kill: Callable[[int], None],
        finish: Callable[[], None] = lambda: None,
    ) -> None:
        self.proc, self.key, self.kill, self.finish = proc, key, kill, finish
        self.ready = False
        self._at_eof = False
        self._early = bytearray()  # output before the ready line; a sound harness writes none

    def poll_ready(self, wait_s: float = 0.0) -> bool:
        """Whether it has loaded torch and waits, reading (up to `wait_s`) what it wrote."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        if not self.ready and not self._at_eof and select.select([fd], [], [], wait_s)[0]:
            with contextlib.suppress(BlockingIOError):
                chunk = os.read(fd, 2**16)
                self._at_eof = not chunk
                self._early += chunk
                if _READY in self._early:
                    self.ready = True
                    self._early = self._early.replace(_READY, b"", 1)
        return self.ready

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send_go(self, workdir: str) -> bytes:
        """Tell the harness to run the trial in `workdir`; return what it wrote before its
        ready line. One still starting is waited for (up to STARTUP_S), so that the
        trial's wall clock, started next, counts the trial alone whether its harness was
        started ahead or just now (on a loaded machine torch alone can take 20 s to
        load), and the log keeps nothing of the start-up."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died meanwhile: watching tells how
            self.proc.stdin.write(workdir.encode() + b"\n")
            self.proc.stdin.close()
        deadline = time.monotonic() + STARTUP_S
        while not self.poll_ready(POLL_S) and not self._at_eof:
            if time.monotonic() > deadline:
                break
        return bytes(self._early)

    def discard(self) -> None:
        try:
            self.kill(self.proc.pid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.proc.pid, 0)
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
        finally:
            self.finish()


def start_key(limits: Limits) -> Limits:
    """What a harness started ahead was started with: the wall clock and the log's cap
    apply only from the go line, so they do not have to match."""
    return replace(limits, wall_s=0.0, log_bytes=0)


#: The thread that starts every harness. The strict level's bwrap dies with the *thread*
#: that started it (--die-with-parent is PR_SET_PDEATHSIG), and lanes and confirm-stage
#: pools start trials from threads that end: a harness started ahead by one of them would
#: be killed before its trial. This thread lives as long as the process.
_SPAWNER = ThreadPoolExecutor(1, thread_name_prefix="harness-start")


def _discard_all(spares: list[Started]) -> None:
    while spares:
        spares.pop().discard()


class HarnessStarts:
    """Harness processes started ahead of their trials, for a level's `start_harness` and
    `go`. Thread-safe: lanes running trials at once each take their own."""

    def __init__(self, prewarm: bool) -> None:
        self.prewarm = prewarm
        self._spares: list[Started] = []
        self._lock = threading.Lock()
        # spares die with the launcher, or at exit; a spare also exits when our end of its
        # stdin closes, so none outlives the orchestrator
        self._finalizer = weakref.finalize(self, _discard_all, self._spares)

    def start_harness(self, limits: Limits) -> Started:
        raise NotImplementedError

    def go(
        self, started: Started, trial_dir: Path, limits: Limits, watcher: Watcher | None
    ) -> Execution:
        raise NotImplementedError

    def run_harness(
        self, trial_dir: Path, limits: Limits, watcher: Watcher | None = None
    ) -> Execution:
        key = start_key(limits)
        with self._lock:
            started = next((s for s in self._spares if s.key == key), None)
            if started is not None:
                self._spares.remove(started)
        if started is not None and not started.alive():
            started.discard()
            started = None
        started = started or _SPAWNER.submit(self.start_harness, limits).result()
        try:
            if self.prewarm:  # the next trial's harness loads while this one trains
                spare = _SPAWNER.submit(self.start_harness, limits).result()
                with self._lock:
                    self._spares.append(spare)
        except BaseException:
            started.discard()
            raise
        return self.go(started, trial_dir, limits, watcher)

    def wait_warm(self, timeout_s: float) -> bool:
        """Wait until every spare has loaded torch (benchmarks use this to keep a spare's
        start-up off the measurement that follows); whether all have."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            spares = list(self._spares)
        for spare in spares:
            while not spare.poll_ready(0.05) and spare.alive():
                if time.monotonic() > deadline:
                    return False
        return True

    def close(self) -> None:
        with self._lock:
            spares, self._spares[:] = list(self._spares), []
        _discard_all(spares)


def harness_argv() -> list[str]:
    """The harness's command: it loads torch, then waits for the go line."""
    # -B: -I ignores PYTHONDONTWRITEBYTECODE, and no bytecode cache belongs in a trial dir
    return [sys.executable, "-I", "-B", "-m", "archlab.sandbox.harness"]
