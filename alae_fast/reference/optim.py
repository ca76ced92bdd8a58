"""The optimizer of ALAE: Adam with beta1 = 0 whose step is scaled per parameter by its
learning-rate equalization coefficient (``param.lr_equalization_coef``, set by the equalized
layers; 1 for other parameters).

With beta1 = 0 there is no first moment: the update is
``p -= lr * coef * sqrt(1 - beta2^t) * g / (sqrt(v) + eps)`` with ``v`` the second moment.
Note where eps sits: added to ``sqrt(v)`` before the bias correction is applied to the step,
as in the official ``LREQAdam``.
"""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer

from .layers import lr_equalization_coef

__all__ = ["LREQAdam"]


class LREQAdam(Optimizer):
    """Adam (betas (0, beta2)) with per-parameter learning-rate equalization.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        betas: ``(beta1, beta2)``; beta1 must be 0 (the official optimizer keeps no momentum).
        eps: added to ``sqrt(v)``.
        weight_decay: L2 weight decay applied to the gradient.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.0, 0.99), eps: float = 1e-8, weight_decay: float = 0.0):
        if lr < 0.0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if eps < 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if betas[0] != 0.0:
            raise ValueError(f"betas[0] must be 0 (no first moment), got {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"betas[1] must be in [0, 1), got {betas[1]}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _updates(self, group):
        """(p, grad, exp_avg_sq, step_size) of every parameter of ``group`` with a gradient,
        its step counted: ``step_size = lr * sqrt(1 - beta2^t) * coef``."""
        beta2 = group["betas"][1]
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("LREQAdam does not support sparse gradients")
            state = self.state[p]
            if len(state) == 0:
                state["step"] = 0
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            step_size = group["lr"] * math.sqrt(1.0 - beta2 ** state["step"])
            yield p, p.grad, state["exp_avg_sq"], step_size * lr_equalization_coef(p)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group):
        beta2 = group["betas"][1]
        for p, grad, v, step_size in self._updates(group):
            if group["weight_decay"] != 0:
                grad = grad.add(p, alpha=group["weight_decay"])
            v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
            denom = v.sqrt().add_(group["eps"])
            p.addcdiv_(grad, denom, value=-step_size)
