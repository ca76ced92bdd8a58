"""Triton kernels of bias_act: y = lrelu(x + b[c]) * gain, and its gradients.

The tensor is seen as [outer, C, inner] in memory order (row-major: outer = N,
inner = prod(rest); channels_last: outer = N*H*W, inner = 1), so one strided 3-D tile serves
both layouts and no element needs an integer division to find its channel.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .common import REDUCE_ITERS
from .common import TILE
from .common import acc_dtype
from .common import acc_scalar
from .common import acc_torch_dtype
from .common import cast_to
from .common import device_of
from .common import is_channels_last_4d
from .common import lrelu
from .common import pow2_block


def _layout(x: torch.Tensor) -> tuple[int, int, int]:
    """(outer, C, inner) of x in memory order."""
    channels = x.shape[1]
    if is_channels_last_4d(x):
        return x.shape[0] * x.shape[2] * x.shape[3], channels, 1
    return x.shape[0], channels, x[0, 0].numel()


def _tile(outer: int, channels: int, inner: int):
    """Block sizes (BO, BC, BI) of a tile of about TILE elements, inner dimension first."""
    block_i = pow2_block(inner, TILE)
    block_c = pow2_block(channels, TILE // block_i)
    block_o = pow2_block(outer, TILE // (block_i * block_c))
    return block_o, block_c, block_i


def _blocks(outer: int, channels: int, inner: int, iters: int):
    """The tile's block sizes {BO, BC, BI}, and the (o-groups of ``iters`` o-blocks,
    c-blocks, i-blocks) the grid covers."""
    block_o, block_c, block_i = _tile(outer, channels, inner)
    counts = (triton.cdiv(outer, block_o * iters), triton.cdiv(channels, block_c), triton.cdiv(inner, block_i))
    return {"BO": block_o, "BC": block_c, "BI": block_i}, counts


@triton.jit
def _tile_coords(pid, it, outer, C, inner, BO: tl.constexpr, BC: tl.constexpr, BI: tl.constexpr, ITERS: tl.constexpr):
    """Memory offsets, mask and channels of step ``it`` of program ``pid``, and the program's
    row of the per-channel partials. Programs run i-block fastest, then c-block, then groups of
    ITERS o-blocks."""
    c_blocks = tl.cdiv(C, BC)
    i_blocks = tl.cdiv(inner, BI)
    i_block = pid % i_blocks
    c_block = (pid // i_blocks) % c_blocks
    o_group = pid // (i_blocks * c_blocks)
    o = (o_group.to(tl.int64) * ITERS + it) * BO + tl.arange(0, BO).to(tl.int64)
    c = c_block.to(tl.int64) * BC + tl.arange(0, BC).to(tl.int64)
    i = i_block.to(tl.int64) * BI + tl.arange(0, BI).to(tl.int64)
    offs = (o[:, None, None] * C + c[None, :, None]) * inner + i[None, None, :]
    mask = (o < outer)[:, None, None] & (c < C)[None, :, None] & (i < inner)[None, None, :]
    return offs, mask, c, o_group * i_blocks + i_block


@triton.jit
def _bias_act_fwd_kernel(
    x_ptr,
    b_ptr,
    y_ptr,
    outer,
    C,
    inner,
    alpha: tl.float64,
    gain: tl.float64,
    HAS_BIAS: tl.constexpr,
    ACC: tl.constexpr,
    BO: tl.constexpr,
    BC: tl.constexpr,
    BI: tl.constexpr,
):
    """y of one [BO, BC, BI] tile."""
    offs, mask, c, _ = _tile_coords(tl.program_id(0), 0, outer, C, inner, BO, BC, BI, 1)
    t = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
    if HAS_BIAS:
        t += tl.load(b_ptr + c, mask=c < C, other=0.0).to(ACC)[None, :, None]
    y = lrelu(t, acc_scalar(alpha, ACC)) * acc_scalar(gain, ACC)
    tl.store(y_ptr + offs, cast_to(y, y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _bias_act_bwd_kernel(
    grad_ptr,
    y_ptr,
    grad_x_ptr,
    partial_ptr,
    outer,
    C,
    inner,
    alpha: tl.float64,
    gain: tl.float64,
    ACC: tl.constexpr,
    BO: tl.constexpr,
    BC: tl.constexpr,
    BI: tl.constexpr,
    ITERS: tl.constexpr,
):
    """grad_x of ITERS [BO, BC, BI] tiles along o, and their per-channel sums (one partial
    row per program's o-group and i-block, summed in torch: a fixed order)."""
    pid = tl.program_id(0)
    gain_acc = acc_scalar(gain, ACC)
    neg_gain = acc_scalar(alpha, ACC) * gain_acc
    acc = tl.zeros([BO, BC, BI], dtype=ACC)
    for it in tl.static_range(ITERS):
        offs, mask, c, row = _tile_coords(pid, it, outer, C, inner, BO, BC, BI, ITERS)
        g = tl.load(grad_ptr + offs, mask=mask, other=0.0).to(ACC)
        y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(ACC)
        gx = g * tl.where(y > 0, gain_acc, neg_gain)
        tl.store(grad_x_ptr + offs, cast_to(gx, grad_x_ptr.dtype.element_ty), mask=mask)
        acc += gx  # masked lanes hold 0 (g = 0 there)
    c_sums = tl.sum(tl.sum(acc, axis=2), axis=0)
    tl.store(partial_ptr + row.to(tl.int64) * C + c, c_sums, mask=c < C)


def bias_act_fwd(x: torch.Tensor, b: torch.Tensor | None, alpha: float, gain: float) -> torch.Tensor:
    """lrelu(x + b[c]) * gain for x [N, C, *rest] (row-major or 4-D channels_last), same
    shape, dtype and memory format."""
    y = torch.empty_like(x)
    if x.numel() == 0:
        return y
    layout = _layout(x)
    tile, counts = _blocks(*layout, 1)
    with device_of(x):
        _bias_act_fwd_kernel[(math.prod(counts),)](
            x,
            x if b is None else b,
            y,
            *layout,
            float(alpha),
            float(gain),
            HAS_BIAS=b is not None,
            ACC=acc_dtype(x),
            **tile,
        )
    return y


def bias_act_bwd(grad: torch.Tensor, y: torch.Tensor, alpha: float, gain: float):
    """(grad_x, grad_b) of bias_act_fwd from its output y; grad has y's layout."""
    grad_x = torch.empty_like(y)
    layout = _layout(y)
    if y.numel() == 0:
        return grad_x, torch.zeros(layout[1], dtype=y.dtype, device=y.device)
    tile, (o_groups, c_blocks, i_blocks) = _blocks(*layout, REDUCE_ITERS)
    partial = torch.empty(o_groups * i_blocks, layout[1], dtype=acc_torch_dtype(y), device=y.device)
    with device_of(y):
        _bias_act_bwd_kernel[(o_groups * c_blocks * i_blocks,)](
            grad, y, grad_x, partial, *layout, float(alpha), float(gain), ACC=acc_dtype(y), ITERS=REDUCE_ITERS, **tile
        )
    return grad_x, partial.sum(dim=0).to(y.dtype)
