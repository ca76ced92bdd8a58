"""Triton kernels of r1_penalty over a row-major [N, M] matrix of gradients."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import BLOCK
from .common import REDUCE_ITERS
from .common import acc_dtype
from .common import device_of

# A grid's second dimension holds at most 65535 programs: taller inputs go in slices.
MAX_ROWS = 65535


@triton.jit
def _r1_fwd_kernel(
    grads_ptr, partial_ptr, row_len, chunks, ACC: tl.constexpr, BLOCK: tl.constexpr, ITERS: tl.constexpr
):
    chunk = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    acc = tl.zeros([BLOCK], dtype=ACC)
    start = chunk.to(tl.int64) * (BLOCK * ITERS)
    for it in range(ITERS):  # rolled: unrolled, ITERS x BLOCK lanes spilled (fp16, sm_90)
        cols = start + it * BLOCK + tl.arange(0, BLOCK)
        mask = cols < row_len
        g = tl.load(grads_ptr + row * row_len + cols, mask=mask, other=0.0).to(ACC)
        acc += g * g
    tl.store(partial_ptr + row * chunks + chunk, tl.sum(acc, axis=0))


@triton.jit
def _r1_bwd_kernel(scale_ptr, grads_ptr, out_ptr, row_len, ACC: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(1).to(tl.int64)
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < row_len
    scale = tl.load(scale_ptr + row)
    g = tl.load(grads_ptr + row * row_len + cols, mask=mask, other=0.0).to(ACC)
    tl.store(out_ptr + row * row_len + cols, (scale * g).to(out_ptr.dtype.element_ty), mask=mask)


def r1_penalty_fwd(grads: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma / 2 * row sums of squares of a contiguous [N, M] matrix, [N]."""
    rows, row_len = grads.shape
    acc = acc_dtype(grads)
    chunks = max(1, triton.cdiv(row_len, BLOCK * REDUCE_ITERS))
    partial = torch.zeros(
        rows, chunks, device=grads.device, dtype=torch.float64 if acc == tl.float64 else torch.float32
    )
    if row_len > 0:
        with device_of(grads):
            for r0 in range(0, rows, MAX_ROWS):
                r1 = min(rows, r0 + MAX_ROWS)
                _r1_fwd_kernel[(chunks, r1 - r0)](
                    grads[r0:r1], partial[r0:r1], row_len, chunks, ACC=acc, BLOCK=BLOCK, ITERS=REDUCE_ITERS
                )
    return (partial.sum(dim=1) * (0.5 * gamma)).to(grads.dtype)


def r1_penalty_bwd(grad: torch.Tensor, grads: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma * grad[:, None] * grads for a contiguous [N, M] ``grads`` and [N] ``grad``."""
    rows, row_len = grads.shape
    out = torch.empty_like(grads)
    # gamma * grad per row, in the accumulation dtype, computed here because a Python float
    # argument would arrive as float32 in compiled Triton.
    scale = grad.to(torch.float64 if grads.dtype == torch.float64 else torch.float32) * gamma
    if row_len > 0:
        with device_of(grads):
            for r0 in range(0, rows, MAX_ROWS):
                r1 = min(rows, r0 + MAX_ROWS)
                _r1_bwd_kernel[(triton.cdiv(row_len, BLOCK), r1 - r0)](
                    scale[r0:r1], grads[r0:r1], out[r0:r1], row_len, ACC=acc_dtype(grads), BLOCK=BLOCK
                )
    return out
