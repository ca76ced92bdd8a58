"""ALAE's three training losses, in plain PyTorch (the reference the fused ops are tested
against)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["r1_penalty", "r1_gradient", "discriminator_logistic_r1", "generator_logistic_ns", "latent_l2"]


def r1_penalty(grads: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample R1 penalty ``gamma / 2 * sum(grads ** 2)`` over every non-batch dimension.

    Args:
        grads: gradient of the real logits w.r.t. the real images, [N, ...].
        gamma: R1 weight.
    Returns: [N].
    """
    return grads.pow(2).flatten(1).sum(dim=1) * (gamma * 0.5)


def discriminator_logistic_r1(
    d_fake: torch.Tensor, d_real: torch.Tensor, reals: torch.Tensor, r1_gamma: float = 10.0, grad_scale: float = 1.0
) -> torch.Tensor:
    """E,D loss: ``mean(softplus(d_fake) + softplus(-d_real) + R1)``, R1 on the reals.

    Args:
        d_fake, d_real: logits [N] of generated and real images.
        reals: the real images [N, C, H, W]; must require grad and be an input of ``d_real``.
        r1_gamma: R1 weight (0 disables it).
        grad_scale: a loss scale (float16 training) for the R1 gradient's backward pass, so
            that it does not underflow; the gradient is unscaled before it is squared.
    Returns: scalar. Differentiable twice (the R1 gradient is built with ``create_graph``).
    """
    loss = F.softplus(d_fake) + F.softplus(-d_real)
    if r1_gamma != 0.0:
        grads = r1_gradient(d_real, reals, grad_scale)
        loss = loss + r1_penalty(grads, r1_gamma)
    return loss.mean()


def r1_gradient(d_real: torch.Tensor, reals: torch.Tensor, grad_scale: float = 1.0) -> torch.Tensor:
    """``grad_reals sum(d_real)`` with a graph (differentiable), computed on ``grad_scale *
    d_real`` and divided by ``grad_scale`` afterwards (1: neither)."""
    out = d_real.sum() if grad_scale == 1.0 else d_real.sum() * grad_scale
    (grads,) = torch.autograd.grad(out, reals, create_graph=True, retain_graph=True)
    return grads if grad_scale == 1.0 else grads / grad_scale


def generator_logistic_ns(d_fake: torch.Tensor) -> torch.Tensor:
    """F,G non-saturating loss ``mean(softplus(-d_fake))``."""
    return F.softplus(-d_fake).mean()


def latent_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Latent reciprocity loss ``mean((a - b) ** 2)``."""
    return (a - b).pow(2).mean()
