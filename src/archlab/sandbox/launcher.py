"""Isolation levels. A launcher runs one command for a trial and enforces limits from
outside the child: the wall clock, memory, processes, file size and the log's size.

- `basic` (here): a subprocess in its own session with rlimits, a cleared environment, no
  network where `unshare` allows, and a wall-clock kill of the whole process group.
- `strict` (`strict.py`): bubblewrap namespaces, an unprivileged uid, seccomp and cgroups.

`make_launcher` picks the strongest level available and refuses to go below the configured
minimum. Both levels share `supervise`: the child's output goes through a pipe that we
write to the log, capped, so a flood cannot fill the disk or hide the end of the log.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

from archlab.errors import ArchlabError

#: why a trial ended; `pids`: it hit the process limit, `policy`: it made a forbidden call
ExitReason = Literal["ok", "timeout", "oom", "pids", "policy", "crash"]
LEVELS = ("basic", "strict")  # weakest first

#: hardware settings some OpenBLAS builds need to compute correctly; not secrets
_PASSTHROUGH_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
LOG_FILE = "log.txt"
_POLL_S = 0.02


@dataclass(frozen=True)
class Limits:
    wall_s: float
    memory_bytes: int
    file_bytes: int = 256 * 2**20
    threads: int = 1
    #: processes and threads together (strict)
    max_processes: int = 256
    #: size of each private tmpfs (the trial directory, /tmp, /dev/shm), counted as memory
    scratch_bytes: int = 512 * 2**20
    #: output kept in the log file; past it only the tail is kept
    log_bytes: int = 4 * 2**20


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


class SandboxUnavailable(ArchlabError):
    """The configured minimum isolation level cannot be had on this machine."""


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
    """The end of a file in a trial directory, which the child may have swapped for a
    symlink or a FIFO: neither is followed nor waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            return ""
        f.seek(max(info.st_size - max_bytes, 0))
        return f.read(max_bytes).decode("utf-8", errors="replace")


class _CappedLog:
    """The child's output, written to the log file by us: at most `cap` bytes reach the
    disk, and the last `tail_bytes` are always kept for the trial's record."""

    def __init__(self, path: Path, cap: int, tail_bytes: int) -> None:
        # a fresh file: where an earlier attempt's candidate left a symlink, never write through
        path.unlink(missing_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        self._file = open(os.open(path, flags, 0o644), "wb", buffering=0)  # noqa: SIM115
        self._room = cap
        self._dropped = 0
        self._tail_bytes = tail_bytes
        self._tail = bytearray()

    def write(self, chunk: bytes) -> None:
        kept = chunk[: max(self._room, 0)]
        self._file.write(kept)
        self._room -= len(kept)
        self._dropped += len(chunk) - len(kept)
        self._tail += chunk
        del self._tail[: max(len(self._tail) - self._tail_bytes, 0)]

    def close(self) -> str:
        """Close the file, noting what was dropped; return the tail."""
        if self._dropped:
            note = f"\n[archlab: {self._dropped} bytes of output dropped; the last ones follow]\n"
            self._file.write(note.encode() + self._tail)
        self._file.close()
        return self._tail.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Outcome:
    """How a supervised child ended, before a launcher names the exit reason."""

    returncode: int
    cpu_s: float
    peak_rss_mb: float
    wall_s: float
    log_tail: str
    #: why we killed the child, if we did
    forced: ExitReason | None


def prologue(limits: Limits, address_space: bool, join: list[Path] | None = None) -> list[str]:
    """A shell that sets the rlimits (hard and soft), writes its pid into each `join` file
    (a cgroup's cgroup.procs), then execs the command that follows. No Python runs between
    fork and exec: a Ctrl-C landing in Python's at-fork handlers would be lost."""
    steps = ["set -e", f"ulimit -f {limits.file_bytes // 512}", "ulimit -c 0"]
    if address_space:
        steps.append(f"ulimit -v {limits.memory_bytes // 1024}")
    steps += [f"echo $$ > {shlex.quote(str(path))}" for path in join or []]
    return ["/bin/sh", "-c", "; ".join([*steps, 'exec "$@"']), "sh"]


def _read_ready(fd: int, log: _CappedLog, wait_s: float) -> int | None:
    """Move what the child wrote into the log, waiting up to `wait_s` for the first byte:
    the number of bytes moved, None at end of file. Reads a bounded amount per call so
    that a flood cannot starve the clock."""
    if not select.select([fd], [], [], wait_s)[0]:
        return 0
    moved = 0
    while moved < 4 * 2**20:
        try:
            chunk = os.read(fd, 2**16)
        except BlockingIOError:
            break
        if not chunk:
            return None if moved == 0 else moved
        log.write(chunk)
        moved += len(chunk)
    return moved


def supervise(
    argv: list[str],
    log_path: Path,
    limits: Limits,
    tail_bytes: int,
    kill: Callable[[int], None],
    watch: Callable[[], ExitReason | None] = lambda: None,
    **popen: Any,
) -> Outcome:
    """Run `argv` in a new session, log its output, and wait for it. `kill(pid)` must end
    the child and everything it started; it is called past the deadline, when `watch`
    names a reason, on any error here (Ctrl-C included), and once the child has exited."""
    log = _CappedLog(log_path, limits.log_bytes, tail_bytes)
    started = time.monotonic()
    forced: ExitReason | None = None
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen,
        )
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        deadline = started + limits.wall_s
        at_eof = False
        try:
            while True:
                if at_eof:
                    time.sleep(_POLL_S)
                else:
                    at_eof = _read_ready(fd, log, _POLL_S) is None
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                forced = "timeout" if time.monotonic() > deadline else watch()
                if forced:
                    kill(proc.pid)
                    _, status, usage = os.wait4(proc.pid, 0)
                    break
        except BaseException:  # the trial must not outlive us
            kill(proc.pid)
            os.waitpid(proc.pid, 0)
            raise
        wall = time.monotonic() - started
        kill(proc.pid)  # whatever the child left behind ends with it
        drained = 0  # what is still in the pipe; bounded, as a leftover process may write on
        while not at_eof and drained < limits.log_bytes:
            moved = _read_ready(fd, log, 0)
            at_eof = moved is None
            if not moved:
                break
            drained += moved
        proc.stdout.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        tail = log.close()
    return Outcome(
        returncode=proc.returncode,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,
        wall_s=wall,
        log_tail=tail,
        forced=forced,
    )


class BasicLauncher:
    """A subprocess in its own session with rlimits, a cleared environment, no network
    where `unshare` allows, and a wall-clock kill of the whole process group."""

    level = "basic"

    def __init__(self, log_tail_bytes: int = 4000) -> None:
        self.log_tail_bytes = log_tail_bytes

    def run(self, argv: list[str], trial_dir: Path, limits: Limits) -> Execution:
        outcome = supervise(
            [*prologue(limits, address_space=True), *network_isolation_prefix(), *argv],
            trial_dir / LOG_FILE,
            limits,
            self.log_tail_bytes,
            kill=kill_group,
            cwd=trial_dir,
            env=clean_env(trial_dir, limits.threads),
        )
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


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def make_launcher(min_level: str, log_tail_bytes: int) -> Launcher:
    """The strongest launcher available here; refuses if that is weaker than `min_level`."""
    from archlab.sandbox.strict import StrictLauncher, strict_missing  # strict imports us

    missing = strict_missing()
    if not missing:
        return StrictLauncher(log_tail_bytes=log_tail_bytes)
    if min_level == "strict":
        raise SandboxUnavailable(
            "the config requires sandbox level 'strict', which this machine cannot provide: "
            + "; ".join(missing)
            + " (see `archlab doctor`)"
        )
    return BasicLauncher(log_tail_bytes=log_tail_bytes)


def harness_argv() -> list[str]:
    # -B: -I ignores PYTHONDONTWRITEBYTECODE, and no bytecode cache belongs in a trial dir
    return [sys.executable, "-I", "-B", "-m", "archlab.sandbox.harness"]
