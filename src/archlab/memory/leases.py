"""Which runs a live process is driving. The process holds an exclusive flock on
`leases/RUN_ID.lock` in the home for as long as it drives the run; the kernel drops the
lock when the process ends however it ends (kill -9 and power loss included), so a run
whose stored status says running while its lock is free was killed, and nobody can
resume a run that is still being driven."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from archlab.errors import ArchlabError

LEASES_DIR = "leases"
#: shown for a run whose status says running but which no process drives
KILLED = "killed"


def _lock_file(home: Path, run_id: str) -> Path:
    return home / LEASES_DIR / f"{run_id}.lock"


@contextmanager
def hold(home: Path, run_id: str) -> Iterator[None]:
    """Drive `run_id` in this process; refused while another process drives it."""
    path = _lock_file(home, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise ArchlabError(
                f"run {run_id} is still running (process {holder}); stop it before resuming"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def forget(home: Path, run_id: str) -> None:
    """Remove a removed run's lease file."""
    _lock_file(home, run_id).unlink(missing_ok=True)


def is_driven(home: Path, run_id: str) -> bool:
    """Whether some process holds the run's lease now (this one included)."""
    try:
        fd = os.open(_lock_file(home, run_id), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def shown_status(home: Path, run: dict[str, Any]) -> dict[str, Any]:
    """The run with the status a reader should see: `killed` for a running one that no
    process drives (`archlab resume` continues it)."""
    if run["status"] == "running" and not is_driven(home, run["run_id"]):
        return {**run, "status": KILLED}
    return run
