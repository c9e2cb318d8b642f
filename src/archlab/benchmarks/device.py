"""The GPU check (benchmarks/device_check.py): what a trial costs on an NVIDIA GPU, how many
fit on one, and whether the sandbox still holds with the device in it.

Each part returns its figures, or `{"skipped": why}` where there is no GPU. `smoke` runs
the same code on the CPU at toy sizes (the test suite's check that the script works before
a GPU is ever lent); its figures mean nothing.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from archlab.benchmarks.common import TINY_MQAR
from archlab.benchmarks.sandbox import InProcessLauncher
from archlab.sandbox.executor import LocalExecutor, TrialRequest
from archlab.sandbox.levels import make_launcher
from archlab.sandbox.protocol import Launcher
from archlab.sandbox.strict import strict_missing
from archlab.sandbox.trial import TrialReport, run_trial
from archlab.tasks.mqar import MQAR

NO_GPU = "no NVIDIA GPU here (torch.cuda.is_available() is False): the GPU checks did not run"
#: the trial shares the packing measures (trials sharing one GPU)
PACKINGS = (1, 2, 4, 8)
#: a task setting sized for a GPU: a bigger vocabulary and longer sequences than the CPU's
GPU_MQAR: dict[str, Any] = {
    "vocab_size": 2048,
    "seq_len": 256,
    "num_kv_pairs": 32,
    "train_examples": 8192,
    "eval_examples": 64,
}
#: a setting where the baseline's step is the GPU's work, not its kernel launches: longer
#: sequences and a bigger vocabulary (its head and loss dominate)
LARGE_MQAR: dict[str, Any] = {
    "vocab_size": 8192,
    "seq_len": 1024,
    "num_kv_pairs": 128,
    "train_examples": 2048,
    "eval_examples": 64,
}
#: the training time of the trial whose sandbox overhead is measured
TRIAL_S = 30


def gpu() -> dict[str, Any] | None:
    """The first GPU: its name, memory and bf16 support; None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {
        "name": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "count": torch.cuda.device_count(),
        "bf16": torch.cuda.is_bf16_supported(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def _report(
    launcher: Launcher, task: MQAR, folder: Path, gpus: tuple[int, ...], **extra: Any
) -> TrialReport:
    """One proxy trial of the baseline, which must succeed."""
    report = run_trial(
        launcher=launcher, trial_dir=folder / "trial", task=task, data=task.data(0),
        source=task.baseline_source(), stage="proxy", seed=0, threads=1,
        memory_bytes=16 * 2**30, gpus=gpus, **extra,
    )  # fmt: skip
    if report.status != "ok":
        raise RuntimeError(f"the device check's trial failed: {report.message}")
    return report


def _trial(
    launcher: Launcher,
    task: MQAR,
    folder: Path,
    gpus: tuple[int, ...],
    training_only: bool = False,
    **extra: Any,
) -> float:
    """One proxy trial of the baseline: its whole wall time, or (`training_only`) its
    training loop's (the harness's clock: data, model and evaluation left out)."""
    started = time.monotonic()
    report = _report(launcher, task, folder, gpus, **extra)
    return report.train_time_s if training_only else time.monotonic() - started


def _task(smoke: bool, steps: int, setting: dict[str, Any] = GPU_MQAR) -> MQAR:
    """The baseline's task at `steps` steps with one checkpoint: what is timed is training."""
    task = MQAR(**(TINY_MQAR if smoke else setting) | {"proxy_steps": steps})
    task.budgets["proxy"] = replace(
        task.budgets["proxy"], eval_every=steps, time_limit_s=max(600, TRIAL_S * 10)
    )
    return task


def sandbox_ratio(smoke: bool) -> dict[str, Any]:
    """The MQAR baseline's proxy trial through the sandbox against the same training in
    this process (medians of 2, interleaved), at a trial of about TRIAL_S seconds. The
    sandbox's first trial, whose harness starts cold (a run's later trials find theirs
    started while the one before trained), is timed apart."""
    gpus = () if smoke else (0,)
    sandbox, in_process = make_launcher("basic", 4000), InProcessLauncher()
    times: dict[str, list[float]] = {"sandbox": [], "in_process": []}
    with tempfile.TemporaryDirectory(prefix="archlab-device-") as folder:
        probe = 8 if smoke else 1000  # CUDA's and torch's set-up paid once, and a step's time
        _trial(in_process, _task(smoke, probe // 4), Path(folder), gpus)
        step_s = _trial(in_process, _task(smoke, probe), Path(folder), gpus) / probe
        task = _task(smoke, 16 if smoke else max(int(TRIAL_S / step_s), probe))
        cold = _trial(sandbox, task, Path(folder), gpus)
        for _ in range(2):
            for name, launcher in (("in_process", in_process), ("sandbox", sandbox)):
                times[name].append(_trial(launcher, task, Path(folder), gpus))
    sandboxed, reference = (statistics.median(times[k]) for k in ("sandbox", "in_process"))
    return {
        "sandbox_level": sandbox.level,
        "trial_steps": task.budgets["proxy"].steps,
        "in_process_trial_s": reference,
        "sandbox_trial_s": sandboxed,
        "sandbox_overhead_ratio": sandboxed / reference,
        "sandbox_cold_trial_s": cold,
    }


def step_time_by_precision(smoke: bool) -> dict[str, Any]:
    """Seconds per training step of the baseline, bf16 against fp32, at the GPU-sized
    setting and at the large one (in this process: the sandbox is not what is measured)."""
    gpus = () if smoke else (0,)
    figures: dict[str, Any] = {}
    for name, setting, steps in (("", GPU_MQAR, 400), ("large_", LARGE_MQAR, 100)):
        steps = 8 if smoke else steps
        task = _task(smoke, steps, setting)
        seconds: dict[str, float] = {}
        with tempfile.TemporaryDirectory(prefix="archlab-device-") as folder:
            for precision in ("fp32", "bf16", "fp32", "bf16"):  # the first pair warms up
                train_s = _trial(
                    InProcessLauncher(), task, Path(folder), gpus,
                    training_only=True, precision=precision,
                )  # fmt: skip
                seconds[precision] = train_s / steps
        figures |= {
            f"{name}step_s_fp32": seconds["fp32"],
            f"{name}step_s_bf16": seconds["bf16"],
            f"{name}bf16_step_ratio": seconds["bf16"] / seconds["fp32"],
        }
    return figures


def compiled_step_time(smoke: bool) -> dict[str, Any]:
    """Seconds per training step with [executor] compile against without, and the seconds
    each trial spent compiling, through the sandbox (each trial compiles afresh, as a run's
    do): at the GPU-sized setting in bf16 (torch.compile's default mode, and with CUDA
    graphs), and at the large one, where the bf16 loss no longer copies its logits to fp32."""
    gpus = () if smoke else (0,)
    launcher = make_launcher("basic", 4000)
    settings = (
        ("gpu", GPU_MQAR, 400, (("bf16", "off"), ("bf16", "default"), ("bf16", "reduce-overhead"))),
        ("large", LARGE_MQAR, 100, (("fp32", "default"), ("bf16", "default"))),
    )
    step_s: dict[str, float] = {}
    compile_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="archlab-device-") as folder:
        for name, setting, steps, variants in settings[:1] if smoke else settings:
            steps = 8 if smoke else steps
            task = _task(smoke, steps, setting)
            for precision, mode in variants[:2] if smoke else variants:
                report = _report(
                    launcher, task, Path(folder), gpus, precision=precision, compile=mode
                )
                key = f"{name} {precision} {mode}"
                # a compiled trial's step 2 is its compiling, left out of its clock
                step_s[key] = report.train_time_s / (steps - (mode != "off"))
                if found := re.search(r"torch\.compile: ([\d.]+) s", report.log_tail):
                    compile_s[key] = float(found.group(1))
    return {"step_s": step_s, "compile_s": compile_s}


def packing(smoke: bool) -> dict[str, Any]:
    """Trials per hour with 1, 2, 4 and 8 small proxy trials sharing one GPU (each capped at
    its share of the memory), through the sandbox, each harness started ahead."""
    steps = 16 if smoke else 1000
    task = MQAR(**TINY_MQAR | {"proxy_steps": steps})
    data = task.data(0)
    per_hour: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="archlab-device-") as folder:
        for share in PACKINGS[:2] if smoke else PACKINGS:
            launcher = make_launcher("basic", 4000, prewarm=True)
            executor = LocalExecutor(
                launcher, Path(folder) / f"p{share}", share, () if smoke else (0,),
                tasks=lambda _: (task, data), trials_per_gpu=share,
            )  # fmt: skip

            def one(seed: int, share: int = share, executor: LocalExecutor = executor) -> None:
                report = executor.run(
                    TrialRequest(
                        trial_id=f"p{share}-{seed}", stage="proxy", seed=seed,
                        source=task.baseline_source(), budget=task.budgets["proxy"],
                        task_name="mqar", task_options={},
                        data_seed=0, threads=1, memory_bytes=16 * 2**30,
                        gpus=0 if smoke else 1, gpu_share=1 / share,
                    )
                )  # fmt: skip
                if report.status != "ok":
                    raise RuntimeError(f"a packed trial failed: {report.message}")

            try:
                with ThreadPoolExecutor(max_workers=share) as lanes:
                    list(lanes.map(one, range(share)))  # each lane's first, unmeasured
                    started = time.monotonic()
                    list(lanes.map(one, range(share, 3 * share)))
                per_hour[str(share)] = 3600 * 2 * share / (time.monotonic() - started)
            finally:
                executor.close()
    best = max(per_hour, key=lambda k: per_hour[k])
    return {
        "packing_trial_steps": steps,
        "trials_per_hour": per_hour,
        "best_trials_per_gpu": int(best),
        "packing_gain": per_hour[best] / per_hour["1"],
    }


def containment(smoke: bool) -> dict[str, Any]:
    """The red team under the strict sandbox with the GPU handed to every trial: the
    pytest summary line, and whether it passed."""
    root = Path(__file__).resolve().parents[3]
    suite = root / "tests" / "redteam"
    if not suite.is_dir():
        return {"skipped": f"the red-team suite is not here ({suite}): run from a checkout"}
    selection = "benign_control and strict" if smoke else "strict"
    env = {**os.environ, "REDTEAM_GPUS": "" if smoke else "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:randomly", "-k", selection],
        cwd=root, env=env, capture_output=True, text=True, timeout=420,
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    if proc.returncode == 0 and " passed" not in summary:  # every attack skipped: not a pass
        why = "; ".join(strict_missing()) or "every attack was skipped"
        return {"skipped": f"the strict sandbox is unavailable here: {why}", "summary": summary}
    return {"redteam_passed": proc.returncode == 0, "redteam_summary": summary}


PARTS = {
    "sandbox": sandbox_ratio,
    "precision": step_time_by_precision,
    "compile": compiled_step_time,
    "packing": packing,
    "containment": containment,
}


def device_check(
    smoke: bool = False,
    parts: tuple[str, ...] = tuple(PARTS),
    done: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The parts named; without a GPU (and not `smoke`), each says why it did not run.
    `done` is handed the figures so far after each part: a lease that ends during a later
    part keeps them."""
    found = gpu()
    if found:  # the in-process trials train where the harness sees a device named
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "0")
    result: dict[str, Any] = {"gpu": found, "smoke": smoke}
    for name in parts:
        part = PARTS[name]
        started = time.monotonic()
        if found is None and not smoke:
            result[name] = {"skipped": NO_GPU}
        else:
            try:
                result[name] = {**part(smoke), "seconds": round(time.monotonic() - started, 1)}
            except Exception as e:  # one part's failure is a finding; the others still run
                result[name] = {"error": f"{type(e).__name__}: {e}"}
        if done is not None:
            done(result)
    return result
