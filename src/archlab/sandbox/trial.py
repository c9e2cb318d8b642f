"""One trial, seen from the trusted side: lay out the trial directory, launch the harness,
and read back only a size-capped, validated JSON result. Nothing is imported from, or
unpickled out of, the trial directory."""

from __future__ import annotations

import base64
import json
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archlab.eval.tasks.base import Budget, TokenData, TokenTask
from archlab.sandbox.harness import RESULT_FILE
from archlab.sandbox.launcher import Launcher, Limits, harness_argv

MAX_RESULT_BYTES = 64 * 2**20


@dataclass
class TrialReport:
    """What a trial produced. `checkpoints` are held-out predictions, not yet scored."""

    status: str  # ok | error
    error_class: str | None = None
    message: str | None = None
    exit_reason: str = "ok"
    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0
    peak_rss_mb: float = 0.0
    n_params: int | None = None
    loss_curve: list[dict[str, float]] = field(default_factory=list)
    checkpoints: list[tuple[int, np.ndarray]] = field(default_factory=list)
    log_tail: str = ""


class ResultError(ValueError):
    """The child's result file is missing, oversized or malformed."""


def read_result(trial_dir: Path) -> dict[str, Any]:
    path = trial_dir / RESULT_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise ResultError("the trial wrote no result") from None
    except OSError as e:
        raise ResultError(f"the result file cannot be opened safely: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ResultError("the result is not a regular file")
        if info.st_size > MAX_RESULT_BYTES:
            raise ResultError(f"the result file is {info.st_size} bytes, over the cap")
        raw = f.read(MAX_RESULT_BYTES + 1)
    try:
        result = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultError(f"the result is not valid JSON: {e}") from None
    if not isinstance(result, dict):
        raise ResultError("the result is not a JSON object")
    return result


def decode_predictions(obj: Any, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(obj, dict) or obj.get("dtype") != "int32" or obj.get("shape") != list(shape):
        raise ResultError(f"predictions must be int32 of shape {list(shape)}")
    try:
        raw = base64.b64decode(obj["b64"], validate=True)
        return np.frombuffer(raw, dtype=np.int32).reshape(shape)
    except (ValueError, TypeError) as e:
        raise ResultError(f"predictions do not decode: {e}") from None


def _parse_ok(result: dict[str, Any], eval_shape: tuple[int, ...], budget: Budget) -> TrialReport:
    try:
        n_params = int(result["n_params"])
        loss_curve = [
            {"step": int(p["step"]), "loss": float(p["loss"])} for p in result["loss_curve"]
        ]
        raw_checkpoints = [(int(c["step"]), c["predictions"]) for c in result["checkpoints"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ResultError(f"the result lacks a field or has a wrong type: {e!r}") from None
    steps = [s for s, _ in raw_checkpoints]
    if budget.eval_every and (
        not steps or steps != sorted(set(steps)) or steps[-1] != budget.steps
    ):
        raise ResultError("the result's checkpoints do not cover the budget")
    checkpoints = [(s, decode_predictions(p, eval_shape)) for s, p in raw_checkpoints]
    return TrialReport(
        status="ok", n_params=n_params, loss_curve=loss_curve, checkpoints=checkpoints
    )


def run_trial(
    *,
    launcher: Launcher,
    trial_dir: Path,
    task: TokenTask,
    data: TokenData,
    source: str,
    stage: str,
    seed: int,
    threads: int,
    memory_bytes: int,
) -> TrialReport:
    budget = task.budgets[stage]
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "candidate.py").write_text(source)
    eval_x = data.eval_x if budget.eval_every else data.eval_x[:0]
    np.savez(
        trial_dir / "data.npz",
        train_x=data.train_x.astype(np.int16),
        train_y=data.train_y.astype(np.int16),
        eval_x=eval_x.astype(np.int16),
    )
    trial = {
        "stage": stage,
        "seed": seed,
        "threads": threads,
        "spec": task.spec,
        "budget": asdict(budget),
        "recipe": asdict(task.recipe),
        "max_params": task.max_params,
    }
    (trial_dir / "trial.json").write_text(json.dumps(trial, indent=2))
    limits = Limits(wall_s=budget.time_limit_s, memory_bytes=memory_bytes, threads=threads)
    execution = launcher.run(harness_argv(), trial_dir, limits)
    (trial_dir / "data.npz").unlink(missing_ok=True)

    report = _interpret(execution.exit_reason, trial_dir, eval_x.shape, budget)
    report.exit_reason = execution.exit_reason
    report.wall_time_s = execution.wall_s
    report.cpu_time_s = execution.cpu_s
    report.peak_rss_mb = execution.peak_rss_mb
    report.log_tail = execution.log_tail
    (trial_dir / RESULT_FILE).unlink(missing_ok=True)
    return report


def _interpret(
    exit_reason: str, trial_dir: Path, eval_shape: tuple[int, ...], budget: Budget
) -> TrialReport:
    if exit_reason == "timeout":
        return TrialReport(
            status="error",
            error_class="timeout",
            message=f"the trial ran past its {budget.time_limit_s:.0f} s limit and was killed",
        )
    if exit_reason == "oom":
        return TrialReport(status="error", error_class="oom", message="killed: out of memory")
    try:
        result = read_result(trial_dir)
        if exit_reason != "ok":
            raise ResultError(f"the trial process exited abnormally ({exit_reason})")
        if result.get("status") == "ok":
            return _parse_ok(result, eval_shape, budget)
        return TrialReport(
            status="error",
            error_class=str(result.get("error_class", "runtime"))[:32],
            message=str(result.get("message", ""))[:2000],
        )
    except ResultError as e:
        return TrialReport(status="error", error_class="crash", message=str(e))
