"""Triton kernels of adain: t = x + noise_weight[c] * noise + bias[c], a = lrelu(t),
instance-normalised per (n, c) row, then y = xn * (1 + style scale) + style shift; and its
gradients.

Row tiling as in encode_norm: a program owns ROWS whole rows of M = H * W elements and walks
them in BM-wide chunks (``while`` loops, see encode_norm), statistics first, then the writes.
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
def _adain_rows(
    noise_weight_ptr,
    bias_ptr,
    rows,
    C,
    M,
    alpha,
    HAS_NOISE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ACC: tl.constexpr,
    ROWS: tl.constexpr,
):
    """row_block's (r, row_mask, n, alpha in ACC); the rows' noise weight and bias in ACC (0
    where absent); the offsets of the rows' x and noise rows."""
    r, row_mask, c, n, alpha_acc = row_block(rows, C, alpha, ACC, ROWS)
    weight = tl.zeros([ROWS], dtype=ACC)
    bias = tl.zeros([ROWS], dtype=ACC)
    if HAS_NOISE:
        weight = tl.load(noise_weight_ptr + c, mask=row_mask, other=0.0).to(ACC)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + c, mask=row_mask, other=0.0).to(ACC)
    return r, row_mask, n, alpha_acc, weight, bias, r * M, n * M


@triton.jit
def _pre_activation(
    x_ptr,
    noise_ptr,
    rows_base,
    noise_base,
    row_mask,
    start,
    M,
    weight,
    bias,
    HAS_NOISE: tl.constexpr,
    ACC: tl.constexpr,
    BM: tl.constexpr,
):
    """The [ROWS, BM] chunk of columns start..: its (mask, offsets, t = x + noise_weight *
    noise + bias, noise (0 if none))."""
    cols, mask, offs = row_chunk(rows_base, row_mask, start, M, BM)
    t = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
    noise = tl.zeros_like(t)
    if HAS_NOISE:
        noise = tl.load(noise_ptr + noise_base[:, None] + cols[None, :], mask=mask, other=0.0).to(ACC)
        t += weight[:, None] * noise
    return mask, offs, t + bias[:, None], noise


@triton.jit
def _adain_fwd_kernel(
    x_ptr,
    style_ptr,
    noise_ptr,
    noise_weight_ptr,
    bias_ptr,
    y_ptr,
    stats_ptr,
    rows,
    C,
    M,
    alpha: tl.float64,
    eps: tl.float64,
    HAS_NOISE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ACC: tl.constexpr,
    ROWS: tl.constexpr,
    BM: tl.constexpr,
):
    """y and the (mean, rstd) stats of ROWS rows: their statistics in a first pass over BM-wide
    chunks, then y in a second."""
    r, row_mask, n, alpha_acc, weight, bias, rows_base, noise_base = _adain_rows(
        noise_weight_ptr, bias_ptr, rows, C, M, alpha, HAS_NOISE, HAS_BIAS, ACC, ROWS
    )
    # Pass 1: the row's mean and sum of squared deviations, accumulated shifted by the row's
    # first activation (the loop's expression on column 0: the same rounding).
    t0 = tl.load(x_ptr + rows_base, mask=row_mask, other=0.0).to(ACC)
    if HAS_NOISE:
        t0 += weight * tl.load(noise_ptr + noise_base, mask=row_mask, other=0.0).to(ACC)
    shift0 = lrelu(t0 + bias, alpha_acc)
    mean = tl.zeros([ROWS], dtype=ACC)
    m2 = tl.zeros([ROWS], dtype=ACC)
    start = 0
    while start < M:
        mask, offs, t, _ = _pre_activation(
            x_ptr, noise_ptr, rows_base, noise_base, row_mask, start, M, weight, bias, HAS_NOISE, ACC, BM
        )
        mean, m2 = merge_chunk_moments(mean, m2, lrelu(t, alpha_acc), shift0, mask, start, M, BM)
        start += BM
    mean = row_mean(shift0, mean)
    rstd = div_rn(tl.full([ROWS], 1.0, ACC), sqrt_rn(m2 / M + acc_scalar(eps, ACC)))
    scale = 1.0 + tl.load(style_ptr + r + n * C, mask=row_mask, other=0.0).to(ACC)
    shift = tl.load(style_ptr + r + n * C + C, mask=row_mask, other=0.0).to(ACC)
    # Pass 2: y = (a - mean) * rstd * (1 + scale) + shift.
    start = 0
    while start < M:
        mask, offs, t, _ = _pre_activation(
            x_ptr, noise_ptr, rows_base, noise_base, row_mask, start, M, weight, bias, HAS_NOISE, ACC, BM
        )
        xn = (lrelu(t, alpha_acc) - mean[:, None]) * rstd[:, None]
        y = xn * scale[:, None] + shift[:, None]
        tl.store(y_ptr + offs, cast_to(y, y_ptr.dtype.element_ty), mask=mask)
        start += BM
    tl.store(stats_ptr + r + n * C, mean, mask=row_mask)
    tl.store(stats_ptr + r + n * C + C, rstd, mask=row_mask)


@triton.jit
def _adain_bwd_kernel(
    grad_y_ptr,
    x_ptr,
    style_ptr,
    noise_ptr,
    noise_weight_ptr,
    bias_ptr,
    stats_ptr,
    grad_x_ptr,
    grad_style_ptr,
    partial_noise_ptr,
    partial_bias_ptr,
    rows,
    C,
    M,
    alpha: tl.float64,
    HAS_NOISE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ACC: tl.constexpr,
    ROWS: tl.constexpr,
    BM: tl.constexpr,
):
    """The gradients of ROWS rows from their stats: two passes over BM-wide chunks."""
    r, row_mask, n, alpha_acc, weight, bias, rows_base, noise_base = _adain_rows(
        noise_weight_ptr, bias_ptr, rows, C, M, alpha, HAS_NOISE, HAS_BIAS, ACC, ROWS
    )
    mean = tl.load(stats_ptr + r + n * C, mask=row_mask, other=0.0)
    rstd = tl.load(stats_ptr + r + n * C + C, mask=row_mask, other=0.0)
    scale = 1.0 + tl.load(style_ptr + r + n * C, mask=row_mask, other=0.0).to(ACC)
    # Pass 1: sum(grad_y) and sum(grad_y * xn) per row.
    sum_g = tl.zeros([ROWS, BM], dtype=ACC)
    sum_gx = tl.zeros([ROWS, BM], dtype=ACC)
    start = 0
    while start < M:
        mask, offs, t, _ = _pre_activation(
            x_ptr, noise_ptr, rows_base, noise_base, row_mask, start, M, weight, bias, HAS_NOISE, ACC, BM
        )
        gy = tl.load(grad_y_ptr + offs, mask=mask, other=0.0).to(ACC)
        sum_g += gy
        sum_gx += gy * ((lrelu(t, alpha_acc) - mean[:, None]) * rstd[:, None])  # gy = 0 masked
        start += BM
    s_g = tl.sum(sum_g, axis=1)
    s_gx = tl.sum(sum_gx, axis=1)
    style_dt = grad_style_ptr.dtype.element_ty
    tl.store(grad_style_ptr + r + n * C, cast_to(s_gx, style_dt), mask=row_mask)
    tl.store(grad_style_ptr + r + n * C + C, cast_to(s_g, style_dt), mask=row_mask)
    k = scale * rstd
    mean_g = s_g / M
    mean_gx = s_gx / M
    # Pass 2: grad_x = s(t) * k * (grad_y - Sg / M - xn * Sgx / M), and its row sums.
    sum_gt = tl.zeros([ROWS, BM], dtype=ACC)
    sum_gt_noise = tl.zeros_like(sum_gt)
    start = 0
    while start < M:
        mask, offs, t, noise = _pre_activation(
            x_ptr, noise_ptr, rows_base, noise_base, row_mask, start, M, weight, bias, HAS_NOISE, ACC, BM
        )
        gy = tl.load(grad_y_ptr + offs, mask=mask, other=0.0).to(ACC)
        xn = (lrelu(t, alpha_acc) - mean[:, None]) * rstd[:, None]
        ga = k[:, None] * (gy - mean_g[:, None] - xn * mean_gx[:, None])
        gt = tl.where(mask, tl.where(t > 0, ga, alpha_acc * ga), 0.0)
        tl.store(grad_x_ptr + offs, cast_to(gt, grad_x_ptr.dtype.element_ty), mask=mask)
        sum_gt += gt
        sum_gt_noise += gt * noise
        start += BM
    tl.store(partial_bias_ptr + r, tl.sum(sum_gt, axis=1), mask=row_mask)
    if HAS_NOISE:
        tl.store(partial_noise_ptr + r, tl.sum(sum_gt_noise, axis=1), mask=row_mask)


def adain_fwd(
    x: torch.Tensor,
    style: torch.Tensor,
    noise: torch.Tensor | None,
    noise_weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    alpha: float,
    eps: float,
):
    """(y, stats [N, 2C] = (mean | rstd) in the accumulation dtype) of a row-major
    x [N, C, H, W]; see the kernel spec."""
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    stats = torch.empty(x.shape[0], 2 * x.shape[1], dtype=acc_torch_dtype(x), device=x.device)
    pointers = (x, style, *_optional(x, noise, noise_weight, bias), y, stats)
    launch_rows(_adain_fwd_kernel, x, pointers, (float(alpha), float(eps)), **_flags(noise, bias))
    return y, stats


def _optional(x: torch.Tensor, *tensors):
    """The optional tensor arguments, x standing in for the absent ones (never read)."""
    return tuple(x if t is None else t for t in tensors)


def _flags(noise: torch.Tensor | None, bias: torch.Tensor | None):
    """The kernels' HAS_NOISE and HAS_BIAS flags."""
    return {"HAS_NOISE": noise is not None, "HAS_BIAS": bias is not None}


def adain_bwd(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    style: torch.Tensor,
    noise: torch.Tensor | None,
    noise_weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    stats: torch.Tensor,
    alpha: float,
    eps: float,
):
    """(grad_x, grad_style, grad_noise_weight, grad_bias) of adain_fwd; ``eps`` is already
    folded into stats. grad_noise_weight is zeros without noise; grad_bias is always
    computed."""
    grad_x = torch.empty_like(x, memory_format=torch.contiguous_format)
    grad_style = torch.empty(x.shape[0], 2 * x.shape[1], dtype=x.dtype, device=x.device)
    partial_noise = torch.zeros(x.shape[:2], dtype=acc_torch_dtype(x), device=x.device)
    partial_bias = torch.zeros(x.shape[:2], dtype=acc_torch_dtype(x), device=x.device)
    optional = _optional(x, noise, noise_weight, bias)
    pointers = (grad_y, x, style, *optional, stats, grad_x, grad_style, partial_noise, partial_bias)
    launch_rows(_adain_bwd_kernel, x, pointers, (float(alpha),), **_flags(noise, bias))
    return (grad_x, grad_style, partial_noise.sum(dim=0).to(x.dtype), partial_bias.sum(dim=0).to(x.dtype))
