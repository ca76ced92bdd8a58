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

from .common import acc_dtype
from .common import acc_scalar
from .common import acc_torch_dtype
from .common import cast_to
from .common import device_of
from .common import div_rn
from .common import lrelu
from .common import merge_chunk_moments
from .common import row_mean
from .common import row_tile
from .common import sqrt_rn


@triton.jit
def _row_params(
    noise_weight_ptr,
    bias_ptr,
    c,
    row_mask,
    HAS_NOISE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ACC: tl.constexpr,
    ROWS: tl.constexpr,
):
    """Per-row noise weight and bias in ACC (0 where absent)."""
    weight = tl.zeros([ROWS], dtype=ACC)
    bias = tl.zeros([ROWS], dtype=ACC)
    if HAS_NOISE:
        weight = tl.load(noise_weight_ptr + c, mask=row_mask, other=0.0).to(ACC)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + c, mask=row_mask, other=0.0).to(ACC)
    return weight, bias


@triton.jit
def _pre_activation(x_ptr, noise_ptr, offs, noise_offs, mask, weight, bias, HAS_NOISE: tl.constexpr, ACC: tl.constexpr):
    """t = x + noise_weight * noise + bias on a [ROWS, BM] chunk, and the noise (0 if none)."""
    t = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
    noise = tl.zeros_like(t)
    if HAS_NOISE:
        noise = tl.load(noise_ptr + noise_offs, mask=mask, other=0.0).to(ACC)
        t += weight[:, None] * noise
    return t + bias[:, None], noise


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
    r = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    row_mask = r < rows
    c = r % C
    n = r // C
    alpha_acc = acc_scalar(alpha, ACC)
    weight, bias = _row_params(noise_weight_ptr, bias_ptr, c, row_mask, HAS_NOISE, HAS_BIAS, ACC, ROWS)
    rows_base = r * M
    noise_base = n * M
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
        cols = start + tl.arange(0, BM)
        mask = row_mask[:, None] & (cols < M)[None, :]
        t, _ = _pre_activation(
            x_ptr,
            noise_ptr,
            rows_base[:, None] + cols[None, :],
            noise_base[:, None] + cols[None, :],
            mask,
            weight,
            bias,
            HAS_NOISE,
            ACC,
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
        cols = start + tl.arange(0, BM)
        mask = row_mask[:, None] & (cols < M)[None, :]
        offs = rows_base[:, None] + cols[None, :]
        t, _ = _pre_activation(
            x_ptr, noise_ptr, offs, noise_base[:, None] + cols[None, :], mask, weight, bias, HAS_NOISE, ACC
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
    r = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    row_mask = r < rows
    c = r % C
    n = r // C
    alpha_acc = acc_scalar(alpha, ACC)
    weight, bias = _row_params(noise_weight_ptr, bias_ptr, c, row_mask, HAS_NOISE, HAS_BIAS, ACC, ROWS)
    mean = tl.load(stats_ptr + r + n * C, mask=row_mask, other=0.0)
    rstd = tl.load(stats_ptr + r + n * C + C, mask=row_mask, other=0.0)
    scale = 1.0 + tl.load(style_ptr + r + n * C, mask=row_mask, other=0.0).to(ACC)
    rows_base = r * M
    noise_base = n * M
    # Pass 1: sum(grad_y) and sum(grad_y * xn) per row.
    sum_g = tl.zeros([ROWS, BM], dtype=ACC)
    sum_gx = tl.zeros([ROWS, BM], dtype=ACC)
    start = 0
    while start < M:
        cols = start + tl.arange(0, BM)
        mask = row_mask[:, None] & (cols < M)[None, :]
        offs = rows_base[:, None] + cols[None, :]
        gy = tl.load(grad_y_ptr + offs, mask=mask, other=0.0).to(ACC)
        t, _ = _pre_activation(
            x_ptr, noise_ptr, offs, noise_base[:, None] + cols[None, :], mask, weight, bias, HAS_NOISE, ACC
        )
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
    sum_gt_noise = tl.zeros([ROWS, BM], dtype=ACC)
    start = 0
    while start < M:
        cols = start + tl.arange(0, BM)
        mask = row_mask[:, None] & (cols < M)[None, :]
        offs = rows_base[:, None] + cols[None, :]
        gy = tl.load(grad_y_ptr + offs, mask=mask, other=0.0).to(ACC)
        t, noise = _pre_activation(
            x_ptr, noise_ptr, offs, noise_base[:, None] + cols[None, :], mask, weight, bias, HAS_NOISE, ACC
        )
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
    n, channels, height, width = x.shape
    rows, row_len = n * channels, height * width
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    stats = torch.empty(n, 2 * channels, dtype=acc_torch_dtype(x), device=x.device)
    if rows == 0:
        return y, stats
    block_rows, bm = row_tile(rows, row_len)
    with device_of(x):
        _adain_fwd_kernel[(triton.cdiv(rows, block_rows),)](
            x,
            style,
            noise if noise is not None else x,
            noise_weight if noise_weight is not None else x,
            bias if bias is not None else x,
            y,
            stats,
            rows,
            channels,
            row_len,
            float(alpha),
            float(eps),
            HAS_NOISE=noise is not None,
            HAS_BIAS=bias is not None,
            ACC=acc_dtype(x),
            ROWS=block_rows,
            BM=bm,
        )
    return y, stats


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
    n, channels, height, width = x.shape
    rows, row_len = n * channels, height * width
    grad_x = torch.empty_like(x, memory_format=torch.contiguous_format)
    grad_style = torch.empty(n, 2 * channels, dtype=x.dtype, device=x.device)
    partial_noise = torch.zeros(n, channels, dtype=acc_torch_dtype(x), device=x.device)
    partial_bias = torch.zeros(n, channels, dtype=acc_torch_dtype(x), device=x.device)
    if rows > 0:
        block_rows, bm = row_tile(rows, row_len)
        with device_of(x):
            _adain_bwd_kernel[(triton.cdiv(rows, block_rows),)](
                grad_y,
                x,
                style,
                noise if noise is not None else x,
                noise_weight if noise_weight is not None else x,
                bias if bias is not None else x,
                stats,
                grad_x,
                grad_style,
                partial_noise,
                partial_bias,
                rows,
                channels,
                row_len,
                float(alpha),
                HAS_NOISE=noise is not None,
                HAS_BIAS=bias is not None,
                ACC=acc_dtype(x),
                ROWS=block_rows,
                BM=bm,
            )
    return (grad_x, grad_style, partial_noise.sum(dim=0).to(x.dtype), partial_bias.sum(dim=0).to(x.dtype))
