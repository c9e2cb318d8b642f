"""Isolation levels. A launcher runs one command in a trial directory and enforces limits
from outside the child: the wall clock (killing the whole process group), memory, file size.

Stronger levels (bubblewrap, seccomp, cgroups) plug in as further `Launcher`s.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, Protocol

ExitReason = Literal["ok", "timeout", "oom", "crash"]

#: hardware settings some OpenBLAS builds need to compute correctly; not secrets
_PASSTHROUGH_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
LOG_FILE = "log.txt"


@dataclass(frozen=True)
class Limits:
    wall_s: float
    memory_bytes: int
    file_bytes: int = 256 * 2**20
    threads: int = 1


@dataclass(frozen=True)
class Execution:
    exit_reason: ExitReason
    returncode: int | None
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    log_tail: str


class Launcher(Protocol):
    level: str

    def run(self, argv: list[str], trial_dir: Path, limits: Limits) -> Execution: ...


def clean_env(trial_dir: Path, threads: int) -> dict[str, str]:
    """The child's whole environment: no inherited variable can carry a secret in."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(trial_dir),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)  # oversubscription made training 5-10x slower here
    env.update({k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ})
    return env


@cache
def network_isolation_prefix() -> tuple[str, ...]:
    """`unshare` arguments that give the child an empty network namespace, if allowed here."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    for args in ((unshare, "--net"), (unshare, "--map-root-user", "--net")):
        try:
            ok = subprocess.run([*args, "true"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return args
    return ()


def read_tail(path: Path, max_bytes: int) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(max(size - max_bytes, 0))
        return f.read(max_bytes).decode("utf-8", errors="replace")


class BasicLauncher:
    """A subprocess in its own session with rlimits, a cleared environment, no network
    where `unshare` allows, and a wall-clock kill of the whole process group."""

    level = "basic"

    def __init__(self, log_tail_bytes: int = 4000) -> None:
        self.log_tail_bytes = log_tail_bytes

    def run(self, argv: list[str], trial_dir: Path, limits: Limits) -> Execution:
        def set_limits() -> None:  # runs in the child between fork and exec
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        log_path = trial_dir / LOG_FILE
        started = time.monotonic()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [*network_isolation_prefix(), *argv],
                cwd=trial_dir,
                env=clean_env(trial_dir, limits.threads),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=set_limits,
            )
        timed_out = False
        deadline = started + limits.wall_s
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    timed_out = True
                    _kill_group(proc.pid)
                    _, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.02)
        except BaseException:  # Ctrl-C or an error here: the trial must not outlive us
            _kill_group(proc.pid)
            os.waitpid(proc.pid, 0)
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        _kill_group(proc.pid)  # whatever the candidate left behind in its session
        wall = time.monotonic() - started
        if timed_out:
            reason: ExitReason = "timeout"
        elif proc.returncode == 0:
            reason = "ok"
        elif proc.returncode == -signal.SIGKILL:
            reason = "oom"  # nobody else here sends SIGKILL: the kernel's OOM killer did
        else:
            reason = "crash"
        return Execution(
            exit_reason=reason,
            returncode=proc.returncode,
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss_mb=usage.ru_maxrss / 1024,
            log_tail=read_tail(log_path, self.log_tail_bytes),
        )


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


LEVELS: dict[str, type[BasicLauncher]] = {"basic": BasicLauncher}


def make_launcher(min_level: str, log_tail_bytes: int) -> Launcher:
    """The strongest launcher available that satisfies `min_level`."""
    return LEVELS[min_level](log_tail_bytes=log_tail_bytes)


def harness_argv() -> list[str]:
    return [sys.executable, "-I", "-m", "archlab.sandbox.harness"]
