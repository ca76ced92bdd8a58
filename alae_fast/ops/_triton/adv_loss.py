"""Triton kernels of the adversarial losses d_adv_loss and g_adv_loss.

One kernel pair serves both: the loss is mean(softplus(FAKE_SIGN * d_fake)) plus, when
HAS_REAL, mean(softplus(-d_real)).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import BLOCK
from .common import REDUCE_ITERS
from .common import acc_dtype
from .common import device_of
from .common import sigmoid
from .common import softplus


@triton.jit
def _adv_loss_fwd_kernel(
    fake_ptr,
    real_ptr,
    partial_ptr,
    n,
    FAKE_SIGN: tl.constexpr,
    HAS_REAL: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK: tl.constexpr,
    ITERS: tl.constexpr,
):
    pid = tl.program_id(0)
    acc = tl.zeros([BLOCK], dtype=ACC)
    start = pid.to(tl.int64) * (BLOCK * ITERS)
    # A rolled loop: unrolled, ITERS x BLOCK lanes of softplus took 255 registers and spilled.
    for it in range(ITERS):
        offs = start + it * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        f = tl.load(fake_ptr + offs, mask=mask, other=0.0).to(ACC)
        term = softplus(FAKE_SIGN * f)
        if HAS_REAL:
            r = tl.load(real_ptr + offs, mask=mask, other=0.0).to(ACC)
            term += softplus(-r)
        acc += tl.where(mask, term, 0.0)
    tl.store(partial_ptr + pid, tl.sum(acc, axis=0))


@triton.jit
def _adv_loss_bwd_kernel(
    grad_ptr,
    fake_ptr,
    real_ptr,
    grad_fake_ptr,
    grad_real_ptr,
    n,
    FAKE_SIGN: tl.constexpr,
    HAS_REAL: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    # Divide in ACC (a Python float argument would arrive as float32 in compiled Triton).
    scale = tl.load(grad_ptr).to(ACC) / n
    f = tl.load(fake_ptr + offs, mask=mask, other=0.0).to(ACC)
    gf = FAKE_SIGN * scale * sigmoid(FAKE_SIGN * f)
    tl.store(grad_fake_ptr + offs, gf.to(grad_fake_ptr.dtype.element_ty), mask=mask)
    if HAS_REAL:
        r = tl.load(real_ptr + offs, mask=mask, other=0.0).to(ACC)
        gr = -scale * sigmoid(-r)
        tl.store(grad_real_ptr + offs, gr.to(grad_real_ptr.dtype.element_ty), mask=mask)


def _forward(fake: torch.Tensor, real: torch.Tensor | None, fake_sign: float) -> torch.Tensor:
    n = fake.numel()
    acc = acc_dtype(fake)
    programs = triton.cdiv(n, BLOCK * REDUCE_ITERS)
    partial = torch.empty(programs, device=fake.device, dtype=torch.float64 if acc == tl.float64 else torch.float32)
    with device_of(fake):
        _adv_loss_fwd_kernel[(programs,)](
            fake,
            real if real is not None else fake,
            partial,
            n,
            FAKE_SIGN=fake_sign,
            HAS_REAL=real is not None,
            ACC=acc,
            BLOCK=BLOCK,
            ITERS=REDUCE_ITERS,
        )
    return (partial.sum() / n).to(fake.dtype)


def _backward(grad: torch.Tensor, fake: torch.Tensor, real: torch.Tensor | None, fake_sign: float):
    n = fake.numel()
    grad_fake = torch.empty_like(fake)
    grad_real = torch.empty_like(real) if real is not None else None
    with device_of(fake):
        _adv_loss_bwd_kernel[(triton.cdiv(n, BLOCK),)](
            grad,
            fake,
            real if real is not None else fake,
            grad_fake,
            grad_real if grad_real is not None else grad_fake,
            n,
            FAKE_SIGN=fake_sign,
            HAS_REAL=real is not None,
            ACC=acc_dtype(fake),
            BLOCK=BLOCK,
        )
    return grad_fake, grad_real


def d_adv_loss_fwd(d_fake: torch.Tensor, d_real: torch.Tensor) -> torch.Tensor:
    """mean(softplus(d_fake) + softplus(-d_real)) of contiguous 1-D logits, 0-d."""
    return _forward(d_fake, d_real, 1.0)


def d_adv_loss_bwd(grad: torch.Tensor, d_fake: torch.Tensor, d_real: torch.Tensor):
    """Gradients of d_adv_loss_fwd for upstream ``grad`` (0-d)."""
    return _backward(grad, d_fake, d_real, 1.0)


def g_adv_loss_fwd(d_fake: torch.Tensor) -> torch.Tensor:
    """mean(softplus(-d_fake)) of contiguous 1-D logits, 0-d."""
    return _forward(d_fake, None, -1.0)


def g_adv_loss_bwd(grad: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Gradient of g_adv_loss_fwd for upstream ``grad`` (0-d)."""
    return _backward(grad, d_fake, None, -1.0)[0]
