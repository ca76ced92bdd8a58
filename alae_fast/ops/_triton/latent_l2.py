"""Triton kernels of latent_l2: mean((a - b)^2) and its gradients."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import BLOCK
from .common import REDUCE_ITERS
from .common import acc_dtype
from .common import device_of


@triton.jit
def _l2_fwd_kernel(a_ptr, b_ptr, partial_ptr, n, ACC: tl.constexpr, BLOCK: tl.constexpr, ITERS: tl.constexpr):
    pid = tl.program_id(0)
    acc = tl.zeros([BLOCK], dtype=ACC)
    start = pid.to(tl.int64) * (BLOCK * ITERS)
    for it in range(ITERS):  # rolled: unrolled, ITERS x BLOCK lanes spilled (fp16, sm_90)
        offs = start + it * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        d = tl.load(a_ptr + offs, mask=mask, other=0.0).to(ACC) - tl.load(b_ptr + offs, mask=mask, other=0.0).to(ACC)
        acc += d * d
    tl.store(partial_ptr + pid, tl.sum(acc, axis=0))


@triton.jit
def _l2_bwd_kernel(grad_ptr, a_ptr, b_ptr, grad_a_ptr, grad_b_ptr, n, ACC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    # Divide in ACC (a Python float argument would arrive as float32 in compiled Triton).
    scale = 2.0 * tl.load(grad_ptr).to(ACC) / n
    d = tl.load(a_ptr + offs, mask=mask, other=0.0).to(ACC) - tl.load(b_ptr + offs, mask=mask, other=0.0).to(ACC)
    g = scale * d
    tl.store(grad_a_ptr + offs, g.to(grad_a_ptr.dtype.element_ty), mask=mask)
    tl.store(grad_b_ptr + offs, (-g).to(grad_b_ptr.dtype.element_ty), mask=mask)


def latent_l2_fwd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """mean((a - b)^2) of two contiguous tensors of one shape, 0-d."""
    n = a.numel()
    acc = acc_dtype(a)
    programs = triton.cdiv(n, BLOCK * REDUCE_ITERS)
    partial = torch.empty(programs, device=a.device, dtype=torch.float64 if acc == tl.float64 else torch.float32)
    with device_of(a):
        _l2_fwd_kernel[(programs,)](a, b, partial, n, ACC=acc, BLOCK=BLOCK, ITERS=REDUCE_ITERS)
    return (partial.sum() / n).to(a.dtype)


def latent_l2_bwd(grad: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
    """Gradients of latent_l2_fwd for upstream ``grad`` (0-d)."""
    n = a.numel()
    grad_a = torch.empty_like(a)
    grad_b = torch.empty_like(b)
    with device_of(a):
        _l2_bwd_kernel[(triton.cdiv(n, BLOCK),)](grad, a, b, grad_a, grad_b, n, ACC=acc_dtype(a), BLOCK=BLOCK)
    return grad_a, grad_b
