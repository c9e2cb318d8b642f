"""The trusted code that runs INSIDE the sandbox, next to the untrusted candidate.

Run as `python -I -m archlab.sandbox.harness` with the trial directory as working
directory. It reads trial.json, data.npz (training pairs and held-out inputs only) and
candidate.py, trains with the task's fixed recipe, and writes result.json holding
held-out predictions. Nothing it writes is trusted: the orchestrator validates it and
computes every metric itself. It shares a process with the candidate, so it imports only
what it needs and reports failures as error classes the coder can act on.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import os
import sys
import time
import traceback
from types import SimpleNamespace
from typing import Any

RESULT_FILE = "result.json"


class CandidateError(Exception):
    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


def _encode(array: Any) -> dict[str, Any]:
    import numpy as np

    array = np.ascontiguousarray(array, dtype=np.int32)
    return {
        "dtype": "int32",
        "shape": list(array.shape),
        "b64": base64.b64encode(array.tobytes()).decode(),
    }


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


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _check_output(out: Any, batch: int, spec: SimpleNamespace) -> None:
    import torch

    want = (batch, spec.seq_len, spec.vocab_size)
    if not isinstance(out, torch.Tensor):
        raise CandidateError("shape", f"forward must return a Tensor, got {type(out).__name__}")
    if tuple(out.shape) != want:
        raise CandidateError("shape", f"logits must have shape {want}, got {tuple(out.shape)}")
    if not out.is_floating_point():
        raise CandidateError("shape", f"logits must be floating point, got {out.dtype}")


def _predict(model: Any, inputs: Any, batch_size: int) -> Any:
    import torch

    model.eval()
    with torch.no_grad():
        preds = [
            model(inputs[i : i + batch_size]).argmax(dim=-1)
            for i in range(0, len(inputs), batch_size)
        ]
    model.train()
    return torch.cat(preds).numpy()


def run(trial: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    torch.set_num_threads(trial["threads"])
    torch.manual_seed(trial["seed"])
    spec = SimpleNamespace(**trial["spec"])
    budget, recipe = trial["budget"], trial["recipe"]

    module = _load_candidate("candidate.py")
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
    if n_params > trial["max_params"]:
        raise CandidateError(
            "params", f"{n_params:,} parameters exceed the budget of {trial['max_params']:,}"
        )

    with np.load("data.npz", allow_pickle=False) as data:
        train_x = torch.from_numpy(data["train_x"].astype(np.int64))
        train_y = torch.from_numpy(data["train_y"].astype(np.int64))
        eval_x = torch.from_numpy(data["eval_x"].astype(np.int64))

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"]
    )
    steps, batch_size = budget["steps"], budget["batch_size"]
    warmup = min(recipe["warmup_steps"], max(steps // 10, 1))

    def lr_at(step: int) -> float:  # linear warm-up, then cosine decay to 10%
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(steps - warmup, 1)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))

    rng = np.random.default_rng(trial["seed"])
    loss_curve: list[dict[str, float]] = []
    checkpoints: list[dict[str, Any]] = []
    started = time.perf_counter()
    for step in range(1, steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = recipe["lr"] * lr_at(step - 1)
        idx = torch.from_numpy(rng.integers(0, len(train_x), size=batch_size))
        x, y = train_x[idx], train_y[idx]
        try:
            logits = model(x)
            if step == 1:
                _check_output(logits, batch_size, spec)
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), ignore_index=-100
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        except CandidateError:
            raise
        except MemoryError as e:
            raise CandidateError("oom", f"out of memory at step {step}") from e
        except Exception as e:
            raise CandidateError("runtime", f"training step {step} raised {_describe(e)}") from e
        value = float(loss.detach())
        if not math.isfinite(value):
            raise CandidateError("nan", f"the training loss became {value} at step {step}")
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["grad_clip"])
        optimizer.step()
        if step == 1 or step % max(steps // 50, 1) == 0 or step == steps:
            loss_curve.append({"step": step, "loss": value})
            print(f"step: {step}/{steps} loss: {value:.4f}", flush=True)
        if budget["eval_every"] and (step % budget["eval_every"] == 0 or step == steps):
            try:
                preds = _predict(model, eval_x, 256)
            except Exception as e:
                raise CandidateError(
                    "runtime", f"evaluation at step {step} raised {_describe(e)}"
                ) from e
            checkpoints.append({"step": step, "predictions": _encode(preds)})
    return {
        "status": "ok",
        "n_params": n_params,
        "train_seconds": time.perf_counter() - started,
        "loss_curve": loss_curve,
        "checkpoints": checkpoints,
    }


def _write_result(result: dict[str, Any]) -> None:
    tmp = RESULT_FILE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, RESULT_FILE)


def main() -> int:
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
        result = {
            "status": "error",
            "error_class": "runtime",
            "message": _describe(e),
            "traceback": traceback.format_exc(limit=-8),
        }
    _write_result(result)
    if result["status"] != "ok":
        print(f"error: {result['error_class']}: {result['message']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
