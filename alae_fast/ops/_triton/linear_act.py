"""Triton kernel of linear_act: y = lrelu(x @ weight.T + bias) * gain, a tiled GEMM with
the bias, activation and gain applied to the accumulator before the one store.

float16 / bfloat16 / float32 multiply with tl.dot and accumulate in float32 (float32 in full
IEEE precision unless torch allows TF32 matmuls); float64 takes a sum-of-products path, as
not every GPU's tl.dot takes float64. IN is a compile-time constant: the K loop then is a
plain ``range`` (pipelined when compiled, and runnable by the interpreter, which cannot loop
to a runtime bound under NumPy >= 2.4); a model has few distinct IN.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import INTERPRETED
from .common import acc_dtype
from .common import acc_scalar
from .common import cast_to
from .common import device_of
from .common import lrelu
from .common import pow2_block

# Programs along M are grouped so that consecutive programs share weight tiles in L2.
GROUP_M = 8


@triton.jit
def _linear_act_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    y_ptr,
    B,
    OUT,
    alpha: tl.float64,
    gain: tl.float64,
    IN: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ACC: tl.constexpr,
    USE_DOT: tl.constexpr,
    PRECISION: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    GROUP: tl.constexpr,
):
    pid = tl.program_id(0)
    m_blocks = tl.cdiv(B, BM)
    n_blocks = tl.cdiv(OUT, BN)
    per_group = GROUP * n_blocks
    first_m = (pid // per_group) * GROUP
    group_rows = tl.minimum(m_blocks - first_m, GROUP)
    pid_m = first_m + (pid % per_group) % group_rows
    pid_n = (pid % per_group) // group_rows
    rm = pid_m.to(tl.int64) * BM + tl.arange(0, BM)
    rn = pid_n.to(tl.int64) * BN + tl.arange(0, BN)
    m_mask = rm < B
    n_mask = rn < OUT
    acc = tl.zeros([BM, BN], dtype=ACC)
    for k0 in range(0, IN, BK):
        rk = k0 + tl.arange(0, BK)
        k_mask = rk < IN
        a = tl.load(
            x_ptr + rm[:, None] * IN + rk[None, :], mask=m_mask[:, None] & k_mask[None, :], other=0.0
        )  # [BM, BK]
        w = tl.load(
            w_ptr + rn[None, :] * IN + rk[:, None], mask=n_mask[None, :] & k_mask[:, None], other=0.0
        )  # [BK, BN] = W.T tile
        if USE_DOT:
            if INTERPRETED:
                if a.dtype == tl.bfloat16:  # the interpreter multiplies bf16 bits as integers
                    a = a.to(tl.float32)
                    w = w.to(tl.float32)
            acc = tl.dot(a, w, acc, input_precision=PRECISION)
        else:
            acc += tl.sum(a.to(ACC)[:, :, None] * w.to(ACC)[None, :, :], axis=1)
    if HAS_BIAS:
        acc += tl.load(b_ptr + rn, mask=n_mask, other=0.0).to(ACC)[None, :]
    y = lrelu(acc, acc_scalar(alpha, ACC)) * acc_scalar(gain, ACC)
    tl.store(
        y_ptr + rm[:, None] * OUT + rn[None, :],
        cast_to(y, y_ptr.dtype.element_ty),
        mask=m_mask[:, None] & n_mask[None, :],
    )


def tiles(batch: int, out_features: int, in_features: int, float64: bool):
    """(BM, BN, BK, num_warps) of the launch."""
    if not float64:
        # tl.dot needs every tile dimension >= 16.
        return (
            max(16, pow2_block(batch, 64)),
            max(16, pow2_block(out_features, 64)),
            max(16, pow2_block(in_features, 32)),
            4,
        )
    # The [BM, BK, BN] product lives in registers: keep it at 4096 doubles.
    bm, bn = pow2_block(batch, 32), pow2_block(out_features, 32)
    return bm, bn, pow2_block(in_features, 4096 // (bm * bn)), 4


def input_precision(dtype: torch.dtype) -> str:
    """tl.dot input precision of float32 operands: "tf32" exactly when torch allows TF32 for
    cuBLAS matmuls, else "ieee" (other dtypes ignore it). Read through the fp32_precision API
    (torch >= 2.9), which resolves the global setting and reflects the legacy flag; reading
    ``allow_tf32`` raises once TF32 was set through the new API."""
    if dtype != torch.float32:
        return "ieee"
    matmul = torch.backends.cuda.matmul
    try:
        precision = matmul.fp32_precision
    except AttributeError:  # torch < 2.9 has the legacy flag only
        return "tf32" if matmul.allow_tf32 else "ieee"
    return "tf32" if precision == "tf32" else "ieee"


def linear_act_fwd(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, alpha: float, gain: float
) -> torch.Tensor:
    """lrelu(x @ weight.T + bias) * gain for contiguous x [B, IN], weight [OUT, IN]."""
    batch, in_features = x.shape
    out_features = weight.shape[0]
    y = torch.empty(batch, out_features, dtype=x.dtype, device=x.device)
    if y.numel() == 0:
        return y
    use_dot = x.dtype != torch.float64
    bm, bn, bk, num_warps = tiles(batch, out_features, in_features, not use_dot)
    grid = (triton.cdiv(batch, bm) * triton.cdiv(out_features, bn),)
    with device_of(x):
        _linear_act_kernel[grid](
            x,
            weight,
            bias if bias is not None else x,
            y,
            batch,
            out_features,
            float(alpha),
            float(gain),
            IN=in_features,
            HAS_BIAS=bias is not None,
            ACC=acc_dtype(x),
            USE_DOT=use_dot,
            PRECISION=input_precision(x.dtype),
            BM=bm,
            BN=bn,
            BK=bk,
            GROUP=GROUP_M,
            num_warps=num_warps,
        )
    return y
