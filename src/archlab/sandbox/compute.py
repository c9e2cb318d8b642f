"""How the harness's training step computes on its device: the precision of the forward
pass, the loss and its gradients, and (an option) torch.compile. Trusted code, run inside
the sandbox."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

Precision = Callable[[], contextlib.AbstractContextManager[Any]]


def precision(setting: str, device: Any) -> Precision:
    """The context forward passes run in: bf16 autocast for `setting` 'bf16', and for
    'auto' on a GPU that has bf16 (with TF32 matmuls); fp32 otherwise."""
    import torch

    bf16 = setting == "bf16" or (setting == "auto" and device.type == "cuda")
    if device.type == "cuda":
        bf16 = bf16 and torch.cuda.is_bf16_supported()
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bf16
    if not bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


class Descent:
    """A training step's loss and gradients: the forward pass in `precision`, the loss on
    fp32 logits, backward. With a torch.compile `mode` other than 'off', the forward pass
    and the loss are one compiled graph (a bf16 model's logits then reach the loss without
    an fp32 copy in memory); should compiling or the compiled step fail, the step is taken
    again uncompiled, and so are the rest (the candidate's own errors surface there)."""

    def __init__(self, model: Any, optimizer: Any, precision: Precision, mode: str = "off"):
        self.model, self.optimizer, self.precision = model, optimizer, precision
        self.compiled = _compile(self.loss, mode) if mode != "off" else None

    def loss(self, x: Any, y: Any, check: Callable[[Any], None] | None = None) -> Any:
        import torch

        with self.precision():
            logits = self.model(x)
        if check is not None:
            check(logits)
        flat = logits.reshape(-1, logits.shape[-1]).float()
        return torch.nn.functional.cross_entropy(flat, y.reshape(-1), ignore_index=-100)

    def __call__(self, x: Any, y: Any, check: Callable[[Any], None] | None = None) -> Any:
        """The step's loss, its gradients computed; `check` sees the logits (uncompiled)."""
        import torch

        if self.compiled is not None and check is None:
            try:
                torch.compiler.cudagraph_mark_step_begin()  # reduce-overhead: a new step
                return self._backward(self.compiled(x, y))
            except (MemoryError, torch.cuda.OutOfMemoryError):
                raise
            except Exception as e:
                self.compiled = None
                print(f"torch.compile failed ({type(e).__name__}): training uncompiled", flush=True)
        return self._backward(self.loss(x, y, check))

    def _backward(self, loss: Any) -> Any:
        self.optimizer.zero_grad()
        loss.backward()
        return loss


def _compile(loss: Callable[..., Any], mode: str) -> Callable[..., Any]:
    """`loss` through torch.compile. Its caches stay in the trial's own directory and its
    compiling in this process, on the trial's threads: a cache shared between trials would
    let one candidate plant code that another trial's harness runs. It compiles once: a
    candidate whose state changes what is traced each step would otherwise recompile,
    inside the training clock; past the first compile such code runs uncompiled."""
    import torch
    import torch._dynamo.config
    import torch._inductor.config

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.abspath("compile-cache/inductor")
    os.environ["TRITON_CACHE_DIR"] = os.path.abspath("compile-cache/triton")
    torch._inductor.config.compile_threads = 1
    torch._dynamo.config.recompile_limit = 1
    return torch.compile(loss, mode=mode)
