"""Per-trial cgroups: the kernel enforces a trial's memory, process and CPU limits, and its
counters tell an out-of-memory kill or a hit process limit apart from a crash.

cgroup v1 (one hierarchy per controller) and v2 (one unified hierarchy) both exist in the
wild, often side by side with every controller bound to one of them: the controllers are
taken from v2 where it has them all, else from their v1 hierarchies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

CONTROLLERS = ("memory", "pids", "cpu")
PREFIX = "archlab-"
_CPU_PERIOD_US = 100_000


class CgroupUnavailable(Exception):
    """No writable hierarchy offers the memory, pids and cpu controllers."""


@dataclass(frozen=True)
class Hierarchy:
    """Where trial cgroups are made: for each controller, the directory of our own cgroup."""

    version: Literal[1, 2]
    parents: dict[str, Path]

    def describe(self) -> str:
        return f"cgroup v{self.version} under " + ", ".join(sorted(map(str, self.parents.values())))


def _mounts(mountinfo: str) -> list[tuple[str, Path, str, set[str]]]:
    """(root, mount point, file system type, super options) of each cgroup mount."""
    found = []
    for line in mountinfo.splitlines():
        fields, _, tail = line.partition(" - ")
        parts, tail_parts = fields.split(), tail.split()
        if len(parts) >= 5 and len(tail_parts) >= 3 and tail_parts[0] in ("cgroup", "cgroup2"):
            found.append((parts[3], Path(parts[4]), tail_parts[0], set(tail_parts[2].split(","))))
    return found


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """Our cgroup's path per controller; the key "" is the unified (v2) hierarchy."""
    paths = {}
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _inside(mount_point: Path, root: str, path: str) -> Path:
    return mount_point / os.path.relpath(path, root)


def locate(mountinfo: str, proc_cgroup: str) -> Hierarchy:
    """Our own cgroup in the hierarchy that offers every controller we limit."""
    own = _own_paths(proc_cgroup)
    mounts = _mounts(mountinfo)
    withheld = ""  # what v2 controllers our cgroup's ancestors keep from it, and the fix
    for root, point, fstype, _ in mounts:
        if fstype == "cgroup2" and "" in own:
            folder = _inside(point, root, own[""])
            offered = _controllers(folder)
            if set(CONTROLLERS) <= offered:
                return Hierarchy(2, dict.fromkeys(CONTROLLERS, folder))
            kept = [c for c in CONTROLLERS if c not in offered and c in _controllers(point)]
            if kept and folder != point:
                plus = " ".join(f"+{c}" for c in kept)
                withheld = (
                    f"cgroup v2 has {', '.join(kept)} at {point} but does not pass them "
                    f"down to this process's cgroup {folder}: as root, `echo '{plus}' > "
                    f"DIR/cgroup.subtree_control` for each DIR from {point} down to "
                    f"{folder.parent}, or run archlab in a delegated cgroup "
                    "(`systemd-run --scope -p Delegate=yes archlab ...`)"
                )
    parents = {
        name: _inside(point, root, own[name])
        for root, point, fstype, options in mounts
        if fstype == "cgroup"
        for name in (*CONTROLLERS, "cpuacct")  # cpuacct, if mounted, counts CPU time
        if name in options and name in own
    }
    missing = [name for name in CONTROLLERS if name not in parents]
    if missing:
        raise CgroupUnavailable(
            withheld or f"no mounted cgroup hierarchy offers the {', '.join(missing)} controller(s)"
        )
    return Hierarchy(1, parents)


def _controllers(folder: Path) -> set[str]:
    """The controllers a v2 cgroup offers its children (none if it cannot be read)."""
    try:
        return set((folder / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


def _enable_v2_controllers(folder: Path) -> None:
    """Let child cgroups of `folder` have the controllers. A v2 cgroup holding processes
    cannot hand controllers down, so when we are alone in it we step into a leaf first
    (as systemd's delegated services do)."""
    subtree = folder / "cgroup.subtree_control"
    wanted = " ".join(f"+{name}" for name in CONTROLLERS)
    try:
        try:
            subtree.write_text(wanted)
        except OSError:
            if (folder / "cgroup.procs").read_text().split() != [str(os.getpid())]:
                raise
            leaf = folder / f"{PREFIX}orchestrator-{os.getpid()}"
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
            subtree.write_text(wanted)
    except OSError as e:
        raise CgroupUnavailable(
            f"cannot give child cgroups of {folder} the {', '.join(CONTROLLERS)} controllers "
            f"({e.strerror}): run archlab alone in a delegated cgroup, e.g. "
            "`systemd-run --scope -p Delegate=yes archlab ...`"
        ) from None


@cache
def hierarchy() -> Hierarchy:
    """Where this process makes trial cgroups; raises CgroupUnavailable with the reason."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        found = locate(mountinfo, Path("/proc/self/cgroup").read_text())
    except OSError as e:
        raise CgroupUnavailable(f"cannot read this process's cgroups: {e.strerror}") from None
    not_writable = sorted({str(p) for p in found.parents.values() if not os.access(p, os.W_OK)})
    if not_writable:
        raise CgroupUnavailable(
            f"cannot create cgroups under {', '.join(not_writable)} (read-only or not ours)"
        )
    if found.version == 2:
        _enable_v2_controllers(found.parents["memory"])
    return found


def _counter(path: Path, key: str) -> int:
    """A `key value` line of a cgroup events or control file; 0 when it is not there."""
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return 0


class TrialCgroup:
    """One trial's cgroup: a directory per controller on v1, a single one on v2."""

    def __init__(self, where: Hierarchy, memory_bytes: int, max_processes: int, cpus: int):
        self.version = where.version
        name = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.dirs = {c: parent / name for c, parent in where.parents.items()}
        for parent in set(where.parents.values()):
            _remove_stale(parent)
        for folder in self._folders:
            folder.mkdir()
        try:
            self._set_limits(memory_bytes, max_processes, cpus)
        except OSError:
            self.remove()
            raise

    @property
    def _folders(self) -> list[Path]:
        return sorted(set(self.dirs.values()))

    def _write(self, controller: str, file: str, value: object, optional: bool = False) -> None:
        path = self.dirs[controller] / file
        if optional and not path.exists():
            return
        path.write_text(str(value))

    def _set_limits(self, memory_bytes: int, max_processes: int, cpus: int) -> None:
        self._write("pids", "pids.max", max_processes)
        quota = cpus * _CPU_PERIOD_US
        if self.version == 2:
            self._write("memory", "memory.max", memory_bytes)
            self._write("memory", "memory.swap.max", 0, optional=True)
            self._write("memory", "memory.oom.group", 1, optional=True)  # kill all, not one
            self._write("cpu", "cpu.max", f"{quota} {_CPU_PERIOD_US}")
        else:
            self._write("memory", "memory.limit_in_bytes", memory_bytes)
            # memory plus swap no larger than memory: the trial cannot swap
            self._write("memory", "memory.memsw.limit_in_bytes", memory_bytes, optional=True)
            self._write("cpu", "cpu.cfs_period_us", _CPU_PERIOD_US)
            self._write("cpu", "cpu.cfs_quota_us", quota)

    def procs_files(self) -> list[Path]:
        """Where a process writes its pid to move in; its children are born inside."""
        return [folder / "cgroup.procs" for folder in self._folders]

    def oom_kills(self) -> int:
        events = "memory.events" if self.version == 2 else "memory.oom_control"
        return _counter(self.dirs["memory"] / events, "oom_kill")

    def hit_process_limit(self) -> bool:
        return _counter(self.dirs["pids"] / "pids.events", "max") > 0

    def peak_memory_bytes(self) -> int | None:
        peak = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int((self.dirs["memory"] / peak).read_text())
        except (OSError, ValueError):
            return None

    def cpu_seconds(self) -> float | None:
        """CPU time of every process the trial ran, reaped or not."""
        if self.version == 2:
            return _counter(self.dirs["cpu"] / "cpu.stat", "usage_usec") / 1e6
        if "cpuacct" not in self.dirs:
            return None
        try:
            return int((self.dirs["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return None

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.dirs["pids"] / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def kill(self, timeout_s: float = 5.0) -> None:
        """SIGKILL everything inside and wait until it is gone. A process cannot fork once
        SIGKILL is pending, so each round leaves fewer to kill."""
        kill_file = self.dirs["pids"] / "cgroup.kill"
        deadline = time.monotonic() + timeout_s
        while (pids := self.pids()) and time.monotonic() < deadline:
            if self.version == 2 and kill_file.exists():
                kill_file.write_text("1")
            else:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def remove(self) -> None:
        for folder in self._folders:
            for _ in range(100):  # the kernel may still be tearing the last process down
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


def _remove_stale(parent: Path) -> None:
    """Remove the empty trial cgroups of archlab processes that died without cleaning up."""
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            owner = entry.name.removeprefix(PREFIX).split("-")[0]
            stale = owner.isdigit() and not Path(f"/proc/{owner}").exists()
            if entry.name.startswith(PREFIX) and stale:
                with contextlib.suppress(OSError):
                    entry.rmdir()
