"""The trusted code that runs INSIDE the sandbox, next to the untrusted candidate.

Run as `python -I -m archlab.sandbox.harness`, started ahead of its trial: it loads torch,
prints the ready line, and waits for a line on stdin naming its working directory (at EOF
it exits: no trial came). There it reads trial.json, data.npz (training pairs and held-out
inputs only) and candidate.py, trains with the task's fixed recipe, and writes result.json
holding the model's outputs on the held-out inputs (and, when the trial asks, the trained
weights as weights.safetensors). Nothing it writes is trusted: the orchestrator
validates it and computes every metric itself. It shares a process with the candidate, so
it reports failures as error classes the coder can act on.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib.util
import json
import math
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from archlab.sandbox import compute
from archlab.sandbox.optimizer import AdamW

RESULT_FILE = "result.json"
#: the trained weights, when the trial asks for them: safetensors, never a pickle
WEIGHTS_FILE = "weights.safetensors"
#: what the trusted side lays out for a trial, and nothing else
INPUT_FILES = ("trial.json", "candidate.py", "data.npz")
#: printed once torch is loaded; the launcher keeps it out of the log
READY_LINE = "archlab-harness: ready"
#: marks a line of output as a record for the trusted side (a checkpoint's held-out
#: outputs, as in the result) rather than log text; as untrusted as the rest of the output
RECORD_PREFIX = "\x1earchlab-record "
_EVAL_BATCH = 256


class Spec(SimpleNamespace):
    """What `build_model(spec)` gets: the task's model contract, read either way,
    `spec.vocab_size` or `spec["vocab_size"]` (a task's `spec` is a dict)."""

    def __getitem__(self, key: str) -> Any:
        return self.__dict__[key]

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__.get(key, default)

    def keys(self) -> Any:  # with __getitem__: **spec works
        return self.__dict__.keys()


class CandidateError(Exception):
    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


def encode(array: Any, dtype: str) -> dict[str, Any]:
    import numpy as np

    array = np.ascontiguousarray(array, dtype=dtype)
    return {
        "dtype": dtype,
        "shape": list(array.shape),
        "b64": base64.b64encode(array.tobytes()).decode(),
    }


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _load_candidate(path: str) -> Any:
    try:
        spec = importlib.util.spec_from_file_location("candidate", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise CandidateError("syntax", f"line {e.lineno}: {e.msg}") from e
    except MemoryError as e:
        raise CandidateError("oom", "out of memory while importing the candidate") from e
    except Exception as e:
        raise CandidateError("import", f"importing the candidate raised {_describe(e)}") from e
    if not callable(getattr(module, "build_model", None)):
        raise CandidateError("contract", "the module must define a function build_model(spec)")
    return module


def _build(module: Any, spec: Spec, max_params: int) -> Any:
    import torch

    try:
        model = module.build_model(spec)
    except MemoryError as e:
        raise CandidateError("oom", "out of memory in build_model") from e
    except Exception as e:
        raise CandidateError("build", f"build_model raised {_describe(e)}") from e
    if not isinstance(model, torch.nn.Module):
        raise CandidateError(
            "contract", f"build_model must return an nn.Module, got {type(model).__name__}"
        )
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if n_params == 0:
        raise CandidateError("contract", "the model has no trainable parameters")
    if n_params > max_params:
        raise CandidateError(
            "params", f"{n_params:,} parameters exceed the budget of {max_params:,}"
        )
    return model


def _check_output(out: Any, batch: int, spec: Spec, kind: str) -> None:
    import torch

    if kind == "classification":
        want: tuple[int, ...] = (batch, spec.num_classes)
    else:
        want = (batch, spec.seq_len, spec.vocab_size)
    if not isinstance(out, torch.Tensor):
        raise CandidateError("shape", f"forward must return a Tensor, got {type(out).__name__}")
    if tuple(out.shape) != want:
        raise CandidateError("shape", f"logits must have shape {want}, got {tuple(out.shape)}")
    if not out.is_floating_point():
        raise CandidateError("shape", f"logits must be floating point, got {out.dtype}")


def _forward_all(
    model: Any, inputs: Any, precision: Callable[[], Any] = contextlib.nullcontext
) -> Any:
    """Logits for every input, in evaluation mode and without gradients."""
    import torch

    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad(), precision():
            return torch.cat(
                [
                    model(inputs[i : i + _EVAL_BATCH].to(device)).float().cpu()
                    for i in range(0, len(inputs), _EVAL_BATCH)
                ]
            )
    finally:
        model.train()


def _outputs(
    model: Any, trial: dict[str, Any], eval_x: Any, positions: Any, precision: Callable[[], Any]
) -> dict[str, Any]:
    """What the task asked for on the held-out inputs: argmax classes or log-probabilities."""
    import torch

    logits = _forward_all(model, eval_x, precision)
    if trial["output"] == "argmax":
        return encode(logits.argmax(dim=-1).numpy(), "int32")
    logprobs = torch.log_softmax(logits, dim=-1)
    if trial["kind"] == "sequence":
        logprobs = logprobs[positions[:, 0], positions[:, 1]]
    return encode(logprobs.numpy(), "float16")


def _time_lengths(module: Any, trial: dict[str, Any]) -> list[dict[str, float]]:
    """Forward time and peak memory at growing sequence lengths (batch 1, no gradients).

    Measured in here, so a hostile candidate could bend it; it guards against honest
    mistakes in claims of sub-quadratic cost, not against forgery."""
    import torch

    points = []
    for length in trial["complexity_lengths"]:
        spec = Spec(**{**trial["spec"], "seq_len": length})
        model = _build(module, spec, sys.maxsize).eval()
        tokens = torch.randint(0, spec.vocab_size, (1, length))
        with torch.no_grad():
            model(tokens)  # warm-up
            best = math.inf
            for _ in range(3):
                started = time.perf_counter()
                model(tokens)
                best = min(best, time.perf_counter() - started)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        points.append({"length": length, "seconds": best, "peak_rss_mb": peak_mb})
    return points


class Schedule:
    """When a trial logs, evaluates and ends: after `steps` steps, or, when the budget has
    `seconds`, after that many seconds of training (evaluation excluded), at the same
    number of checkpoints spread evenly over the time. `clock` is the training time so far."""

    def __init__(self, budget: dict[str, Any], warmup_steps: int) -> None:
        self.steps, self.seconds = budget["steps"], budget.get("seconds")
        self.eval_every = budget["eval_every"]
        every = self.eval_every
        self.checkpoints = (self.steps // every + bool(self.steps % every)) if every else 0
        self.warmup = min(warmup_steps, max(self.steps // 10, 1))
        #: the clock at the last loss point (a timed budget logs by the clock)
        self.logged_at = 0.0

    def lr_factor(self, step: int, clock: float) -> float:
        """Linear warm-up over steps, then cosine decay to 10% over the budget."""
        if step <= self.warmup:
            return step / self.warmup
        if self.seconds:
            progress = min(clock / self.seconds, 1.0)
        else:
            progress = (step - 1 - self.warmup) / max(self.steps - self.warmup, 1)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))

    def evaluate(self, step: int, clock: float, taken: int) -> bool:
        if not self.eval_every:
            return False
        if self.seconds:
            return clock >= self.seconds * (taken + 1) / self.checkpoints
        return step % self.eval_every == 0 or step == self.steps

    def done(self, step: int, clock: float, taken: int) -> bool:
        """Whether training ends before step `step + 1` (`taken` checkpoints so far)."""
        if self.seconds:
            return taken >= self.checkpoints if self.checkpoints else clock >= self.seconds
        return step >= self.steps

    def log(self, step: int, clock: float) -> bool:
        """About 50 loss points a trial, the first and the last included."""
        if self.seconds:
            return step == 1 or clock >= min(self.logged_at + self.seconds / 50, self.seconds)
        return step == 1 or step % max(self.steps // 50, 1) == 0 or step == self.steps


def _batches(rng: Any, n: int, batch_size: int, device: Any, chunk: int = 256) -> Any:
    """Training example indices, a batch per step, moved to the device `chunk` steps at a
    time (a copy to a GPU waits for the queued steps: not once a step). Drawn a batch at a
    time, so the stream is the same whatever the chunk."""
    import numpy as np
    import torch

    while True:
        block = np.stack([rng.integers(0, n, size=batch_size) for _ in range(chunk)])
        yield from torch.from_numpy(block).to(device)


def _device() -> Any:
    """Where this trial trains: the executor sets CUDA_VISIBLE_DEVICES only for a trial it
    gave a GPU."""
    import torch

    return torch.device("cuda" if os.environ.get("CUDA_VISIBLE_DEVICES") else "cpu")


def _synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(trial: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    torch.set_num_threads(trial["threads"])
    torch.manual_seed(trial["seed"])
    spec = Spec(**trial["spec"])
    budget, recipe, kind = trial["budget"], trial["recipe"], trial["kind"]

    device = _device()
    precision = compute.precision(trial.get("precision", "auto"), device)
    if device.type == "cuda" and trial.get("gpu_share", 1.0) < 1:
        # before the candidate loads: trials sharing the device get a share of its memory each
        torch.cuda.set_per_process_memory_fraction(trial["gpu_share"])
    module = _load_candidate("candidate.py")
    model = _build(module, spec, trial["max_params"]).to(device)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)

    with np.load("data.npz", allow_pickle=False) as data:
        arrays = {name: torch.from_numpy(data[name].astype(np.int64)) for name in data.files}
    train_x, train_y = arrays["train_x"].to(device), arrays["train_y"].to(device)
    eval_x = arrays["eval_x"]

    optimizer = AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    compiling = trial.get("compile", "off")
    descent = compute.Descent(model, optimizer, precision, compiling)
    check = functools.partial(_check_output, batch=budget["batch_size"], spec=spec, kind=kind)
    schedule = Schedule(budget, recipe["warmup_steps"])
    batches = _batches(
        np.random.default_rng(trial["seed"]), len(train_x), budget["batch_size"], device
    )
    # a non-finite loss is noticed where a value is read anyway: no device sync per step
    diverged = torch.zeros((), dtype=torch.bool, device=device)
    loss_curve: list[dict[str, float]] = []
    checkpoints: list[dict[str, Any]] = []
    clock, step = 0.0, 0
    while not schedule.done(step, clock, len(checkpoints)):
        step += 1
        started = time.perf_counter()
        optimizer.lr = recipe["lr"] * schedule.lr_factor(step, clock)
        idx = next(batches)
        x, y = train_x[idx], train_y[idx]
        try:
            loss = descent(x, y, check if step == 1 else None)
        except CandidateError:
            raise
        except (MemoryError, torch.cuda.OutOfMemoryError) as e:  # its share of a GPU, too
            raise CandidateError("oom", f"out of memory at step {step}") from e
        except Exception as e:
            raise CandidateError("runtime", f"training step {step} raised {_describe(e)}") from e
        diverged |= ~torch.isfinite(loss.detach())
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["grad_clip"])
        optimizer.step()
        if step == 2 and compiling != "off":  # compiled here: not training time
            print(f"torch.compile: {time.perf_counter() - started:.1f} s at step 2", flush=True)
        else:
            clock += time.perf_counter() - started
        taken = len(checkpoints)
        log, evaluate = schedule.log(step, clock), schedule.evaluate(step, clock, taken)
        if not (log or evaluate or schedule.done(step, clock, taken)):
            continue
        waited = time.perf_counter()
        _synchronize(device)  # the clock counts the steps the device still had queued
        clock += time.perf_counter() - waited
        if bool(diverged):
            raise CandidateError("nan", f"the training loss became nan or infinite by step {step}")
        if log or schedule.log(step, clock):
            schedule.logged_at = clock
            value = float(loss.detach())
            loss_curve.append({"step": step, "loss": value})
            of = "" if schedule.seconds else f"/{schedule.steps}"
            print(f"step: {step}{of} loss: {value:.4f}", flush=True)
        if schedule.evaluate(step, clock, taken):
            try:
                outputs = _outputs(model, trial, eval_x, arrays.get("eval_positions"), precision)
            except Exception as e:
                raise CandidateError(
                    "runtime", f"evaluation at step {step} raised {_describe(e)}"
                ) from e
            checkpoints.append({"step": step, "outputs": outputs})
            if trial.get("stream"):  # the trusted side may stop a curve that cannot catch up
                record = json.dumps({"step": step, "outputs": outputs})
                print(f"{RECORD_PREFIX}{record}", flush=True)
    result: dict[str, Any] = {
        "status": "ok",
        "n_params": n_params,
        "train_seconds": clock,
        "loss_curve": loss_curve,
        "checkpoints": checkpoints,
    }
    if "probe_x" in arrays:
        try:
            result["probe"] = encode(_forward_all(model, arrays["probe_x"]).numpy(), "float32")
        except Exception as e:
            raise CandidateError("runtime", f"the causality probe raised {_describe(e)}") from e
    if trial.get("complexity_lengths"):
        try:
            result["complexity"] = _time_lengths(module, trial)
        except CandidateError:
            raise
        except Exception as e:
            raise CandidateError("runtime", f"timing longer sequences raised {_describe(e)}") from e
    if trial.get("weights"):
        note = _save_weights(model)
        if note:
            result["weights_error"] = note
    return result


def _save_weights(model: Any) -> str | None:
    """Write the trained weights as safetensors (tied tensors once); None, or why not. A
    failure here costs the trial nothing: its outputs are already computed."""
    from safetensors.torch import save_model

    tmp = WEIGHTS_FILE + ".tmp"
    try:
        save_model(model.cpu(), tmp)
        os.chmod(tmp, 0o644)  # safetensors makes it 0600; the strict level copies it out
        os.replace(tmp, WEIGHTS_FILE)
    except Exception as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return f"saving the weights raised {_describe(e)}"[:500]
    return None


def _write_result(result: dict[str, Any]) -> None:
    tmp = RESULT_FILE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, RESULT_FILE)


def _warm_up() -> None:
    """Pay torch's start-up before the trial: its imports and the lazy set-up of a first
    training step. Nothing of the trial exists yet, so nothing of it can leak."""
    import numpy as np
    import torch

    device = _device()  # a GPU trial's too: CUDA's context and kernels cost seconds
    model = torch.nn.Sequential(torch.nn.Embedding(8, 8), torch.nn.Linear(8, 8)).to(device)
    optimizer = AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    logits = model(torch.from_numpy(np.zeros((2, 4), dtype=np.int64)).to(device))
    target = torch.zeros(8, dtype=torch.long, device=device)
    torch.nn.functional.cross_entropy(logits.reshape(-1, 8), target)
    logits.sum().backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    _synchronize(device)


def main() -> int:
    """Start-up, then the trial the go line names."""
    _warm_up()
    print(READY_LINE, flush=True)
    line = sys.stdin.readline()
    if not line.endswith("\n"):
        return 0
    os.chdir(line[:-1])
    os.environ["HOME"] = os.getcwd()
    return run_here()


def run_here() -> int:
    """The trial laid out in the working directory."""
    with open("trial.json") as f:
        trial = json.load(f)
    try:
        result = run(trial)
    except CandidateError as e:
        result = {
            "status": "error",
            "error_class": e.error_class,
            "message": str(e),
            "traceback": traceback.format_exc(limit=-8),
        }
    except MemoryError:
        result = {"status": "error", "error_class": "oom", "message": "out of memory"}
    except Exception as e:
        # torch's OutOfMemoryError: a GPU's memory (or the trial's share of it) ran out
        oom = type(e).__name__ == "OutOfMemoryError"
        result = {
            "status": "error",
            "error_class": "oom" if oom else "runtime",
            "message": _describe(e),
            "traceback": traceback.format_exc(limit=-8),
        }
    _write_result(result)
    if result["status"] != "ok":
        print(f"error: {result['error_class']}: {result['message']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
