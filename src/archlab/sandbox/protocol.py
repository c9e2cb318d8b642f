"""What every isolation level shares with its callers: the limits a trial runs under, how
its run ended (`Execution`, `ExitReason`), the `Launcher` protocol that trials and
executors program against, and the log file's name in a trial directory. Types only, so
that callers need not import any level, and the levels need not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

#: why a trial ended; `pids`: it hit the process limit, `policy`: it made a forbidden call,
#: `stopped`: its watcher ended it (a proxy curve that cannot catch up)
ExitReason = Literal["ok", "timeout", "oom", "pids", "policy", "crash", "stopped"]
LOG_FILE = "log.txt"


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


class Watcher(Protocol):
    """The trusted side's eye on a trial while it runs: the records the harness prints (as
    untrusted as the rest of its output), and whether to end the trial now."""

    def record(self, payload: bytes) -> None: ...

    def stop(self) -> bool: ...


class Launcher(Protocol):
    level: str

    def run(self, argv: list[str], trial_dir: Path, limits: Limits) -> Execution:
        """Run any command with the trial directory's files as its inputs."""
        ...

    def run_harness(
        self, trial_dir: Path, limits: Limits, watcher: Watcher | None = None
    ) -> Execution:
        """Run the harness on the trial laid out in `trial_dir`, `watcher` looking on."""
        ...

    def close(self) -> None:
        """End the harnesses started ahead; the launcher still works afterwards."""
        ...
