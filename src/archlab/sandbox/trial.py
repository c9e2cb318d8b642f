"""One trial, seen from the trusted side: lay out the trial directory, launch the harness,
and read back only a size-capped, validated JSON result (and, when asked, the trained
weights as checked safetensors: sandbox.weights). Nothing is imported from, or
unpickled out of, the trial directory."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archlab.sandbox.harness import RESULT_FILE
from archlab.sandbox.process import UnsafeOutput, read_output
from archlab.sandbox.protocol import Launcher, Limits
from archlab.sandbox.weights import WEIGHTS_FILE, WeightsError, read_weights, weights_cap
from archlab.tasks.base import Budget, TokenData, TokenTask

MAX_RESULT_BYTES = 64 * 2**20


@dataclass
class TrialReport:
    """What a trial produced. `checkpoints` hold held-out outputs, not yet scored."""

    status: str  # ok | error | stopped (by the trial's stop rule)
    error_class: str | None = None
    message: str | None = None
    exit_reason: str = "ok"
    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0
    #: the harness's own clock around its training loop (the candidate's side says it:
    #: for accounting, never for a decision)
    train_time_s: float = 0.0
    peak_rss_mb: float = 0.0
    n_params: int | None = None
    loss_curve: list[dict[str, float]] = field(default_factory=list)
    checkpoints: list[tuple[int, np.ndarray]] = field(default_factory=list)
    #: logits on the causality probe's inputs, if one was sent
    probe: np.ndarray | None = None
    #: forward time and memory by sequence length, if the complexity stage asked
    complexity: list[dict[str, float]] | None = None
    log_tail: str = ""
    #: the sandbox level it ran under (on Ray, the worker's)
    isolation: str = ""
    #: the trained weights, if asked for: safetensors, checked and rewritten on this side
    weights: bytes | None = None
    #: why weights that were asked for did not come back (the trial's outcome stands)
    weights_error: str | None = None


class ResultError(ValueError):
    """The child's result file is missing, oversized or malformed."""


def read_result(trial_dir: Path) -> dict[str, Any]:
    try:
        raw = read_output(trial_dir / RESULT_FILE, MAX_RESULT_BYTES, "result file")
    except UnsafeOutput as e:
        raise ResultError(str(e)) from None
    try:
        result = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultError(f"the result is not valid JSON: {e}") from None
    if not isinstance(result, dict):
        raise ResultError("the result is not a JSON object")
    return result


def decode_array(obj: Any, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(obj, dict) or obj.get("dtype") != dtype or obj.get("shape") != list(shape):
        raise ResultError(f"outputs must be {dtype} of shape {list(shape)}")
    try:
        raw = base64.b64decode(obj["b64"], validate=True)
        array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    except (ValueError, TypeError) as e:
        raise ResultError(f"outputs do not decode: {e}") from None
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ResultError("outputs hold NaN or infinite values")
    return array


@dataclass(frozen=True)
class _Expected:
    """The shapes a valid result has; anything else is refused."""

    output_dtype: str
    output_shape: tuple[int, ...]
    budget: Budget
    probe_shape: tuple[int, ...] | None
    complexity_lengths: tuple[int, ...] | None


def _parse_ok(result: dict[str, Any], expected: _Expected) -> TrialReport:
    try:
        n_params = int(result["n_params"])
        loss_curve = [
            {"step": int(p["step"]), "loss": float(p["loss"])} for p in result["loss_curve"]
        ]
        raw_checkpoints = [(int(c["step"]), c["outputs"]) for c in result["checkpoints"]]
        train_time_s = max(float(result.get("train_seconds", 0.0)), 0.0)
        complexity = (
            [
                {k: float(point[k]) for k in ("length", "seconds", "peak_rss_mb")}
                for point in result["complexity"]
            ]
            if expected.complexity_lengths
            else None
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ResultError(f"the result lacks a field or has a wrong type: {e!r}") from None
    budget = expected.budget
    steps = [s for s, _ in raw_checkpoints]
    on_schedule = all(budget.is_checkpoint(step, i) for i, step in enumerate(steps))
    if budget.eval_every and (
        steps != sorted(set(steps)) or len(steps) != budget.checkpoints or not on_schedule
    ):
        raise ResultError("the result's checkpoints do not cover the budget")
    if complexity is not None and [p["length"] for p in complexity] != list(
        expected.complexity_lengths or ()
    ):
        raise ResultError("the complexity timings do not match the lengths asked for")
    checkpoints = [
        (s, decode_array(o, expected.output_dtype, expected.output_shape))
        for s, o in raw_checkpoints
    ]
    probe = (
        decode_array(result.get("probe"), "float32", expected.probe_shape)
        if expected.probe_shape
        else None
    )
    note = result.get("weights_error")
    return TrialReport(
        status="ok",
        n_params=n_params,
        train_time_s=train_time_s,
        loss_curve=loss_curve,
        checkpoints=checkpoints,
        probe=probe,
        complexity=complexity,
        weights_error=str(note)[:500] if note is not None else None,
    )


#: sees a running trial's checkpoints so far (step, held-out outputs); says why to stop it
StopRule = Callable[[list[tuple[int, np.ndarray]]], str | None]


class _Checkpoints:
    """A trial's checkpoints as the harness prints them, for its stop rule. A record that
    is malformed, out of order or off the budget's checkpoints is ignored: the candidate
    shares the harness's output, and it can only forge its own predictions."""

    def __init__(self, expected: _Expected, rule: StopRule) -> None:
        self.expected, self.rule = expected, rule
        self.seen: list[tuple[int, np.ndarray]] = []
        self.reason: str | None = None

    def record(self, payload: bytes) -> None:
        """The rule sees each checkpoint as it comes, and what comes after its verdict is
        not kept: on a loaded machine several arrive between two looks at the trial."""
        if self.reason is not None:
            return
        budget = self.expected.budget
        try:
            obj = json.loads(payload)
            step = int(obj["step"])
            outputs = decode_array(
                obj["outputs"], self.expected.output_dtype, self.expected.output_shape
            )
        except (ValueError, TypeError, KeyError, ResultError):
            return
        last = self.seen[-1][0] if self.seen else 0
        if step > last and budget.is_checkpoint(step, len(self.seen)):
            self.seen.append((step, outputs))
            self.reason = self.rule(self.seen)

    def stop(self) -> bool:
        return self.reason is not None


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
    budget: Budget | None = None,
    probe_x: np.ndarray | None = None,
    complexity: bool = False,
    gpus: tuple[int, ...] = (),
    stop: StopRule | None = None,
    weights: bool = False,
    shuffle_targets: int | None = None,
    precision: str = "auto",
    compile: str = "off",
    gpu_share: float = 1.0,
) -> TrialReport:
    """Run `source` at `stage` (with that stage's budget unless one is given).

    `probe_x` asks for logits on those inputs after training (the causality check);
    `complexity` asks for forward timings at the task's complexity lengths; `gpus` are the
    device numbers the trial trains on (none: the CPU). `stop` sees each checkpoint's
    outputs as the trial runs and may end it: the report is then `stopped`, with the
    checkpoints so far; `weights` asks for the trained weights
    (`TrialReport.weights`, or why not in `weights_error`); `shuffle_targets`
    permutes the training targets across examples with that seed before they are written
    (the audit's control: nothing left to learn), the held-out set untouched; `precision`
    and `compile` are [executor] precision and compile; `gpu_share` caps the trial's GPU
    memory at that share of each device (set by the harness before the candidate loads)."""
    budget = budget or task.budgets[stage]
    # A fresh directory every time: a re-run (after a crash, say) must not write through
    # links an earlier attempt planted. rmtree removes links without following them.
    if trial_dir.exists():
        shutil.rmtree(trial_dir)
    trial_dir.mkdir(parents=True)
    (trial_dir / "candidate.py").write_text(source)
    evaluated = data if budget.eval_every else _without_heldout(data)
    train_y = data.train_y
    if shuffle_targets is not None:
        train_y = train_y[np.random.default_rng(shuffle_targets).permutation(len(train_y))]
    arrays = {
        "train_x": data.train_x,
        "train_y": train_y,
        "eval_x": evaluated.eval_x,
    }
    if task.output == "logprobs" and evaluated.eval_positions is not None:
        arrays["eval_positions"] = evaluated.eval_positions
    if probe_x is not None:
        arrays["probe_x"] = probe_x
    compact: dict[str, Any] = {k: _compact(v) for k, v in arrays.items()}
    np.savez(trial_dir / "data.npz", **compact)
    lengths = task.complexity_lengths if complexity else None
    trial = {
        "stage": stage,
        "seed": seed,
        "threads": threads,
        "kind": task.kind,
        "output": task.output,
        "spec": task.spec,
        "budget": asdict(budget),
        "recipe": asdict(task.recipe),
        "max_params": task.max_params,
        "complexity_lengths": list(lengths) if lengths else None,
        "stream": stop is not None and bool(budget.eval_every),
        "weights": weights,
        "precision": precision,
        "compile": compile,
        "gpu_share": gpu_share,
    }
    (trial_dir / "trial.json").write_text(json.dumps(trial, indent=2))
    limits = Limits(
        wall_s=budget.time_limit_s, memory_bytes=memory_bytes, threads=threads, gpus=gpus
    )
    dtype, shape = task.output_shape(evaluated)
    expected = _Expected(
        output_dtype=dtype,
        output_shape=shape,
        budget=budget,
        probe_shape=None if probe_x is None else (*probe_x.shape, task.spec["vocab_size"]),
        complexity_lengths=lengths,
    )
    watcher = _Checkpoints(expected, stop) if trial["stream"] and stop else None
    execution = launcher.run_harness(trial_dir, limits, watcher)
    (trial_dir / "data.npz").unlink(missing_ok=True)

    if execution.exit_reason == "stopped" and watcher is not None:
        report = TrialReport(status="stopped", message=watcher.reason, checkpoints=watcher.seen)
    else:
        report = _interpret(execution.exit_reason, trial_dir, expected)
    report.exit_reason = execution.exit_reason
    report.wall_time_s = execution.wall_s
    report.cpu_time_s = execution.cpu_s
    report.peak_rss_mb = execution.peak_rss_mb
    report.log_tail = execution.log_tail
    report.isolation = launcher.level
    _remove(trial_dir / RESULT_FILE)
    if weights and report.status == "ok" and report.weights_error is None:
        try:
            report.weights = read_weights(trial_dir, weights_cap(task.max_params))
        except WeightsError as e:
            report.weights_error = str(e)
    if not weights or report.status != "ok":
        report.weights_error = None  # only a trial that scored and was asked has a say
    _remove(trial_dir / WEIGHTS_FILE)  # kept, if at all, beside the memory
    return report


def _remove(path: Path) -> None:
    """Remove whatever is at `path` (a file, a link, a FIFO, a directory), following nothing."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        shutil.rmtree(path, ignore_errors=True)


def _without_heldout(data: TokenData) -> TokenData:
    """Stages that evaluate nothing get no held-out inputs at all."""
    positions = None if data.eval_positions is None else data.eval_positions[:0]
    return TokenData(data.train_x, data.train_y, data.eval_x[:0], data.eval_y[:0], positions)


def _compact(array: np.ndarray) -> np.ndarray:
    """Token ids and labels travel as int16 when they fit: a third of the bytes to write."""
    if array.dtype.kind in "iu" and array.size and array.min() >= -32768 and array.max() < 32768:
        return array.astype(np.int16)
    return array


_MESSAGES = {
    "oom": "killed: out of memory",
    "pids": "killed: too many processes or threads",
    "policy": "killed: a forbidden system call (sandbox policy)",
}


def _interpret(exit_reason: str, trial_dir: Path, expected: _Expected) -> TrialReport:
    if exit_reason == "timeout":
        limit = expected.budget.time_limit_s
        return TrialReport(
            status="error",
            error_class="timeout",
            message=f"the trial ran past its {limit:.0f} s limit and was killed",
        )
    if exit_reason not in ("ok", "crash"):
        message = _MESSAGES.get(exit_reason, f"the trial ended abnormally ({exit_reason})")
        return TrialReport(status="error", error_class=exit_reason, message=message)
    try:
        result = read_result(trial_dir)
        if exit_reason != "ok":
            raise ResultError(f"the trial process exited abnormally ({exit_reason})")
        if result.get("status") == "ok":
            return _parse_ok(result, expected)
        return TrialReport(
            status="error",
            error_class=str(result.get("error_class", "runtime"))[:32],
            message=str(result.get("message", ""))[:2000],
        )
    except ResultError as e:
        return TrialReport(status="error", error_class="crash", message=str(e))
