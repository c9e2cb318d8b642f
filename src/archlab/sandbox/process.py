"""Supervision of one child process, shared by every isolation level: its cleared
environment, the shell prologue that sets its rlimits, starting it in its own session, and
watching it to its end (the wall clock, a level's own limits, its exit through a pidfd)
while its output goes through a pipe that we write to the log, capped, so a flood cannot
fill the disk or hide the end of the log. `kill_group` and `read_tail` also serve the
orchestrator, which ends a run's trials and reads their logs.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archlab.sandbox.harness import RECORD_PREFIX as _RECORD_TEXT
from archlab.sandbox.protocol import ExitReason, Limits, Watcher

#: hardware settings some OpenBLAS builds need to compute correctly; not secrets
_PASSTHROUGH_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
#: how often a child is looked at where nothing wakes us when it writes or exits
POLL_S = 0.02
#: how often a trial's clock and limits are looked at while it is quiet, where its output
#: and its exit wake the watcher at once (pidfds): waking every POLL_S cost ~2% of a core
#: per trial, taken from training when every core trains
_WATCH_S = 0.25
#: the longest record the harness may print; a longer one is logged as text instead (the
#: held-out outputs of a packaged task's checkpoint take well under 1 MiB)
MAX_RECORD_BYTES = 16 * 2**20
RECORD_PREFIX = _RECORD_TEXT.encode()


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
        # where the driver's libraries are: NVIDIA's container images say it here, not in
        # ld.so.cache (the strict level binds only system folders, /usr/local/nvidia among them)
        if os.environ.get("LD_LIBRARY_PATH"):
            env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    return env


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


class UnsafeOutput(ValueError):
    """A file a trial leaves for the trusted side is missing, oversized or not plain."""


def read_output(path: Path, cap: int, what: str) -> bytes:
    """A file the child wrote into its trial directory (`what` names it in errors), read
    without trusting it: never through a link, never waiting on a FIFO, a regular file of
    at most `cap` bytes, even if it grows while read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UnsafeOutput(f"the trial wrote no {what}") from None
    except OSError as e:
        raise UnsafeOutput(f"the {what} cannot be opened safely: {e.strerror}") from None
    try:  # a plain fd: os.fdopen refuses a directory with an error of its own
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeOutput(f"the {what} is not a regular file")
        if info.st_size > cap:
            raise UnsafeOutput(f"the {what} is {info.st_size:,} bytes, over the cap of {cap:,}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(cap + 1)
    finally:
        os.close(fd)
    if len(raw) > cap:
        raise UnsafeOutput(f"the {what} grew past the cap of {cap:,} bytes")
    return raw


class _CappedLog:
    """The child's output, written to the log file by us: at most `cap` bytes reach the
    disk, and the last `tail_bytes` are always kept for the trial's record. With
    `on_record`, the harness's record lines are handed to it instead of the log."""

    def __init__(
        self,
        path: Path,
        cap: int,
        tail_bytes: int,
        on_record: Callable[[bytes], None] | None = None,
    ) -> None:
        # a fresh file: where an earlier attempt's candidate left a symlink, never write through
        path.unlink(missing_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        self._file = open(os.open(path, flags, 0o644), "wb", buffering=0)  # noqa: SIM115
        self._room = cap
        self._dropped = 0
        self._tail_bytes = tail_bytes
        self._tail = bytearray()
        self._on_record = on_record
        #: output held back: a record not ended yet, or what may be the start of one
        self._pending = b""

    def write(self, chunk: bytes) -> None:
        if self._on_record is None:
            self._keep(chunk)
            return
        data, self._pending = self._pending + chunk, b""
        while data:
            at = data.find(RECORD_PREFIX)
            if at == -1:
                held = _prefix_cut_at_end(data)
                self._keep(data[: len(data) - held])
                self._pending = data[len(data) - held :]
                return
            self._keep(data[:at])
            end = data.find(b"\n", at)
            if end == -1:
                if len(data) - at > MAX_RECORD_BYTES:
                    self._keep(data[at:])
                else:
                    self._pending = data[at:]
                return
            self._on_record(data[at + len(RECORD_PREFIX) : end])
            data = data[end + 1 :]

    def _keep(self, chunk: bytes) -> None:
        kept = chunk[: max(self._room, 0)]
        self._file.write(kept)
        self._room -= len(kept)
        self._dropped += len(chunk) - len(kept)
        self._tail += chunk
        del self._tail[: max(len(self._tail) - self._tail_bytes, 0)]

    def close(self) -> str:
        """Close the file, noting what was dropped; return the tail."""
        self._keep(self._pending)
        if self._dropped:
            note = f"\n[archlab: {self._dropped} bytes of output dropped; the last ones follow]\n"
            self._file.write(note.encode() + self._tail)
        self._file.close()
        return self._tail.decode("utf-8", errors="replace")


def _prefix_cut_at_end(data: bytes) -> int:
    """How many bytes at the end of `data` may begin a record marker cut by the pipe."""
    start = data.rfind(RECORD_PREFIX[:1], max(len(data) - len(RECORD_PREFIX) + 1, 0))
    return len(data) - start if start != -1 and RECORD_PREFIX.startswith(data[start:]) else 0


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
    trial's clock and limits is due (every POLL_S without an exit descriptor)."""
    fds = [fd for fd in (out, exited) if fd is not None]
    wait_s = _WATCH_S if exited is not None else POLL_S
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
    watcher: Watcher | None = None,
) -> Outcome:
    """`supervise` for a child already started: the wall clock counts from now, and
    `early_output` (what it wrote before) opens the log. `watcher` gets the records in the
    child's output and may end it (exit reason `stopped`)."""
    started = time.monotonic()
    forced: ExitReason | None = None
    try:
        on_record = None if watcher is None else watcher.record
        log = _CappedLog(log_path, limits.log_bytes, tail_bytes, on_record)
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
                if forced is None and watcher is not None and watcher.stop():
                    forced = "stopped"
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


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
