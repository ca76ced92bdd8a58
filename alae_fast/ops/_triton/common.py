"""Helpers shared by the Triton kernels."""

from __future__ import annotations

import contextlib
import os

import torch
import triton
import triton.language as tl

# Elements a program handles per loop step, and loop steps per program in the reductions:
# large enough that the interpreter (one Python loop iteration per program) stays fast and a
# GPU program streams several KB, small enough that big inputs still give many programs.
BLOCK = 1024
REDUCE_ITERS = 8
# Elements per program of the element-wise, stencil and row kernels. The
# interpreter pays per program and per operation, not per element, so it gets 16x larger tiles
# (the CPU test runs of the whole model are dominated by these kernels otherwise).
TILE = BLOCK * 16 if os.environ.get("TRITON_INTERPRET", "0") == "1" else BLOCK


def acc_dtype(t: torch.Tensor):
    """Accumulation type: float64 for float64 inputs, float32 otherwise."""
    return tl.float64 if t.dtype == torch.float64 else tl.float32


def device_of(t: torch.Tensor):
    """Context that makes ``t``'s GPU the current one for the launch (no-op on CPU)."""
    if t.device.type == "cuda":
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


@triton.jit
def softplus(x):
    """max(x, 0) + log1p(exp(-|x|)), finite for any finite x; log1p written out so it stays
    accurate when exp(-|x|) is below the rounding of 1 + exp(-|x|)."""
    e = tl.exp(-tl.abs(x))
    u = 1.0 + e
    d = u - 1.0
    safe_d = tl.where(d == 0.0, 1.0, d)
    log1p_e = tl.where(d == 0.0, e, tl.log(u) * (e / safe_d))
    return tl.maximum(x, 0.0) + log1p_e


@triton.jit
def sigmoid(x):
    """1 / (1 + exp(-x)) without overflow for either sign."""
    e = tl.exp(-tl.abs(x))
    return tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# ---- Helpers of the layer kernels (bias_act, blur, encode_norm, adain, linear_act, lreq_adam).


# The interpreter truncates float32 -> bfloat16 (compiled Triton rounds to nearest even) and
# multiplies bfloat16 dot operands as raw integers: kernels correct for both where this is set.
INTERPRETED = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") == "1")


def acc_torch_dtype(t: torch.Tensor) -> torch.dtype:
    """torch dtype of the accumulation type of ``t`` (float64 for float64, else float32)."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def pow2_block(n: int, cap: int) -> int:
    """The power of two covering ``n`` (at least 1), capped at the power of two ``cap``."""
    return min(triton.next_power_of_2(max(int(n), 1)), cap)


def is_channels_last_4d(x: torch.Tensor) -> bool:
    """True for a 4-D channels_last tensor that is not also row-major contiguous."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


@triton.jit
def acc_scalar(value, ACC: tl.constexpr):
    """A scalar kernel argument in the accumulation type. Declare the argument ``tl.float64``
    so compiled Triton does not round it to float32 on the way in (the interpreter passes the
    Python float itself)."""
    return tl.full([], value, ACC)


@triton.jit
def lrelu(t, alpha):
    """t where t > 0, else alpha * t (the slope at 0 is alpha)."""
    return tl.where(t > 0, t, alpha * t)


@triton.jit
def _bf16_round_nearest_even(x):
    bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
    rounded = bits + (0x7FFF + ((bits >> 16) & 1))
    rounded = tl.where(x != x, 0x7FC00000, rounded)  # any NaN -> the canonical quiet NaN
    return (rounded >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def cast_to(x, DT: tl.constexpr):
    """``x`` rounded to nearest even in dtype DT, in compiled Triton and the interpreter."""
    y = x.to(DT)
    if INTERPRETED:
        if DT == tl.bfloat16:
            y = _bf16_round_nearest_even(x)
    return y


@triton.jit
def sqrt_rn(x):
    """Correctly rounded square root (tl.sqrt is approximate for float32; tl.sqrt_rn takes
    float32 only, and float64 tl.sqrt is already correctly rounded)."""
    if x.dtype == tl.float64:
        return tl.sqrt(x)
    else:
        return tl.sqrt_rn(x)


@triton.jit
def div_rn(x, y):
    """Correctly rounded x / y (float32 '/' is approximate in compiled Triton)."""
    if x.dtype == tl.float64:
        return x / y
    else:
        return tl.div_rn(x, y)


def row_tile(rows: int, row_len: int):
    """(ROWS, BM) of the row kernels: a chunk width covering short rows (at most TILE), and
    as many rows per program as keep the tile within TILE elements."""
    chunk = pow2_block(row_len, TILE)
    return pow2_block(rows, TILE // chunk), chunk


@triton.jit
def merge_chunk_moments(mean, m2, a, shift, mask, start, row_len, BM: tl.constexpr):
    """Fold the [ROWS, BM] chunk ``a`` of columns start.. (masked lanes ignored) into the
    running per-row mean of ``a - shift`` and sum of squared deviations: two-pass inside the
    chunk, merged with Chan et al.'s pairwise formula (stable, and in a fixed order).

    Shifted accumulation: with ``shift`` a value of the row (its first, see row_mean), a
    constant row folds exact zeros, so its shifted mean and m2 stay exactly 0 and
    ``shift + mean`` is exactly its value."""
    seen = tl.full([], start, mean.dtype)
    count = tl.minimum(row_len - start, BM).to(mean.dtype)
    a = a - shift[:, None]
    chunk_mean = tl.sum(tl.where(mask, a, 0.0), axis=1) / count
    dev = tl.where(mask, a - chunk_mean[:, None], 0.0)
    chunk_m2 = tl.sum(dev * dev, axis=1)
    total = seen + count
    delta = chunk_mean - mean
    return mean + delta * (count / total), m2 + chunk_m2 + delta * delta * (seen * count / total)


@triton.jit
def row_mean(shift, shifted_mean):
    """The row's mean from merge_chunk_moments' shifted one: exactly ``shift`` (the row's
    value) for a constant row, whose centred values a - mean are then exactly 0."""
    return shift + shifted_mean


@triton.jit
def row_block(rows, C, alpha, ACC: tl.constexpr, ROWS: tl.constexpr):
    """The row kernels' prologue: this program's ROWS rows r = n * C + c, their mask, c, n,
    and ``alpha`` in ACC."""
    r = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    return r, r < rows, r % C, r // C, acc_scalar(alpha, ACC)


@triton.jit
def row_chunk(rows_base, row_mask, start, M, BM: tl.constexpr):
    """Columns ``start``.. of a row kernel's chunk loop: (cols, [ROWS, BM] mask, offsets)."""
    cols = start + tl.arange(0, BM)
    return cols, row_mask[:, None] & (cols < M)[None, :], rows_base[:, None] + cols[None, :]


def launch_rows(kernel, x: torch.Tensor, pointers, scalars, **flags):
    """Launch a row kernel, arguments (*pointers, rows, C, M, *scalars, **flags, ACC, ROWS,
    BM), over the N * C rows of M = H * W elements of x [N, C, H, W]; nothing for no rows."""
    rows, row_len = x.shape[0] * x.shape[1], x.shape[2] * x.shape[3]
    if rows == 0:
        return
    block_rows, bm = row_tile(rows, row_len)
    with device_of(x):
        kernel[(triton.cdiv(rows, block_rows),)](
            *pointers, rows, x.shape[1], row_len, *scalars, **flags, ACC=acc_dtype(x), ROWS=block_rows, BM=bm
        )
