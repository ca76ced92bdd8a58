"""Triton kernel of blur: depthwise [1, 2, 1] x [1, 2, 1] / 16 filter, zero padding 1.

One strided kernel serves row-major and channels_last tensors: a program covers a
[BC, BH, BW] tile of one image, with the tile's fastest dimension laid along the fastest
memory dimension (W for row-major, C for channels_last) so loads coalesce.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import TILE
from .common import acc_dtype
from .common import cast_to
from .common import device_of
from .common import is_channels_last_4d
from .common import pow2_block


@triton.jit
def _blur_row(x_ptr, base, hh, w, mask, H, W, stride_h, stride_w, ACC: tl.constexpr):
    """0.25 x[hh, w-1] + 0.5 x[hh, w] + 0.25 x[hh, w+1] (zero outside the image)."""
    inside = mask & (hh >= 0) & (hh < H)
    row = base + hh * stride_h
    left = tl.load(x_ptr + row + (w - 1) * stride_w, mask=inside & (w >= 1), other=0.0)
    mid = tl.load(x_ptr + row + w * stride_w, mask=inside, other=0.0)
    right = tl.load(x_ptr + row + (w + 1) * stride_w, mask=inside & (w + 1 < W), other=0.0)
    return 0.25 * left.to(ACC) + 0.5 * mid.to(ACC) + 0.25 * right.to(ACC)


@triton.jit
def _blur_kernel(
    x_ptr,
    y_ptr,
    C,
    H,
    W,
    stride_n,
    stride_c,
    stride_h,
    stride_w,
    c_blocks,
    h_blocks,
    w_blocks,
    ACC: tl.constexpr,
    BC: tl.constexpr,
    BH: tl.constexpr,
    BW: tl.constexpr,
):
    pid = tl.program_id(0)
    w_block = pid % w_blocks
    h_block = (pid // w_blocks) % h_blocks
    c_block = (pid // (w_blocks * h_blocks)) % c_blocks
    n = pid // (w_blocks * h_blocks * c_blocks)
    c = (c_block * BC + tl.arange(0, BC)).to(tl.int64)[:, None, None]
    h = (h_block * BH + tl.arange(0, BH)).to(tl.int64)[None, :, None]
    w = (w_block * BW + tl.arange(0, BW)).to(tl.int64)[None, None, :]
    mask = (c < C) & (h < H) & (w < W)
    base = n.to(tl.int64) * stride_n + c * stride_c
    y = (
        0.25 * _blur_row(x_ptr, base, h - 1, w, mask, H, W, stride_h, stride_w, ACC)
        + 0.5 * _blur_row(x_ptr, base, h, w, mask, H, W, stride_h, stride_w, ACC)
        + 0.25 * _blur_row(x_ptr, base, h + 1, w, mask, H, W, stride_h, stride_w, ACC)
    )
    tl.store(y_ptr + base + h * stride_h + w * stride_w, cast_to(y, y_ptr.dtype.element_ty), mask=mask)


def tiles(x: torch.Tensor):
    """(BC, BH, BW) of about TILE elements, the fastest memory dimension's block first."""
    _, channels, height, width = x.shape
    if is_channels_last_4d(x):
        bc = pow2_block(channels, TILE)
        bw = pow2_block(width, TILE // bc)
        bh = pow2_block(height, TILE // (bc * bw))
    else:
        bw = pow2_block(width, TILE)
        bh = pow2_block(height, TILE // bw)
        bc = pow2_block(channels, TILE // (bw * bh))
    return bc, bh, bw


def blur_fwd(x: torch.Tensor) -> torch.Tensor:
    """Blurred x [N, C, H, W] (row-major or channels_last), same shape, dtype, memory format."""
    y = torch.empty_like(x)
    if x.numel() == 0:
        return y
    n, channels, height, width = x.shape
    assert y.stride() == x.stride()
    bc, bh, bw = tiles(x)
    c_blocks = triton.cdiv(channels, bc)
    h_blocks = triton.cdiv(height, bh)
    w_blocks = triton.cdiv(width, bw)
    with device_of(x):
        _blur_kernel[(n * c_blocks * h_blocks * w_blocks,)](
            x,
            y,
            channels,
            height,
            width,
            *x.stride(),
            c_blocks,
            h_blocks,
            w_blocks,
            ACC=acc_dtype(x),
            BC=bc,
            BH=bh,
            BW=bw,
        )
    return y
