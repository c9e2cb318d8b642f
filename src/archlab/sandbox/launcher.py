"""Isolation levels. A launcher runs one command for a trial and enforces limits from
outside the child: the wall clock, memory, processes, file size and the log's size.

- `basic` (here): a subprocess in its own session with rlimits, a cleared environment, no
  network where `unshare` allows, and a wall-clock kill of the whole process group.
- `strict` (`strict.py`): bubblewrap namespaces, an unprivileged uid, seccomp and cgroups.

`make_launcher` picks the strongest level available and refuses to go below the configured
minimum. Both levels share `supervise`: the child's output goes through a pipe that we
write to the log, capped, so a flood cannot fill the disk or hide the end of the log.

Trials run the harness through `run_harness`, which starts it in its sandbox ahead of the
trial (`HarnessStarts`): a fresh process per trial, started with no inputs, that loads
Python and torch and then waits for a go line on stdin; only then does it read its trial.
With `prewarm`, the next trial's harness starts while this one trains, so a trial no longer
waits for an interpreter and torch. Nothing is shared between trials: each harness is used
once, and one that is not used is killed.
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
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

from archlab.errors import ArchlabError
from archlab.sandbox.harness import READY_LINE

#: why a trial ended; `pids`: it hit the process limit, `policy`: it made a forbidden call
ExitReason = Literal["ok", "timeout", "oom", "pids", "policy", "crash"]
LEVELS = ("basic", "strict")  # weakest first

#: hardware settings some OpenBLAS builds need to compute correctly; not secrets
_PASSTHROUGH_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
LOG_FILE = "log.txt"
_POLL_S = 0.02
#: how often a trial's clock and limits are looked at while it is quiet, where its output
#: and its exit wake the watcher at once (pidfds): waking every _POLL_S cost ~2% of a core
#: per trial, taken from training when every core trains
_WATCH_S = 0.25


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
    #: GPU device numbers the trial may use; empty: CPU only
    gpus: tuple[int, ...] = ()


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

    def run(self, argv: list[str], trial_dir: Path, limits: Limits) -> Execution:
        """Run any command with the trial directory's files as its inputs."""
        ...

    def run_harness(self, trial_dir: Path, limits: Limits) -> Execution:
        """Run the harness on the trial laid out in `trial_dir`."""
        ...

    def close(self) -> None:
        """End the harnesses started ahead; the launcher still works afterwards."""
        ...


class SandboxUnavailable(ArchlabError):
    """The configured minimum isolation level cannot be had on this machine."""


def clean_env(trial_dir: Path, threads: int, gpus: tuple[int, ...] = ()) -> dict[str, str]:
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
    if gpus:  # numbered as /dev/nvidiaN and nvidia-smi number them
        env.update(CUDA_DEVICE_ORDER="PCI_BUS_ID", CUDA_VISIBLE_DEVICES=",".join(map(str, gpus)))
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


def _read_ready(fd: int, log: _CappedLog) -> int | None:
    """Move what the child wrote into the log, without waiting (the pipe does not block):
    the number of bytes moved, None at end of file. Reads a bounded amount per call so
    that a flood cannot starve the clock."""
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


def _exit_fd(pid: int) -> int | None:
    """A descriptor that turns readable when child `pid` exits, where the kernel has them."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _wait_for(out: int | None, exited: int | None, deadline: float) -> list[int]:
    """Wait until `out` has output or `exited` turns readable, or the next look at the
    trial's clock and limits is due (every _POLL_S without an exit descriptor)."""
    fds = [fd for fd in (out, exited) if fd is not None]
    wait_s = _WATCH_S if exited is not None else _POLL_S
    wait_s = max(0.0, min(wait_s, deadline - time.monotonic()))
    if not fds:
        time.sleep(wait_s)
        return []
    return select.select(fds, [], [], wait_s)[0]


def spawn(argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session, its output (stdout and stderr) on a non-blocking pipe
    and its stdin a pipe of ours: closed at once for a plain command, the go line for a
    harness started ahead."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **popen,
    )
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    return proc


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
    proc = spawn(argv, **popen)
    assert proc.stdin is not None
    proc.stdin.close()
    return watch_child(proc, log_path, limits, tail_bytes, kill, watch)


def watch_child(
    proc: subprocess.Popen[bytes],
    log_path: Path,
    limits: Limits,
    tail_bytes: int,
    kill: Callable[[int], None],
    watch: Callable[[], ExitReason | None] = lambda: None,
    early_output: bytes = b"",
) -> Outcome:
    """`supervise` for a child already started: the wall clock counts from now, and
    `early_output` (what it wrote before) opens the log."""
    started = time.monotonic()
    forced: ExitReason | None = None
    try:
        log = _CappedLog(log_path, limits.log_bytes, tail_bytes)
    except BaseException:
        kill(proc.pid)
        os.waitpid(proc.pid, 0)
        raise
    try:
        log.write(early_output)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = started + limits.wall_s
        at_eof = False
        exited = _exit_fd(proc.pid)
        try:
            while True:
                if fd in _wait_for(None if at_eof else fd, exited, deadline):
                    at_eof = _read_ready(fd, log) is None
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
        finally:
            if exited is not None:
                os.close(exited)
        wall = time.monotonic() - started
        kill(proc.pid)  # whatever the child left behind ends with it
        drained = 0  # what is still in the pipe; bounded, as a leftover process may write on
        while not at_eof and drained < limits.log_bytes:
            moved = _read_ready(fd, log)
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
        while not self.poll_ready(_POLL_S) and not self._at_eof:
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


def _start_key(limits: Limits) -> Limits:
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

    def go(self, started: Started, trial_dir: Path, limits: Limits) -> Execution:
        raise NotImplementedError

    def run_harness(self, trial_dir: Path, limits: Limits) -> Execution:
        key = _start_key(limits)
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
        return self.go(started, trial_dir, limits)

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
        return [*prologue(limits, address_space), *network_isolation_prefix(), *argv]

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
        return Started(proc, _start_key(limits), kill_group)

    def go(self, started: Started, trial_dir: Path, limits: Limits) -> Execution:
        early = started.send_go(str(trial_dir.resolve()))
        outcome = watch_child(
            started.proc,
            trial_dir / LOG_FILE,
            limits,
            self.log_tail_bytes,
            kill=kill_group,
            early_output=early,
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


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def make_launcher(min_level: str, log_tail_bytes: int, prewarm: bool = True) -> Launcher:
    """The strongest launcher available here; refuses if that is weaker than `min_level`.
    With `prewarm`, each trial's harness starts while the trial before it runs."""
    from archlab.sandbox.strict import StrictLauncher, strict_missing  # strict imports us

    missing = strict_missing()
    if not missing:
        return StrictLauncher(log_tail_bytes=log_tail_bytes, prewarm=prewarm)
    if min_level == "strict":
        raise SandboxUnavailable(
            "the config requires sandbox level 'strict', which this machine cannot provide: "
            + "; ".join(missing)
            + " (see `archlab doctor`)"
        )
    return BasicLauncher(log_tail_bytes=log_tail_bytes, prewarm=prewarm)


def harness_argv() -> list[str]:
    """The harness's command: it loads torch, then waits for the go line."""
    # -B: -I ignores PYTHONDONTWRITEBYTECODE, and no bytecode cache belongs in a trial dir
    return [sys.executable, "-I", "-B", "-m", "archlab.sandbox.harness"]
