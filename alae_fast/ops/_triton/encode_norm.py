"""Triton kernels of encode_norm: a = lrelu(x + bias[c]), instance-normalised per (n, c) row,
with the row's (mean, std) as the style; and its gradients.

A program owns ROWS whole rows of M = H * W elements and walks them in BM-wide chunks: a
first pass for the statistics, a second that writes. Rows of any length fit (a 1024 x 1024
map is 1024 chunks); short rows share a program so the tile stays about BLOCK elements.
The chunk loops are ``while`` loops: Triton 3.5's interpreter cannot take a runtime bound in
``range`` under NumPy >= 2.4 (it converts a 1-element array with int()).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import acc_scalar
from .common import acc_torch_dtype
from .common import cast_to
from .common import div_rn
from .common import launch_rows
from .common import lrelu
from .common import merge_chunk_moments
from .common import row_block
from .common import row_chunk
from .common import row_mean
from .common import sqrt_rn


@triton.jit
def _rows(bias_ptr, rows, C, M, alpha, ACC: tl.constexpr, ROWS: tl.constexpr):
    """row_block's (r, row_mask, n, alpha in ACC), the rows' bias in ACC and their offsets."""
    r, row_mask, c, n, alpha_acc = row_block(rows, C, alpha, ACC, ROWS)
    bias = tl.load(bias_ptr + c, mask=row_mask, other=0.0).to(ACC)
    return r, row_mask, n, alpha_acc, bias, r * M


@triton.jit
def _encode_norm_fwd_kernel(
    x_ptr,
    bias_ptr,
    y_ptr,
    style_ptr,
    stats_ptr,
    rows,
    C,
    M,
    alpha: tl.float64,
    eps: tl.float64,
    ACC: tl.constexpr,
    ROWS: tl.constexpr,
    BM: tl.constexpr,
):
    """y, style and the (mean, std, rstd) stats of ROWS rows: their statistics in a first pass
    over BM-wide chunks, then y in a second."""
    r, row_mask, n, alpha_acc, bias, rows_base = _rows(bias_ptr, rows, C, M, alpha, ACC, ROWS)
    # Pass 1: the row's mean and sum of squared deviations, accumulated shifted by the row's
    # first activation (the loop's expression on column 0: the same rounding).
    x0 = tl.load(x_ptr + rows_base, mask=row_mask, other=0.0)
    shift0 = lrelu(x0.to(ACC) + bias, alpha_acc)
    mean = tl.zeros([ROWS], dtype=ACC)
    m2 = tl.zeros([ROWS], dtype=ACC)
    start = 0
    while start < M:
        _, mask, offs = row_chunk(rows_base, row_mask, start, M, BM)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0)
        a = lrelu(x.to(ACC) + bias[:, None], alpha_acc)
        mean, m2 = merge_chunk_moments(mean, m2, a, shift0, mask, start, M, BM)
        start += BM
    mean = row_mean(shift0, mean)
    var = m2 / M
    std = sqrt_rn(var)
    rstd = div_rn(tl.full([ROWS], 1.0, ACC), sqrt_rn(var + acc_scalar(eps, ACC)))
    # Pass 2: y = (a - mean) * rstd.
    start = 0
    while start < M:
        _, mask, offs = row_chunk(rows_base, row_mask, start, M, BM)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0)
        a = lrelu(x.to(ACC) + bias[:, None], alpha_acc)
        y = (a - mean[:, None]) * rstd[:, None]
        tl.store(y_ptr + offs, cast_to(y, y_ptr.dtype.element_ty), mask=mask)
        start += BM
    style_dt = style_ptr.dtype.element_ty
    tl.store(style_ptr + r + n * C, cast_to(mean, style_dt), mask=row_mask)
    tl.store(style_ptr + r + n * C + C, cast_to(std, style_dt), mask=row_mask)
    tl.store(stats_ptr + r + 2 * n * C, mean, mask=row_mask)
    tl.store(stats_ptr + r + 2 * n * C + C, std, mask=row_mask)
    tl.store(stats_ptr + r + 2 * n * C + 2 * C, rstd, mask=row_mask)


@triton.jit
def _encode_norm_bwd_kernel(
    grad_y_ptr,
    grad_style_ptr,
    x_ptr,
    bias_ptr,
    stats_ptr,
    grad_x_ptr,
    partial_ptr,
    rows,
    C,
    M,
    alpha: tl.float64,
    ACC: tl.constexpr,
    ROWS: tl.constexpr,
    BM: tl.constexpr,
):
    """grad_x and the grad_bias partials of ROWS rows from their stats: two passes."""
    r, row_mask, n, alpha_acc, bias, rows_base = _rows(bias_ptr, rows, C, M, alpha, ACC, ROWS)
    mean = tl.load(stats_ptr + r + 2 * n * C, mask=row_mask, other=0.0)
    std = tl.load(stats_ptr + r + 2 * n * C + C, mask=row_mask, other=1.0)
    rstd = tl.load(stats_ptr + r + 2 * n * C + 2 * C, mask=row_mask, other=0.0)
    g_mean = tl.load(grad_style_ptr + r + n * C, mask=row_mask, other=0.0).to(ACC)
    g_std = tl.load(grad_style_ptr + r + n * C + C, mask=row_mask, other=0.0).to(ACC)
    # Pass 1: sum(grad_y) and sum(grad_y * y) per row.
    sum_g = tl.zeros([ROWS, BM], dtype=ACC)
    sum_gy = tl.zeros([ROWS, BM], dtype=ACC)
    start = 0
    while start < M:
        _, mask, offs = row_chunk(rows_base, row_mask, start, M, BM)
        gy = tl.load(grad_y_ptr + offs, mask=mask, other=0.0).to(ACC)
        a = lrelu(tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC) + bias[:, None], alpha_acc)
        sum_g += gy
        sum_gy += gy * ((a - mean[:, None]) * rstd[:, None])  # gy = 0 on masked lanes
        start += BM
    s_g = tl.sum(sum_g, axis=1)
    s_gy = tl.sum(sum_gy, axis=1)
    c0 = -rstd * s_g / M + g_mean / M
    # No std gradient means no std term, even for a constant row (std 0, where 0/0 is NaN).
    c1 = -rstd * rstd * s_gy / M + tl.where(g_std == 0.0, 0.0, g_std / (std * M))
    # Pass 2: grad_x = s(t) * (rstd * grad_y + c0 + c1 * d), and its row sums for grad_bias.
    sum_gx = tl.zeros([ROWS, BM], dtype=ACC)
    start = 0
    while start < M:
        _, mask, offs = row_chunk(rows_base, row_mask, start, M, BM)
        gy = tl.load(grad_y_ptr + offs, mask=mask, other=0.0).to(ACC)
        t = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC) + bias[:, None]
        d = lrelu(t, alpha_acc) - mean[:, None]
        ga = rstd[:, None] * gy + c0[:, None] + c1[:, None] * d
        gx = tl.where(t > 0, ga, alpha_acc * ga)
        tl.store(grad_x_ptr + offs, cast_to(gx, grad_x_ptr.dtype.element_ty), mask=mask)
        sum_gx += tl.where(mask, gx, 0.0)
        start += BM
    tl.store(partial_ptr + r, tl.sum(sum_gx, axis=1), mask=row_mask)


def encode_norm_fwd(x: torch.Tensor, bias: torch.Tensor, alpha: float, eps: float):
    """(y, style [N, 2C], stats [N, 3C] in the accumulation dtype) of a row-major
    x [N, C, H, W]; see the kernel spec."""
    n, channels = x.shape[:2]
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    style = torch.empty(n, 2 * channels, dtype=x.dtype, device=x.device)
    stats = torch.empty(n, 3 * channels, dtype=acc_torch_dtype(x), device=x.device)
    launch_rows(_encode_norm_fwd_kernel, x, (x, bias, y, style, stats), (float(alpha), float(eps)))
    return y, style, stats


def encode_norm_bwd(
    grad_y: torch.Tensor,
    grad_style: torch.Tensor,
    x: torch.Tensor,
    bias: torch.Tensor,
    stats: torch.Tensor,
    alpha: float,
    eps: float,
):
    """(grad_x, grad_bias) of encode_norm_fwd; ``eps`` is already folded into stats."""
    grad_x = torch.empty_like(x, memory_format=torch.contiguous_format)
    partial = torch.zeros(x.shape[:2], dtype=acc_torch_dtype(x), device=x.device)
    pointers = (grad_y, grad_style, x, bias, stats, grad_x, partial)
    launch_rows(_encode_norm_bwd_kernel, x, pointers, (float(alpha),))
    return grad_x, partial.sum(dim=0).to(x.dtype)
