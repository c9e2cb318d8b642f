"""The harness's optimizer (it runs inside the sandbox, beside the candidate)."""

from __future__ import annotations

import math
from typing import Any


class AdamW:
    """torch.optim.AdamW's update (decoupled weight decay, bias-corrected moments, the
    single-tensor path it takes on CPU), written out because torch.optim imports
    torch._dynamo on first use: ~1 s of CPU and 800 modules in every fresh trial process,
    paid out of training time whenever the cores are busy (two workers on two cores)."""

    def __init__(
        self,
        params: Any,
        lr: float,
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        import torch

        self.params = [p for p in params if p.requires_grad]
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = 0
        #: a GPU's path: a small proxy's step there is bound by kernel launches, and the
        #: per-tensor loop launches ~8 a parameter
        self.foreach = bool(self.params) and self.params[0].is_cuda

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        import torch

        self.steps += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1**self.steps)
        correction2_sqrt = math.sqrt(1 - beta2**self.steps)
        if self.foreach:
            self._step_foreach(step_size, correction2_sqrt)
            return
        with torch.no_grad():
            for p, exp_avg, exp_avg_sq in zip(
                self.params, self.exp_avg, self.exp_avg_sq, strict=True
            ):
                if p.grad is None:
                    continue
                p.mul_(1 - self.lr * self.weight_decay)
                exp_avg.lerp_(p.grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = (exp_avg_sq.sqrt() / correction2_sqrt).add_(self.eps)
                p.addcdiv_(exp_avg, denom, value=-step_size)

    def _step_foreach(self, step_size: float, correction2_sqrt: float) -> None:
        """The same update, a few kernels for all the tensors (torch.optim's foreach path)."""
        import torch

        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        params = [self.params[i] for i in live]
        grads = [self.params[i].grad for i in live]
        exp_avg = [self.exp_avg[i] for i in live]
        exp_avg_sq = [self.exp_avg_sq[i] for i in live]
        beta1, beta2 = self.betas
        with torch.no_grad():
            torch._foreach_mul_(params, 1 - self.lr * self.weight_decay)
            torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sq, beta2)
            torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
            denom = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_div_(denom, correction2_sqrt)
            torch._foreach_add_(denom, self.eps)
            torch._foreach_addcdiv_(params, exp_avg, denom, value=-step_size)
