"""The local executor: at most W real sandboxed trials at once, the same reports as the
inline path, failures contained; and each GPU trial pinned to its own device."""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archlab.config import load_settings
from archlab.errors import ArchlabError, ConfigError
from archlab.sandbox.basic import BasicLauncher
from archlab.sandbox.executor import (
    DevicePool,
    LocalExecutor,
    TrialRequest,
    make_executor,
    visible_gpus,
)
from archlab.sandbox.process import clean_env
from archlab.sandbox.protocol import Execution, Limits, Watcher
from archlab.sandbox.strict import StrictLauncher, gpu_device_binds
from archlab.tasks.mqar import MQAR
from support import EMBED, TINY_MQAR, sandbox_trial

CRASHING = """
def build_model(spec):
    raise RuntimeError("no model today")
"""


class CountingLauncher(BasicLauncher):
    """The basic sandbox, counting the trials it runs at the same time."""

    def __init__(self) -> None:
        super().__init__()
        self.running = self.most = 0
        self._lock = threading.Lock()

    def run_harness(
        self, trial_dir: Path, limits: Limits, watcher: Watcher | None = None
    ) -> Execution:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return super().run_harness(trial_dir, limits, watcher)
        finally:
            with self._lock:
                self.running -= 1


def _request(task: MQAR, trial_id: str, source: str, seed: int = 0, **extra: Any) -> TrialRequest:
    return TrialRequest(
        trial_id=trial_id, stage="proxy", seed=seed, source=source, budget=task.budgets["proxy"],
        task_name="mqar", task_options=TINY_MQAR, data_seed=0, threads=1,
        memory_bytes=6 * 2**30, **extra,
    )  # fmt: skip


def _executor(task: MQAR, root: Path, workers: int, **extra: Any) -> LocalExecutor:
    data = task.data(0)
    return LocalExecutor(CountingLauncher(), root, workers, tasks=lambda _: (task, data), **extra)


@pytest.mark.slow
def test_local_executor_runs_at_most_w_trials_and_reports_as_inline(
    tiny_task: MQAR, tmp_path: Path
) -> None:
    executor = _executor(tiny_task, tmp_path / "trials", workers=2)
    source = tiny_task.baseline_source()
    requests = [_request(tiny_task, f"t{seed}", source, seed=seed) for seed in range(4)]
    with ThreadPoolExecutor(4) as callers:  # four lanes asking at once
        reports = list(callers.map(executor.run, requests))
    assert isinstance(executor.launcher, CountingLauncher)
    assert executor.launcher.most == 2
    assert [r.status for r in reports] == ["ok"] * 4
    assert {r.isolation for r in reports} == {"basic"}
    assert all((tmp_path / "trials" / f"t{seed}" / "log.txt").is_file() for seed in range(4))

    inline = sandbox_trial(tiny_task, tmp_path / "inline", source)
    pooled = reports[0]  # seed 0, like the inline trial
    assert pooled.n_params == inline.n_params
    assert pooled.loss_curve == inline.loss_curve
    assert [s for s, _ in pooled.checkpoints] == [s for s, _ in inline.checkpoints]
    for (_, ours), (_, theirs) in zip(pooled.checkpoints, inline.checkpoints, strict=True):
        assert np.array_equal(ours, theirs)
    assert not np.array_equal(reports[1].checkpoints[-1][1], pooled.checkpoints[-1][1])


@pytest.mark.slow
def test_a_failing_trial_does_not_poison_the_pool(tiny_task: MQAR, tmp_path: Path) -> None:
    executor = _executor(tiny_task, tmp_path, workers=1)
    crashed = executor.run(_request(tiny_task, "bad", CRASHING))
    assert (crashed.status, crashed.error_class) == ("error", "build")
    with pytest.raises(ArchlabError, match="asks for 1 GPU"):  # no GPU in this pool
        executor.run(_request(tiny_task, "gpu", CRASHING, gpus=1))
    # the single slot came back both times
    assert executor.run(_request(tiny_task, "good", tiny_task.baseline_source())).status == "ok"


def test_the_device_pool_lends_each_trial_its_own_devices() -> None:
    pool = DevicePool([3, 5])
    with pool.take(1) as first, pool.take(1) as second:
        assert sorted(first + second) == [3, 5]
        waited: list[tuple[int, ...]] = []

        def third() -> None:
            with pool.take(1) as devices:
                waited.append(devices)

        late = threading.Thread(target=third)
        late.start()
        time.sleep(0.2)
        assert waited == []  # both devices are lent out
    late.join(timeout=5)
    assert len(waited) == 1 and waited[0][0] in (3, 5)
    with pool.take(2) as both, pool.take(0) as none:
        assert sorted(both) == [3, 5] and none == ()
    with pytest.raises(ArchlabError, match="asks for 3 GPU"), pool.take(3):
        pass


def test_a_shared_device_pool_packs_trials_onto_the_least_busy_device() -> None:
    pool = DevicePool([0, 1], share=2)
    with pool.take(1) as a, pool.take(1) as b:
        assert sorted(a + b) == [0, 1]  # spread first
        with pool.take(1) as c, pool.take(1) as d:
            assert sorted(a + b + c + d) == [0, 0, 1, 1]  # then two on each
            waited: list[tuple[int, ...]] = []

            def fifth() -> None:
                with pool.take(1) as devices:
                    waited.append(devices)

            late = threading.Thread(target=fifth)
            late.start()
            time.sleep(0.2)
            assert waited == []  # four trials fill two devices shared by two
        late.join(timeout=5)
        assert len(waited) == 1 and waited[0][0] in (0, 1)
        with pytest.raises(ArchlabError, match="asks for 3 GPU"), pool.take(3):
            pass


def test_trials_per_gpu_needs_one_gpu_per_trial_and_reaches_the_harness(
    tiny_task: MQAR, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="needs gpus_per_trial = 1, not 0"):
        load_settings(flags={"executor": {"trials_per_gpu": 4}})
    settings = load_settings(flags={"executor": {"trials_per_gpu": 4, "gpus_per_trial": 1}})
    assert settings.executor.trials_per_gpu == 4
    # what the trusted side hands the harness, which caps the trial's GPU memory with it
    report = sandbox_trial(
        tiny_task, tmp_path / "t", EMBED, "smoke", gpu_share=0.25, precision="fp32"
    )
    assert report.status == "ok", report.message
    trial = json.loads((tmp_path / "t" / "trial.json").read_text())
    assert (trial["gpu_share"], trial["precision"]) == (0.25, "fp32")


def test_visible_gpus_from_the_environment_or_dev(tmp_path: Path) -> None:
    for name in ("nvidia1", "nvidia0", "nvidia12", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).touch()
    assert visible_gpus({}, tmp_path) == (0, 1, 12)
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 3"}, tmp_path) == (2, 3)
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, tmp_path) == ()
    with pytest.raises(ArchlabError, match="not UUIDs"):
        visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-8f2c1e0a"}, tmp_path)


def test_a_gpu_trial_sees_only_its_own_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LD_LIBRARY_PATH", "/usr/local/nvidia/lib64")
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).touch()
    binds = gpu_device_binds((1,), tmp_path)
    assert binds == [
        *("--dev-bind", str(tmp_path / "nvidia1"), "/dev/nvidia1"),
        *("--dev-bind", str(tmp_path / "nvidiactl"), "/dev/nvidiactl"),
        *("--dev-bind", str(tmp_path / "nvidia-uvm"), "/dev/nvidia-uvm"),
    ]
    assert gpu_device_binds(()) == []
    env = clean_env(tmp_path, 1, (1,))
    assert (env["CUDA_VISIBLE_DEVICES"], env["CUDA_DEVICE_ORDER"]) == ("1", "PCI_BUS_ID")
    assert env["LD_LIBRARY_PATH"] == "/usr/local/nvidia/lib64"  # the driver, where it is said
    assert not {"CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH"} & set(clean_env(tmp_path, 1))

    # in the strict sandbox's argv the binds come after the fresh /dev they add to
    limits = Limits(wall_s=10, memory_bytes=2**30, gpus=(1,))
    argv = StrictLauncher()._bwrap_args(tmp_path, limits, seccomp_fd=3)
    dev = argv.index("--dev")
    assert argv[dev + 2 : dev + 5] == ["--dev-bind", "/dev/nvidia1", "/dev/nvidia1"]
    assert "/dev/nvidia0" not in argv
    setenv = [argv[i + 1 : i + 3] for i, a in enumerate(argv) if a == "--setenv"]
    assert ["CUDA_VISIBLE_DEVICES", "1"] in setenv


def test_make_executor_refuses_gpus_the_machine_lacks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    settings = load_settings(flags={"executor": {"gpus_per_trial": 1}})
    with pytest.raises(ArchlabError, match="gpus_per_trial = 1, but this machine has 0"):
        make_executor(settings, tmp_path)
    executor = make_executor(load_settings(flags={"executor": {"workers": 3}}), tmp_path)
    assert executor.workers == 3 and "3 local worker(s)" in executor.describe()


def test_the_ray_executor_without_ray_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without archlab[ray] has
    settings = load_settings(flags={"executor": {"kind": "ray"}})
    with pytest.raises(ArchlabError, match=r"pip install 'archlab\[ray\]'"):
        make_executor(settings, tmp_path)
