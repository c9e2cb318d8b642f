"""Executors: where trials run, and how many at once.

A lane hands the executor a `TrialRequest` and blocks until its `TrialReport` comes back;
many lanes (threads) may call `run` at once, and at most `workers` trials run at a time.

- `LocalExecutor`: each trial runs on this machine, supervised from the calling thread,
  behind a pool of `workers` slots; a trial that asks for a GPU gets its own device.
- `RayExecutor` (`archlab[ray]`): each trial is a Ray task asking for `threads` CPUs and
  `gpus` GPUs. The worker rebuilds the task and its data from the request (once per worker
  process), applies the sandbox itself, and sends the report back.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from archlab.config import Settings
from archlab.errors import ArchlabError
from archlab.sandbox.levels import make_launcher
from archlab.sandbox.protocol import Launcher
from archlab.sandbox.trial import StopRule, TrialReport, run_trial
from archlab.tasks.base import Budget, TokenData, TokenTask


@dataclass(frozen=True, eq=False)
class TrialRequest:
    """One trial, self-contained: a remote worker rebuilds the task and data from
    `task_name`, `task_options` and `data_seed`."""

    trial_id: str
    stage: str
    seed: int
    source: str
    budget: Budget
    task_name: str
    task_options: Mapping[str, Any]
    data_seed: int
    threads: int
    memory_bytes: int
    #: inputs for the causality probe's logits, if wanted
    probe_x: np.ndarray | None = None
    #: forward timings at the task's complexity lengths, if wanted
    complexity: bool = False
    gpus: int = 0
    #: ends the trial once its checkpoints so far say it cannot catch up (runs where the
    #: trial is supervised: on a Ray worker, it travels there)
    stop: StopRule | None = None
    #: the trained weights back in the report (from a Ray worker too: as bytes in it)
    weights: bool = False
    #: train on targets permuted across examples by this seed (the audit's control); None
    #: trains on the targets as they are
    shuffle_targets: int | None = None
    #: [executor] precision: how the forward passes compute
    precision: str = "auto"
    #: [executor] compile: the torch.compile mode of the training step, or off
    compile: str = "off"
    #: the share of each of its GPUs the trial gets (1 / [executor] trials_per_gpu): its
    #: GPU memory is capped at that share, and Ray schedules it as that much of a GPU
    gpu_share: float = 1.0


class Executor(Protocol):
    workers: int

    def describe(self) -> str:
        """Where trials run and under which sandbox, in words."""
        ...

    def run(self, request: TrialRequest) -> TrialReport:
        """Run one trial; blocks while all workers are busy. Safe to call from many threads."""
        ...

    def close(self) -> None: ...


#: the task and data a request names
TaskLoader = Callable[[TrialRequest], tuple[TokenTask, TokenData]]


@lru_cache(maxsize=4)
def _built(name: str, options: str, data_seed: int) -> tuple[TokenTask, TokenData]:
    from archlab.tasks import get_task  # the registry loads plugins: only when needed

    task = get_task(name, json.loads(options))
    return task, task.data(data_seed)


def rebuild_task(request: TrialRequest) -> tuple[TokenTask, TokenData]:
    """The request's task and data, built once per process."""
    options = json.dumps(dict(request.task_options), sort_keys=True)
    return _built(request.task_name, options, request.data_seed)


def execute(
    request: TrialRequest,
    launcher: Launcher,
    trial_dir: Path,
    task: TokenTask,
    data: TokenData,
    gpus: tuple[int, ...] = (),
) -> TrialReport:
    return run_trial(
        launcher=launcher, trial_dir=trial_dir, task=task, data=data, source=request.source,
        stage=request.stage, seed=request.seed, threads=request.threads,
        memory_bytes=request.memory_bytes, budget=request.budget, probe_x=request.probe_x,
        complexity=request.complexity, gpus=gpus, stop=request.stop,
        weights=request.weights, shuffle_targets=request.shuffle_targets,
        precision=request.precision, compile=request.compile, gpu_share=request.gpu_share,
    )  # fmt: skip


# --- GPUs ------------------------------------------------------------------------------


def visible_gpus(environ: Mapping[str, str], dev: Path = Path("/dev")) -> tuple[int, ...]:
    """This machine's GPU numbers: CUDA_VISIBLE_DEVICES if set, else the /dev/nvidiaN files.
    No CUDA is initialised for it."""
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        found = (re.fullmatch(r"nvidia(\d+)", path.name) for path in dev.glob("nvidia*"))
        return tuple(sorted(int(m[1]) for m in found if m))
    ids = [part.strip() for part in listed.split(",") if part.strip()]
    if not all(part.isdigit() for part in ids):
        raise ArchlabError(
            f"CUDA_VISIBLE_DEVICES={listed!r}: GPU trials need device numbers "
            "(each trial's sandbox exposes /dev/nvidiaN), not UUIDs"
        )
    return tuple(int(part) for part in ids)


class DevicePool:
    """GPU numbers lent to trials, up to `share` trials on each device at once: a trial
    waits until enough devices have room, and takes the least busy."""

    def __init__(self, devices: Sequence[int], share: int = 1) -> None:
        self.devices = tuple(devices)
        self.share = share
        self._busy = dict.fromkeys(self.devices, 0)
        self._changed = threading.Condition()

    def _room(self) -> list[int]:
        """Devices with room for one more trial, the least busy first."""
        room = [d for d in self.devices if self._busy[d] < self.share]
        return sorted(room, key=lambda d: self._busy[d])

    @contextlib.contextmanager
    def take(self, count: int) -> Iterator[tuple[int, ...]]:
        if count > len(self.devices):
            raise ArchlabError(
                f"a trial asks for {count} GPU(s); this machine has {len(self.devices)}"
            )
        with self._changed:
            self._changed.wait_for(lambda: len(self._room()) >= count)
            taken = tuple(self._room()[:count])
            for device in taken:
                self._busy[device] += 1
        try:
            yield taken
        finally:
            with self._changed:
                for device in taken:
                    self._busy[device] -= 1
                self._changed.notify_all()


# --- executors -----------------------------------------------------------------------------


class LocalExecutor:
    """Trials on this machine, at most `workers` at once, each in its caller's thread."""

    def __init__(
        self,
        launcher: Launcher,
        trials_root: Path,
        workers: int,
        gpus: Sequence[int] = (),
        tasks: TaskLoader = rebuild_task,
        trials_per_gpu: int = 1,
    ) -> None:
        self.launcher = launcher
        self.trials_root = trials_root
        self.workers = workers
        self.devices = DevicePool(gpus, trials_per_gpu)
        self._tasks = tasks
        self._slots = threading.BoundedSemaphore(workers)

    def describe(self) -> str:
        return f"{self.workers} local worker(s), sandbox {self.launcher.level}"

    def run(self, request: TrialRequest) -> TrialReport:
        task, data = self._tasks(request)
        with self._slots, self.devices.take(request.gpus) as gpus:
            trial_dir = self.trials_root / request.trial_id
            return execute(request, self.launcher, trial_dir, task, data, gpus)

    def close(self) -> None:
        """End the harnesses the launcher started ahead; the trials are all over."""
        self.launcher.close()


#: a Ray worker process's launchers, kept between its trials: (min level, log tail) -> launcher
_WORKER_LAUNCHERS: dict[tuple[str, int], Launcher] = {}


def _ray_trial(request: TrialRequest, min_level: str, log_tail_bytes: int) -> TrialReport:
    """A trial on a Ray worker: the worker's own sandbox, in its local scratch."""
    import ray

    key = (min_level, log_tail_bytes)
    if key not in _WORKER_LAUNCHERS:
        _WORKER_LAUNCHERS[key] = make_launcher(min_level, log_tail_bytes)
    task, data = rebuild_task(request)
    gpus = tuple(int(n) for n in ray.get_gpu_ids())  # the devices Ray gave this task
    scratch = Path(tempfile.mkdtemp(prefix=f"archlab-{request.trial_id}-"))
    try:
        return execute(request, _WORKER_LAUNCHERS[key], scratch / "trial", task, data, gpus)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ArchlabError(
            "the Ray executor needs the ray package: pip install 'archlab[ray]'"
        ) from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail fast where nothing listens at a HOST:PORT address: Ray itself retries for
    minutes. Other forms (ray://..., auto) are left to Ray."""
    host, _, port = address.rpartition(":")
    if not host or "/" in host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as e:
        raise ArchlabError(
            f"cannot reach a Ray cluster at {address}: {e.strerror or e} "
            "(start one with `ray start --head`)"
        ) from None


class RayExecutor:
    """Trials as Ray tasks, at most `workers` in flight; `address` None starts (or joins)
    a Ray instance on this machine."""

    def __init__(
        self, workers: int, address: str | None, min_level: str, log_tail_bytes: int
    ) -> None:
        self._ray = ray = _import_ray()
        self.workers = workers
        self.address = address
        self._args = (min_level, log_tail_bytes)
        self._owned = not ray.is_initialized()
        if self._owned:
            if address:
                _check_reachable(address)
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"at {address}" if address else "on this machine"
                raise ArchlabError(f"cannot reach a Ray cluster {where}: {e}") from None
        self._trial = ray.remote(_ray_trial)
        self._slots = threading.BoundedSemaphore(workers)

    def describe(self) -> str:
        where = self.address or "a Ray instance on this machine"
        return f"{self.workers} Ray worker(s) at {where}, sandbox on each worker"

    def run(self, request: TrialRequest) -> TrialReport:
        with self._slots:
            gpus = request.gpus * request.gpu_share  # Ray packs fractions of a GPU itself
            ref = self._trial.options(num_cpus=request.threads, num_gpus=gpus).remote(
                request, *self._args
            )
            try:
                report: TrialReport = self._ray.get(ref)
            except self._ray.exceptions.RayTaskError as e:
                if isinstance(e.cause, ArchlabError):  # the worker refused: its sandbox level
                    raise ArchlabError(f"on a Ray worker: {e.cause}") from None
                raise
            except BaseException:
                self._ray.cancel(ref)  # interrupts the worker, whose supervisor ends the trial
                raise
            return report

    def close(self) -> None:
        if self._owned:
            self._ray.shutdown()


def make_executor(
    settings: Settings, trials_root: Path, tasks: TaskLoader = rebuild_task
) -> Executor:
    """The configured executor. Locally, `tasks` hands trials the live task and data."""
    config, sandbox = settings.executor, settings.sandbox
    if config.kind == "ray":
        return RayExecutor(
            config.workers, config.ray_address, sandbox.level, sandbox.log_tail_bytes
        )
    gpus = visible_gpus(os.environ) if config.gpus_per_trial else ()
    if config.gpus_per_trial > len(gpus):
        raise ArchlabError(
            f"executor.gpus_per_trial = {config.gpus_per_trial}, but this machine has "
            f"{len(gpus)} GPU(s) visible"
        )
    launcher = make_launcher(sandbox.level, sandbox.log_tail_bytes)
    return LocalExecutor(launcher, trials_root, config.workers, gpus, tasks, config.trials_per_gpu)
