"""Triton kernels of adain_conv2d (a 3x3 convolution of ``scale * (lrelu(x + noise_weight *
noise + act_bias) - center) + shift``, optionally of its nearest 2x up-sampling) and of adain_stats.

Every convolution is an implicit GEMM whose operand tiles are gathered from the NCHW or
channels_last tensors through their strides; nothing is unfolded or up-sampled in memory:

* forward: M = output pixels, N = Cout, K = taps x C. The input tile [pixels, channels] of a
  tap is loaded with the whole prologue applied in registers (:func:`_prologue_tile`), zero
  outside the image (padding after the affine).
* ``up``: nearest 2x up-sampling then a 3x3 conv is four 2x2 convs on the H x W grid, one per
  output phase (py, px) = (oh % 2, ow % 2): output (2i + py, 2j + px) reads the source rows
  i + py - 1 + th, th in {0, 1}, with the phase kernel Wp[py, th] = sum of w[kh] over the kh
  of ``_UP_TAPS[kh, py, th]`` (below). 16 taps per 2 x 2 outputs instead of 36: 2.25x fewer
  FLOPs than the 3x3 conv on the up-sampled grid, and zero padding on the 2H x 2W grid is
  zero padding on the H x W grid.
* grad of the conv input (``_grad_a``): GA = conv_transpose(grad_out) on A's grid, and with
  ``up`` Ga = 2x2 sums of GA; both are gathers on the H x W grid: Ga[i] = sum_r W'[r] *
  grad_out[STRIDE * i - 1 + r] with W' the flipped 3x3 kernel (STRIDE 1) or the 4x4 kernel
  W'[r] = sum of w[kh] over ``_GRAD_TAPS[kh, r]`` (STRIDE 2): the 2x2 sum costs nothing and
  GA is never written. Its epilogue recomputes pre / t from x and writes grad_x, with the
  per-(n, c) and per-c reductions of the small gradients as per-tile partial sums.
* grad of the weight: per tap, [Cout] x [C] GEMMs with K = pixels, split over pixel ranges
  (a grid axis), reading grad_out^T tiles and the same prologue tiles as the forward; per
  split partial products, summed (and with ``up`` folded from phase taps to 3x3 taps) in
  PyTorch.

Determinism: no atomics anywhere. Every split / tile writes its own partial sums to a buffer
that PyTorch reduces in a fixed order, so results are bitwise reproducible run to run (the
autotuner may also re-run kernels freely: they only write).

Precision: float16 / bfloat16 tiles go to tl.dot in their dtype with float32 accumulation
(the prologue is computed in float32 and rounded once to the dot dtype); float32 uses
tl.dot with ``input_precision="ieee"`` (no TF32: parity is 1e-5); float64 takes a
sum-of-products path, as in linear_act. The combined up-sampling / gradient kernels are
summed in the accumulation type and rounded once to x's dtype.

On a GPU the three conv kernels are autotuned (key: C, Cout, a bucket of H * W, ``up`` and
the dtypes); under ``TRITON_INTERPRET=1`` each runs one fixed, large-tile configuration.
Channel counts are compile-time constants: the K loops are plain ``range`` loops with
constant bounds (pipelined when compiled; the interpreter cannot take a runtime bound in
``range`` under NumPy >= 2.4), and a model has few distinct channel counts.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import INTERPRETED
from .common import acc_dtype
from .common import acc_scalar
from .common import acc_torch_dtype
from .common import cast_to
from .common import device_of
from .common import div_rn
from .common import is_channels_last_4d
from .common import lrelu
from .common import merge_chunk_moments
from .common import pow2_block
from .common import row_mean
from .common import sqrt_rn

_INTERPRET = bool(INTERPRETED.value)

# _UP_TAPS[kh, p, t] = 1 where the 3x3 tap kh of the conv on the up-sampled grid lands on the
# phase-p source offset t (source row i + p - 1 + t of output row 2i + p).
_UP_TAPS = (((1, 0), (1, 0)), ((0, 1), (1, 0)), ((0, 1), (0, 1)))
# _GRAD_TAPS[kh, r] = 1 where the tap kh, summed over the 2 up-sampled rows dy of source row
# i, reads grad_out row 2i - 1 + r (r = dy - kh + 2).
_GRAD_TAPS = ((0, 0, 1, 1), (0, 1, 1, 0), (1, 1, 0, 0))


# --------------------------------------------------------------------------------------------
# Shared device helpers
# --------------------------------------------------------------------------------------------


@triton.jit
def _sub_rn(a, b):
    """a - b rounded on its own: compiled, sub.rn is never contracted with lrelu's alpha * t
    into one fma, so t == center (a constant channel against its exact mean) gives exactly 0
    (NumPy under the interpreter never contracts)."""
    if INTERPRETED:
        return a - b
    else:
        if a.dtype == tl.float64:
            return tl.inline_asm_elementwise(
                "sub.rn.f64 $0, $1, $2;", "=d,d,d", [a, b], dtype=tl.float64, is_pure=True, pack=1
            )
        else:
            return tl.inline_asm_elementwise(
                "sub.rn.f32 $0, $1, $2;", "=f,f,f", [a, b], dtype=tl.float32, is_pure=True, pack=1
            )


@triton.jit
def _prologue_tile(
    x_ptr,
    noise_ptr,
    nw_ptr,
    ab_ptr,
    scale_ptr,
    shift_ptr,
    center_ptr,
    n,
    si,
    sj,
    pix_ok,
    cc,
    C,
    H,
    W,
    sxn,
    sxc,
    sxh,
    sxw,
    alpha,
    HAS_NOISE: tl.constexpr,
    HAS_AB: tl.constexpr,
    HAS_CENTER: tl.constexpr,
    ACC: tl.constexpr,
):
    """a = scale[n, c] * (t - center[n, c]) + shift[n, c], t = lrelu(x + noise_weight[c] *
    noise + act_bias[c]) (center 0 without HAS_CENTER) on the
    [P, K] tile of pixels (n, si, sj) ([P] each) by channels cc ([K]); 0 where a pixel is
    off the image (the conv's zero padding, after the affine), masked off, or c >= C."""
    ok = pix_ok & (si >= 0) & (si < H) & (sj >= 0) & (sj < W)
    c_ok = cc < C
    mask = ok[:, None] & c_ok[None, :]
    n64 = n.to(tl.int64)
    pix = n64 * sxn + si.to(tl.int64) * sxh + sj.to(tl.int64) * sxw
    pre = tl.load(x_ptr + pix[:, None] + cc.to(tl.int64)[None, :] * sxc, mask=mask, other=0.0).to(ACC)
    if HAS_NOISE:
        z = tl.load(noise_ptr + (n64 * H + si) * W + sj, mask=ok, other=0.0).to(ACC)
        nw = tl.load(nw_ptr + cc, mask=c_ok, other=0.0).to(ACC)
        pre += z[:, None] * nw[None, :]
    if HAS_AB:
        pre += tl.load(ab_ptr + cc, mask=c_ok, other=0.0).to(ACC)[None, :]
    t = lrelu(pre, alpha)
    sc_off = n64[:, None] * C + cc[None, :]
    sc = tl.load(scale_ptr + sc_off, mask=mask, other=0.0).to(ACC)
    sh = tl.load(shift_ptr + sc_off, mask=mask, other=0.0).to(ACC)
    if HAS_CENTER:
        t = _sub_rn(t, tl.load(center_ptr + sc_off, mask=mask, other=0.0).to(ACC))
    return tl.where(mask, sc * t + sh, 0.0)


@triton.jit
def _mma(acc, a, b, DT: tl.constexpr, USE_DOT: tl.constexpr, PRECISION: tl.constexpr):
    """acc + a @ b for a [M, K] and b [K, N]: tl.dot on operands rounded to DT (float32
    accumulation), or a sum of products in acc's type (float64)."""
    if USE_DOT:
        a = cast_to(a, DT)
        b = cast_to(b, DT)
        if INTERPRETED:
            if DT == tl.bfloat16:  # the interpreter multiplies bf16 bits as integers
                a = a.to(tl.float32)
                b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    else:
        acc += tl.sum(a.to(acc.dtype)[:, :, None] * b.to(acc.dtype)[None, :, :], axis=1)
    return acc


# --------------------------------------------------------------------------------------------
# Forward: out = bias + conv(A)
# --------------------------------------------------------------------------------------------


@triton.jit
def _fwd_kernel(
    x_ptr,
    noise_ptr,
    nw_ptr,
    ab_ptr,
    scale_ptr,
    shift_ptr,
    center_ptr,
    w_ptr,
    bias_ptr,
    out_ptr,
    N,
    H,
    W,
    sxn,
    sxc,
    sxh,
    sxw,
    son,
    soc,
    soh,
    sow,
    alpha: tl.float64,
    HW_BUCKET,
    C: tl.constexpr,
    COUT: tl.constexpr,
    UP: tl.constexpr,
    TAPS: tl.constexpr,
    HAS_NOISE: tl.constexpr,
    HAS_AB: tl.constexpr,
    HAS_CENTER: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ACC: tl.constexpr,
    USE_DOT: tl.constexpr,
    PRECISION: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
):
    # Program (pid, phase): BM source-grid pixels (n, i) flattened over the batch, by BN
    # output channels, of output phase ``phase`` (0 without up). Cout tiles are the fastest
    # grid index, so the programs sharing an input tile run together (L2 reuse).
    n_tiles: tl.constexpr = (COUT + BN - 1) // BN
    pid = tl.program_id(0)
    phase = tl.program_id(1)
    pid_m = pid // n_tiles
    pid_n = pid % n_tiles
    hw = H * W
    m = pid_m * BM + tl.arange(0, BM)
    m_ok = m < N * hw
    n = m // hw
    p = m % hw
    i = p // W
    j = p % W
    if UP:
        py = phase // 2
        px = phase % 2
    else:
        py = 0
        px = 0
    co = pid_n * BN + tl.arange(0, BN)
    co_ok = co < COUT
    alpha_acc = acc_scalar(alpha, ACC)
    DT: tl.constexpr = x_ptr.dtype.element_ty
    c_blocks: tl.constexpr = (C + BK - 1) // BK
    acc = tl.zeros([BM, BN], dtype=ACC)
    # K = taps x channel blocks, one flat loop (pipelined across taps when compiled).
    for kk in range(0, TAPS * TAPS * c_blocks):
        tap = kk // c_blocks
        cc = (kk % c_blocks) * BK + tl.arange(0, BK)
        th = tap // TAPS
        tw = tap % TAPS
        a = _prologue_tile(
            x_ptr,
            noise_ptr,
            nw_ptr,
            ab_ptr,
            scale_ptr,
            shift_ptr,
            center_ptr,
            n,
            i + (py - 1 + th),
            j + (px - 1 + tw),
            m_ok,
            cc,
            C,
            H,
            W,
            sxn,
            sxc,
            sxh,
            sxw,
            alpha_acc,
            HAS_NOISE,
            HAS_AB,
            HAS_CENTER,
            ACC,
        )
        w_row = (phase * (TAPS * TAPS) + tap) * C + cc
        w = tl.load(w_ptr + w_row[:, None] * COUT + co[None, :], mask=(cc < C)[:, None] & co_ok[None, :], other=0.0)
        acc = _mma(acc, a, w, DT, USE_DOT, PRECISION)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + co, mask=co_ok, other=0.0).to(ACC)[None, :]
    if UP:
        oh = 2 * i + py
        ow = 2 * j + px
    else:
        oh = i
        ow = j
    pix = n.to(tl.int64) * son + oh.to(tl.int64) * soh + ow.to(tl.int64) * sow
    tl.store(
        out_ptr + pix[:, None] + co.to(tl.int64)[None, :] * soc,
        cast_to(acc, out_ptr.dtype.element_ty),
        mask=m_ok[:, None] & co_ok[None, :],
    )


# --------------------------------------------------------------------------------------------
# Backward 1: Ga (gather conv of grad_out) with the elementwise epilogue
# --------------------------------------------------------------------------------------------


@triton.jit
def _grad_a_kernel(
    g_ptr,
    w_ptr,
    x_ptr,
    noise_ptr,
    nw_ptr,
    ab_ptr,
    scale_ptr,
    center_ptr,
    gx_ptr,
    part_ptr,
    N,
    H,
    W,
    HO,
    WO,
    sgn,
    sgc,
    sgh,
    sgw,
    sxn,
    sxc,
    sxh,
    sxw,
    alpha: tl.float64,
    HW_BUCKET,
    C: tl.constexpr,
    COUT: tl.constexpr,
    TAPS: tl.constexpr,
    STRIDE: tl.constexpr,
    HAS_NOISE: tl.constexpr,
    HAS_AB: tl.constexpr,
    HAS_CENTER: tl.constexpr,
    ACC: tl.constexpr,
    USE_DOT: tl.constexpr,
    PRECISION: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
):
    # Program (pid, n): BM pixels of sample n by BN input channels. Tiles never span two
    # samples, so the per-(n, c) sums are plain column sums of the tile.
    c_tiles: tl.constexpr = (C + BN - 1) // BN
    pid = tl.program_id(0)
    n = tl.program_id(1)
    pb = pid // c_tiles
    pc = pid % c_tiles
    hw = H * W
    p = pb * BM + tl.arange(0, BM)
    p_ok = p < hw
    i = p // W
    j = p % W
    cc = pc * BN + tl.arange(0, BN)
    c_ok = cc < C
    n64 = n.to(tl.int64)
    DT: tl.constexpr = g_ptr.dtype.element_ty
    k_blocks: tl.constexpr = (COUT + BK - 1) // BK
    acc = tl.zeros([BM, BN], dtype=ACC)
    for kk in range(0, TAPS * TAPS * k_blocks):
        tap = kk // k_blocks
        co = (kk % k_blocks) * BK + tl.arange(0, BK)
        gi = STRIDE * i + (tap // TAPS - 1)
        gj = STRIDE * j + (tap % TAPS - 1)
        ok = p_ok & (gi >= 0) & (gi < HO) & (gj >= 0) & (gj < WO)
        co_ok = co < COUT
        g_pix = n64 * sgn + gi.to(tl.int64) * sgh + gj.to(tl.int64) * sgw
        g = tl.load(
            g_ptr + g_pix[:, None] + co.to(tl.int64)[None, :] * sgc, mask=ok[:, None] & co_ok[None, :], other=0.0
        )
        w = tl.load(
            w_ptr + ((tap * COUT + co) * C)[:, None] + cc[None, :], mask=co_ok[:, None] & c_ok[None, :], other=0.0
        )
        acc = _mma(acc, g, w, DT, USE_DOT, PRECISION)
    # Epilogue: pre and t recomputed from x; grad_x = Ga * scale * lrelu'(pre).
    mask = p_ok[:, None] & c_ok[None, :]
    alpha_acc = acc_scalar(alpha, ACC)
    x_off = (n64 * sxn + i.to(tl.int64) * sxh + j.to(tl.int64) * sxw)[:, None] + cc.to(tl.int64)[None, :] * sxc
    pre = tl.load(x_ptr + x_off, mask=mask, other=0.0).to(ACC)
    z = tl.zeros([BM], dtype=ACC)
    if HAS_NOISE:
        z = tl.load(noise_ptr + n64 * hw + p, mask=p_ok, other=0.0).to(ACC)
        pre += z[:, None] * tl.load(nw_ptr + cc, mask=c_ok, other=0.0).to(ACC)[None, :]
    if HAS_AB:
        pre += tl.load(ab_ptr + cc, mask=c_ok, other=0.0).to(ACC)[None, :]
    t = lrelu(pre, alpha_acc)
    sc = tl.load(scale_ptr + n64 * C + cc, mask=c_ok, other=0.0).to(ACC)
    ga = tl.where(mask, acc, 0.0)
    g_pre = ga * sc[None, :] * tl.where(pre > 0, 1.0, alpha_acc)
    tl.store(gx_ptr + x_off, cast_to(g_pre, gx_ptr.dtype.element_ty), mask=mask)
    if HAS_CENTER:  # grad_scale = sum of Ga * (t - center)
        t -= tl.load(center_ptr + n64 * C + cc, mask=c_ok, other=0.0).to(ACC)[None, :]
    # Partial sums of this tile: part[k, n, pb, c] for k = (Ga t, Ga, g_pre noise, g_pre).
    blocks = tl.num_programs(0) // c_tiles
    slot = (n64 * blocks + pb) * C + cc
    plane = N * blocks * C
    tl.store(part_ptr + slot, tl.sum(ga * t, axis=0), mask=c_ok)
    tl.store(part_ptr + plane + slot, tl.sum(ga, axis=0), mask=c_ok)
    if HAS_NOISE:
        tl.store(part_ptr + 2 * plane + slot, tl.sum(g_pre * z[:, None], axis=0), mask=c_ok)
    tl.store(part_ptr + 3 * plane + slot, tl.sum(g_pre, axis=0), mask=c_ok)


# --------------------------------------------------------------------------------------------
# Backward 2: grad_weight, split over pixel ranges
# --------------------------------------------------------------------------------------------


@triton.jit
def _grad_w_kernel(
    g_ptr,
    x_ptr,
    noise_ptr,
    nw_ptr,
    ab_ptr,
    scale_ptr,
    shift_ptr,
    center_ptr,
    part_ptr,
    N,
    H,
    W,
    sgn,
    sgc,
    sgh,
    sgw,
    sxn,
    sxc,
    sxh,
    sxw,
    alpha: tl.float64,
    C: tl.constexpr,
    COUT: tl.constexpr,
    UP: tl.constexpr,
    TAPS: tl.constexpr,
    KPIX: tl.constexpr,
    HAS_NOISE: tl.constexpr,
    HAS_AB: tl.constexpr,
    HAS_CENTER: tl.constexpr,
    ACC: tl.constexpr,
    USE_DOT: tl.constexpr,
    PRECISION: tl.constexpr,
    BCO: tl.constexpr,
    BC: tl.constexpr,
    BK: tl.constexpr,
):
    # Program (pid, q, split): a [BCO, BC] tile of the (phase, tap) q GEMM
    # sum_pixels grad_out[co, out pixel] * A_q[pixel, c] over pixels split * KPIX + [0, KPIX).
    c_tiles: tl.constexpr = (C + BC - 1) // BC
    pid = tl.program_id(0)
    q = tl.program_id(1)
    split = tl.program_id(2)
    pco = pid // c_tiles
    pc = pid % c_tiles
    tap = q % (TAPS * TAPS)
    th = tap // TAPS
    tw = tap % TAPS
    if UP:
        phase = q // (TAPS * TAPS)
        py = phase // 2
        px = phase % 2
    else:
        py = 0
        px = 0
    co = pco * BCO + tl.arange(0, BCO)
    co_ok = co < COUT
    cc = pc * BC + tl.arange(0, BC)
    alpha_acc = acc_scalar(alpha, ACC)
    DT: tl.constexpr = g_ptr.dtype.element_ty
    hw = H * W
    base = split * KPIX
    acc = tl.zeros([BCO, BC], dtype=ACC)
    for k0 in range(0, KPIX, BK):
        m = base + k0 + tl.arange(0, BK)
        m_ok = m < N * hw
        n = m // hw
        p = m % hw
        i = p // W
        j = p % W
        if UP:
            oh = 2 * i + py
            ow = 2 * j + px
        else:
            oh = i
            ow = j
        g_pix = n.to(tl.int64) * sgn + oh.to(tl.int64) * sgh + ow.to(tl.int64) * sgw
        g = tl.load(
            g_ptr + co.to(tl.int64)[:, None] * sgc + g_pix[None, :], mask=co_ok[:, None] & m_ok[None, :], other=0.0
        )
        a = _prologue_tile(
            x_ptr,
            noise_ptr,
            nw_ptr,
            ab_ptr,
            scale_ptr,
            shift_ptr,
            center_ptr,
            n,
            i + (py - 1 + th),
            j + (px - 1 + tw),
            m_ok,
            cc,
            C,
            H,
            W,
            sxn,
            sxc,
            sxh,
            sxw,
            alpha_acc,
            HAS_NOISE,
            HAS_AB,
            HAS_CENTER,
            ACC,
        )
        acc = _mma(acc, g, a, DT, USE_DOT, PRECISION)
    q_all = tl.num_programs(1)
    out = ((split.to(tl.int64) * q_all + q) * COUT + co)[:, None] * C + cc[None, :]
    tl.store(part_ptr + out, acc, mask=co_ok[:, None] & (cc < C)[None, :])


# --------------------------------------------------------------------------------------------
# adain_stats: per-(n, c) mean and rstd of t
# --------------------------------------------------------------------------------------------


@triton.jit
def _stats_kernel(
    x_ptr,
    noise_ptr,
    nw_ptr,
    ab_ptr,
    stats_ptr,
    part_ptr,
    rows,
    C,
    W,
    M,
    SEG,
    sxn,
    sxc,
    sxh,
    sxw,
    alpha: tl.float64,
    eps: tl.float64,
    HAS_NOISE: tl.constexpr,
    HAS_AB: tl.constexpr,
    FINAL: tl.constexpr,
    ACC: tl.constexpr,
    ROWS: tl.constexpr,
    BM: tl.constexpr,
):
    # Program (pid, seg): ROWS rows (n, c) by the pixels [seg * SEG, seg * SEG + SEG) of the
    # M = H * W, walked in BM chunks merged with Chan's formula, shifted by the row's first
    # value (see merge_chunk_moments). FINAL (one segment): the stats themselves; otherwise the
    # segment's (shifted mean, m2, shift), merged on the host.
    r = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    seg = tl.program_id(1)
    row_ok = r < rows
    c = r % C
    n = r // C
    alpha_acc = acc_scalar(alpha, ACC)
    nw = tl.zeros([ROWS], dtype=ACC)
    ab = tl.zeros([ROWS], dtype=ACC)
    if HAS_NOISE:
        nw = tl.load(nw_ptr + c, mask=row_ok, other=0.0).to(ACC)
    if HAS_AB:
        ab = tl.load(ab_ptr + c, mask=row_ok, other=0.0).to(ACC)
    row_base = n * sxn + c * sxc
    start = seg * SEG
    seg_len = tl.minimum(M - start, SEG)
    # The row's first value, by the loop's expression (the same rounding); every segment of
    # the row takes the same shift.
    pre0 = tl.load(x_ptr + row_base, mask=row_ok, other=0.0).to(ACC)
    if HAS_NOISE:
        pre0 += nw * tl.load(noise_ptr + n * M, mask=row_ok, other=0.0).to(ACC)
    shift0 = lrelu(pre0 + ab, alpha_acc)
    mean = tl.zeros([ROWS], dtype=ACC)
    m2 = tl.zeros([ROWS], dtype=ACC)
    k = 0
    while k < seg_len:
        p = start + k + tl.arange(0, BM)
        p_ok = p < start + seg_len
        mask = row_ok[:, None] & p_ok[None, :]
        h = p // W
        w = p % W
        pix = h.to(tl.int64) * sxh + w.to(tl.int64) * sxw
        pre = tl.load(x_ptr + row_base[:, None] + pix[None, :], mask=mask, other=0.0).to(ACC)
        if HAS_NOISE:
            z = tl.load(noise_ptr + n[:, None] * M + p[None, :], mask=mask, other=0.0)
            pre += nw[:, None] * z.to(ACC)
        t = lrelu(pre + ab[:, None], alpha_acc)
        mean, m2 = merge_chunk_moments(mean, m2, t, shift0, mask, k, seg_len, BM)
        k += BM
    if FINAL:
        rstd = div_rn(tl.full([ROWS], 1.0, ACC), sqrt_rn(m2 / M + acc_scalar(eps, ACC)))
        tl.store(stats_ptr + r + n * C, row_mean(shift0, mean), mask=row_ok)
        tl.store(stats_ptr + r + n * C + C, rstd, mask=row_ok)
    else:
        splits = tl.num_programs(1)
        tl.store(part_ptr + seg * rows + r, mean, mask=row_ok)
        tl.store(part_ptr + (splits + seg) * rows + r, m2, mask=row_ok)
        tl.store(part_ptr + (2 * splits + seg) * rows + r, shift0, mask=row_ok)


# --------------------------------------------------------------------------------------------
# Autotuning (compiled only)
# --------------------------------------------------------------------------------------------


def _fit(configs, dims):
    """Configs whose tiles do not exceed the problem by more than the 16-wide minimum of
    tl.dot (all of them if none fits): ``dims`` maps a tile name to the size it covers."""
    fit = [cfg for cfg in configs if all(cfg.kwargs[k] <= max(16, triton.next_power_of_2(v)) for k, v in dims.items())]
    return fit or configs[-1:]


def _cfg(num_warps, num_stages, **tiles):
    return triton.Config(tiles, num_warps=num_warps, num_stages=num_stages)


# Per dtype: fp16 / bf16 tiles take half the shared memory of float32 ones. Every config fits
# sm_80's 163 KB and sm_90's 227 KB of shared memory per block (checked without a GPU by
# scripts/triton_compile_check.py, which compiles each of them for both).
_HALF_FWD = [
    _cfg(8, 3, BM=128, BN=128, BK=32),
    _cfg(8, 3, BM=128, BN=128, BK=64),
    _cfg(4, 4, BM=128, BN=64, BK=32),
    _cfg(4, 4, BM=64, BN=128, BK=32),
    _cfg(4, 4, BM=64, BN=64, BK=32),
    _cfg(4, 3, BM=64, BN=64, BK=64),
    _cfg(4, 4, BM=128, BN=32, BK=32),
    _cfg(4, 3, BM=32, BN=64, BK=64),
    _cfg(4, 4, BM=64, BN=32, BK=16),
    _cfg(4, 3, BM=16, BN=64, BK=64),
    _cfg(2, 4, BM=16, BN=16, BK=16),
]
_HALF_GRAD_A = [
    _cfg(8, 3, BN=128, BK=32),
    _cfg(8, 3, BN=128, BK=64),
    _cfg(4, 4, BN=64, BK=32),
    _cfg(4, 3, BN=64, BK=64),
    _cfg(4, 4, BN=32, BK=64),
    _cfg(4, 4, BN=32, BK=32),
    _cfg(2, 4, BN=16, BK=16),
]
_HALF_GRAD_W = [
    _cfg(8, 3, BCO=128, BC=128, BK=32),
    _cfg(8, 3, BCO=128, BC=64, BK=64),
    _cfg(8, 3, BCO=64, BC=128, BK=64),
    _cfg(4, 4, BCO=64, BC=64, BK=64),
    _cfg(4, 4, BCO=64, BC=64, BK=32),
    _cfg(4, 3, BCO=32, BC=32, BK=128),
    _cfg(4, 4, BCO=32, BC=64, BK=64),
    _cfg(2, 4, BCO=16, BC=16, BK=128),
]
# float32: K tiles of 32 at most with the 128-wide tiles and fewer stages (the operands are
# twice as large), so that the largest fits sm_80: the (scale, shift, center) tiles are
# pipelined too, and the largest tiles take 2 stages (3 needed 177 KB, over sm_80's 163 KB).
_FLOAT_FWD = [
    _cfg(8, 2, BM=128, BN=128, BK=32),
    _cfg(8, 3, BM=128, BN=64, BK=32),
    _cfg(4, 3, BM=64, BN=128, BK=32),
    _cfg(4, 3, BM=64, BN=64, BK=32),
    _cfg(4, 2, BM=64, BN=64, BK=64),
    _cfg(4, 3, BM=128, BN=32, BK=32),
    _cfg(4, 3, BM=32, BN=64, BK=64),
    _cfg(4, 4, BM=64, BN=32, BK=16),
    _cfg(4, 3, BM=16, BN=64, BK=64),
    _cfg(2, 4, BM=16, BN=16, BK=16),
]
_FLOAT_GRAD_A = [
    _cfg(8, 3, BN=128, BK=32),
    _cfg(4, 3, BN=64, BK=32),
    _cfg(4, 3, BN=64, BK=64),
    _cfg(4, 4, BN=32, BK=64),
    _cfg(4, 4, BN=32, BK=32),
    _cfg(2, 4, BN=16, BK=16),
]
_FLOAT_GRAD_W = [
    _cfg(8, 2, BCO=128, BC=128, BK=32),
    _cfg(8, 3, BCO=128, BC=64, BK=32),
    _cfg(8, 3, BCO=64, BC=128, BK=32),
    _cfg(4, 2, BCO=64, BC=64, BK=64),
    _cfg(4, 4, BCO=64, BC=64, BK=32),
    _cfg(4, 2, BCO=32, BC=32, BK=128),
    _cfg(4, 3, BCO=32, BC=64, BK=64),
    _cfg(2, 4, BCO=16, BC=16, BK=128),
]
TUNED_DTYPES = ("float32", "float16", "bfloat16")
FWD_CONFIGS = {torch.float32: _FLOAT_FWD, torch.float16: _HALF_FWD, torch.bfloat16: _HALF_FWD}
GRAD_A_CONFIGS = {torch.float32: _FLOAT_GRAD_A, torch.float16: _HALF_GRAD_A, torch.bfloat16: _HALF_GRAD_A}
GRAD_W_CONFIGS = {torch.float32: _FLOAT_GRAD_W, torch.float16: _HALF_GRAD_W, torch.bfloat16: _HALF_GRAD_W}
# Pixels per grad_weight split of the float64 (fixed-tile) path.
FLOAT64_KPIX = 4096


def _prune_fwd(configs, named_args, **kwargs):
    m = named_args["N"] * named_args["H"] * named_args["W"]
    return _fit(configs, {"BM": m, "BN": kwargs["COUT"], "BK": kwargs["C"]})


def _prune_grad_a(configs, named_args, **kwargs):
    return _fit(configs, {"BN": kwargs["C"], "BK": kwargs["COUT"]})


def _prune_grad_w(configs, named_args, **kwargs):
    return _fit(
        [c for c in configs if kwargs["KPIX"] % c.kwargs["BK"] == 0], {"BCO": kwargs["COUT"], "BC": kwargs["C"]}
    )


def _autotuned(configs, kernel, key, prune):
    """One autotuner per dtype, each with its own config list."""
    return {
        dt: triton.autotune(cfgs, key=key, prune_configs_by={"early_config_prune": prune})(kernel)
        for dt, cfgs in configs.items()
    }


_fwd_tuned = _autotuned(FWD_CONFIGS, _fwd_kernel, ["C", "COUT", "HW_BUCKET", "UP"], _prune_fwd)
_grad_a_tuned = _autotuned(GRAD_A_CONFIGS, _grad_a_kernel, ["C", "COUT", "HW_BUCKET", "STRIDE", "BM"], _prune_grad_a)
_grad_w_tuned = _autotuned(GRAD_W_CONFIGS, _grad_w_kernel, ["C", "COUT", "KPIX", "UP"], _prune_grad_w)


def _tuned(x: torch.Tensor) -> bool:
    """Autotune on a GPU for the tl.dot dtypes; fixed tiles under the interpreter and for
    float64 (tests and gradcheck only)."""
    return not _INTERPRET and x.dtype != torch.float64


def _dot_tiles(m: int, n: int, k: int, cap_m: int, cap_n: int, cap_k: int, use_dot: bool):
    """Fixed (M, N, K) tiles: powers of two covering the problem up to the caps, at least 16
    for tl.dot; the float64 product tile [M, K, N] stays within 4096 elements."""
    if use_dot:
        return (max(16, pow2_block(m, cap_m)), max(16, pow2_block(n, cap_n)), max(16, pow2_block(k, cap_k)))
    bm, bn = pow2_block(m, 32), pow2_block(n, 16)
    return bm, bn, pow2_block(k, max(1, 4096 // (bm * bn)))


def _hw_bucket(hw: int) -> int:
    return pow2_block(hw, 1 << 14)


def input_precision(dtype: torch.dtype) -> str:
    """tl.dot input precision: "ieee" for float32. TF32 would miss the op's 1e-5 float32
    parity; "tf32x3" (3 TF32 products, about fp32 accuracy, tensor cores) might hold it but
    cannot be verified here: the interpreter computes every tl.dot in numpy float32 whatever
    the precision, so only a GPU run can show its error (kept "ieee" until one does)."""
    return "ieee"


def _precision(x: torch.Tensor) -> str:
    return input_precision(x.dtype)


def grad_a_bm(hw: int, use_dot: bool) -> int:
    """Pixels per _grad_a tile (chosen at launch: the partial-sum buffer depends on it)."""
    if use_dot:
        return max(16, pow2_block(hw, 256 if _INTERPRET else 128))
    return pow2_block(hw, 32)


def _opt(t, x):
    return t if t is not None else x


# --------------------------------------------------------------------------------------------
# Weight re-layouts (tiny, PyTorch)
# --------------------------------------------------------------------------------------------


def _tap_matrix(rows, device, dtype) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype, device=device)


def _forward_weight(weight: torch.Tensor, up: bool) -> torch.Tensor:
    """[taps, C, Cout] in weight's dtype: the 3x3 taps (kh, kw), or with ``up`` the 2x2 taps
    of the four phases (py, px, th, tw), summed in the accumulation type."""
    cout, c = weight.shape[:2]
    if not up:
        return weight.permute(2, 3, 1, 0).reshape(9, c, cout).contiguous()
    acc = acc_torch_dtype(weight)
    s = _tap_matrix(_UP_TAPS, weight.device, acc)
    wp = torch.einsum("apt,bqu,ocab->pqtuco", s, s, weight.to(acc))
    return wp.reshape(16, c, cout).to(weight.dtype).contiguous()


def _grad_a_weight(weight: torch.Tensor, up: bool) -> torch.Tensor:
    """[taps, Cout, C]: the flipped 3x3 kernel, or with ``up`` the 4x4 kernel of the 2x2-summed
    transposed conv (summed in the accumulation type)."""
    cout, c = weight.shape[:2]
    if not up:
        return weight.flip(2, 3).permute(2, 3, 0, 1).reshape(9, cout, c).contiguous()
    acc = acc_torch_dtype(weight)
    r = _tap_matrix(_GRAD_TAPS, weight.device, acc)
    w4 = torch.einsum("ar,bs,ocab->rsoc", r, r, weight.to(acc))
    return w4.reshape(16, cout, c).to(weight.dtype).contiguous()


def _fold_grad_weight(g: torch.Tensor, up: bool) -> torch.Tensor:
    """[taps, Cout, C] per-tap products -> [Cout, C, 3, 3] (the adjoint of _forward_weight)."""
    cout, c = g.shape[1:]
    if not up:
        return g.reshape(3, 3, cout, c).permute(2, 3, 0, 1)
    s = _tap_matrix(_UP_TAPS, g.device, g.dtype)
    return torch.einsum("apt,bqu,pqtuoc->ocab", s, s, g.reshape(2, 2, 2, 2, cout, c))


# --------------------------------------------------------------------------------------------
# Raw kernels
# --------------------------------------------------------------------------------------------


def _memory_format(x: torch.Tensor):
    return torch.channels_last if is_channels_last_4d(x) else torch.contiguous_format


def adain_conv2d_fwd(
    x: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    center: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    noise: torch.Tensor | None,
    noise_weight: torch.Tensor | None,
    act_bias: torch.Tensor | None,
    alpha: float,
    up: bool,
) -> torch.Tensor:
    """out [N, Cout, Ho, Wo] in x's dtype and memory format; see the module docstring."""
    n, c, h, w = x.shape
    cout = weight.shape[0]
    ho, wo = (2 * h, 2 * w) if up else (h, w)
    out = torch.empty((n, cout, ho, wo), dtype=x.dtype, device=x.device, memory_format=_memory_format(x))
    if out.numel() == 0:
        return out
    if c == 0:
        out.zero_()
        return out if bias is None else out.add_(bias.view(1, -1, 1, 1))
    m = n * h * w
    assert m * (4 if up else 1) < 2**31, "adain_conv2d: too many output pixels"
    wf = _forward_weight(weight, up)
    use_dot = x.dtype != torch.float64
    args = (
        x,
        _opt(noise, x),
        _opt(noise_weight, x),
        _opt(act_bias, x),
        scale,
        shift,
        _opt(center, scale),
        wf,
        _opt(bias, x),
        out,
        n,
        h,
        w,
        *x.stride(),
        *out.stride(),
        float(alpha),
        _hw_bucket(h * w),
    )
    meta = dict(
        C=c,
        COUT=cout,
        UP=up,
        TAPS=2 if up else 3,
        HAS_NOISE=noise is not None,
        HAS_AB=act_bias is not None,
        HAS_CENTER=center is not None,
        HAS_BIAS=bias is not None,
        ACC=acc_dtype(x),
        USE_DOT=use_dot,
        PRECISION=_precision(x),
    )
    phases = 4 if up else 1
    with device_of(x):
        if _tuned(x):

            def tuned_grid(meta_):
                return (triton.cdiv(m, meta_["BM"]) * triton.cdiv(cout, meta_["BN"]), phases)

            _fwd_tuned[x.dtype][tuned_grid](*args, **meta)
        else:
            bm, bn, bk = _dot_tiles(m, cout, c, 256, 64, 64, use_dot)
            grid = (triton.cdiv(m, bm) * triton.cdiv(cout, bn), phases)
            _fwd_kernel[grid](*args, **meta, BM=bm, BN=bn, BK=bk, num_warps=4)
    return out


def _grad_a(grad_out, x, scale, center, weight, noise, noise_weight, act_bias, alpha, up):
    """(grad_x, partial sums [4, N, blocks, C] in the accumulation type)."""
    n, c, h, w = x.shape
    cout = weight.shape[0]
    use_dot = x.dtype != torch.float64
    wg = _grad_a_weight(weight, up)
    grad_x = torch.empty_like(x, memory_format=_memory_format(x))
    # BM is chosen here, not tuned: the partial-sum buffer depends on it.
    bm = grad_a_bm(h * w, use_dot)
    blocks = triton.cdiv(h * w, bm)
    part = torch.empty(4, n, blocks, c, dtype=acc_torch_dtype(x), device=x.device)
    args = (
        grad_out,
        wg,
        x,
        _opt(noise, x),
        _opt(noise_weight, x),
        _opt(act_bias, x),
        scale,
        _opt(center, scale),
        grad_x,
        part,
        n,
        h,
        w,
        grad_out.shape[2],
        grad_out.shape[3],
        *grad_out.stride(),
        *x.stride(),
        float(alpha),
        _hw_bucket(h * w),
    )
    meta = dict(
        C=c,
        COUT=cout,
        TAPS=4 if up else 3,
        STRIDE=2 if up else 1,
        HAS_NOISE=noise is not None,
        HAS_AB=act_bias is not None,
        HAS_CENTER=center is not None,
        ACC=acc_dtype(x),
        USE_DOT=use_dot,
        PRECISION=_precision(x),
        BM=bm,
    )
    with device_of(x):
        if _tuned(x):
            grid = lambda meta_: (blocks * triton.cdiv(c, meta_["BN"]), n)  # noqa: E731
            _grad_a_tuned[x.dtype][grid](*args, **meta)
        else:
            _, bn, bk = _dot_tiles(bm, c, cout, bm, 64, 64, use_dot)
            _grad_a_kernel[(blocks * triton.cdiv(c, bn), n)](*args, **meta, BN=bn, BK=bk, num_warps=4)
    return grad_x, part


def _grad_w_kpix(m: int, c: int, cout: int, taps: int, x: torch.Tensor) -> int:
    """Pixels per split of the grad_weight GEMMs (a power of two): enough splits to fill the
    GPU about four times over with 64 x 64 tiles, rounded down so that only the last split
    runs past the end."""
    if _INTERPRET:
        return max(16, pow2_block(m, 512))
    if x.dtype == torch.float64:
        return FLOAT64_KPIX
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    tiles = taps * triton.cdiv(cout, 64) * triton.cdiv(c, 64)
    per_split = triton.cdiv(m, max(1, triton.cdiv(4 * sms, tiles)))
    return max(256, 1 << (per_split.bit_length() - 1))


def _grad_w(grad_out, x, scale, shift, center, weight, noise, noise_weight, act_bias, alpha, up):
    """grad_weight [Cout, C, 3, 3] in the accumulation type."""
    n, c, h, w = x.shape
    cout = weight.shape[0]
    use_dot = x.dtype != torch.float64
    taps = 16 if up else 9
    m = n * h * w
    kpix = _grad_w_kpix(m, c, cout, taps, x)
    splits = triton.cdiv(m, kpix)
    part = torch.empty(splits, taps, cout, c, dtype=acc_torch_dtype(x), device=x.device)
    args = (
        grad_out,
        x,
        _opt(noise, x),
        _opt(noise_weight, x),
        _opt(act_bias, x),
        scale,
        shift,
        _opt(center, scale),
        part,
        n,
        h,
        w,
        *grad_out.stride(),
        *x.stride(),
        float(alpha),
    )
    meta = dict(
        C=c,
        COUT=cout,
        UP=up,
        TAPS=2 if up else 3,
        KPIX=kpix,
        HAS_NOISE=noise is not None,
        HAS_AB=act_bias is not None,
        HAS_CENTER=center is not None,
        ACC=acc_dtype(x),
        USE_DOT=use_dot,
        PRECISION=_precision(x),
    )
    with device_of(x):
        if _tuned(x):

            def tuned_grid(meta_):
                return (triton.cdiv(cout, meta_["BCO"]) * triton.cdiv(c, meta_["BC"]), taps, splits)

            _grad_w_tuned[x.dtype][tuned_grid](*args, **meta)
        else:
            bco, bc, bk = _dot_tiles(cout, c, kpix, 64, 64, 256, use_dot)
            grid = (triton.cdiv(cout, bco) * triton.cdiv(c, bc), taps, splits)
            _grad_w_kernel[grid](*args, **meta, BCO=bco, BC=bc, BK=min(bk, kpix), num_warps=4)
    return _fold_grad_weight(part.sum(0), up)


def adain_conv2d_bwd(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    center: torch.Tensor | None,
    weight: torch.Tensor,
    noise: torch.Tensor | None,
    noise_weight: torch.Tensor | None,
    act_bias: torch.Tensor | None,
    alpha: float,
    up: bool,
):
    """(grad_x, grad_scale, grad_shift, grad_weight, grad_bias, grad_noise_weight,
    grad_act_bias); grad_out is NCHW- or channels_last-contiguous (its own strides)."""
    n, c, h, w = x.shape
    cout = weight.shape[0]
    acc = acc_torch_dtype(x)
    # grad_bias: one row reduction of grad_out in PyTorch (deterministic; the same single read
    # of grad_out that fusing it into the grad_weight kernel would cost).
    grad_bias = grad_out.sum((0, 2, 3), dtype=acc).to(x.dtype)
    if x.numel() == 0 or cout == 0:
        grad_x = torch.zeros_like(x, memory_format=_memory_format(x))
        return (
            grad_x,
            torch.zeros_like(scale),
            torch.zeros_like(shift),
            torch.zeros_like(weight),
            grad_bias,
            x.new_zeros(c),
            x.new_zeros(c),
        )
    assert n * grad_out.shape[2] * grad_out.shape[3] < 2**31, "adain_conv2d: too many output pixels"
    grad_x, part = _grad_a(grad_out, x, scale, center, weight, noise, noise_weight, act_bias, alpha, up)
    grad_weight = _grad_w(grad_out, x, scale, shift, center, weight, noise, noise_weight, act_bias, alpha, up)
    grad_scale = part[0].sum(1).to(scale.dtype)
    grad_shift = part[1].sum(1).to(shift.dtype)
    grad_nw = part[2].sum((0, 1)).to(x.dtype) if noise is not None else x.new_zeros(c)
    grad_ab = part[3].sum((0, 1)).to(x.dtype)
    return (grad_x, grad_scale, grad_shift, grad_weight.to(weight.dtype).contiguous(), grad_bias, grad_nw, grad_ab)


def _stats_tiles(x: torch.Tensor, rows: int, row_len: int):
    """(ROWS, BM, SEG): rows (n, c) per program, pixels per chunk, pixels per segment (a
    multiple of BM). channels_last puts the channels, the contiguous dimension, along the
    tile's rows. On a GPU, long rows are split into segments until about four waves of
    programs run; the interpreter splits rows longer than two chunks (which also has the tests
    go through the host merge)."""
    tile = 1 << 14 if _INTERPRET else 1024
    cap = 128 if _INTERPRET else tile
    if is_channels_last_4d(x):
        block_rows = pow2_block(min(rows, x.shape[1]), 64)
        bm = pow2_block(row_len, min(cap, tile // block_rows))
    else:
        bm = pow2_block(row_len, cap)
        block_rows = pow2_block(rows, tile // bm)
    if _INTERPRET:
        return block_rows, bm, 2 * bm
    row_programs = triton.cdiv(rows, block_rows)
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count if x.device.type == "cuda" else 1
    splits = max(1, min(triton.cdiv(4 * sms, row_programs), triton.cdiv(row_len, 8 * bm)))
    return block_rows, bm, triton.cdiv(triton.cdiv(row_len, splits), bm) * bm


def adain_stats_fwd(
    x: torch.Tensor,
    noise: torch.Tensor | None,
    noise_weight: torch.Tensor | None,
    act_bias: torch.Tensor | None,
    alpha: float,
    eps: float,
) -> torch.Tensor:
    """stats [N, 2C] = [mean | rsqrt(var + eps)] of t per (n, c), in the accumulation type."""
    n, c, h, w = x.shape
    rows, row_len = n * c, h * w
    acc = acc_torch_dtype(x)
    stats = torch.empty(n, 2 * c, dtype=acc, device=x.device)
    if rows == 0:
        return stats
    if row_len == 0:
        return stats.fill_(float("nan"))
    block_rows, bm, seg = _stats_tiles(x, rows, row_len)
    splits = triton.cdiv(row_len, seg)
    part = torch.empty(3, splits, n, c, dtype=acc, device=x.device) if splits > 1 else stats
    with device_of(x):
        _stats_kernel[(triton.cdiv(rows, block_rows), splits)](
            x,
            _opt(noise, x),
            _opt(noise_weight, x),
            _opt(act_bias, x),
            stats,
            part,
            rows,
            c,
            w,
            row_len,
            seg,
            *x.stride(),
            float(alpha),
            float(eps),
            HAS_NOISE=noise is not None,
            HAS_AB=act_bias is not None,
            FINAL=splits == 1,
            ACC=acc_dtype(x),
            ROWS=block_rows,
            BM=bm,
        )
    if splits == 1:
        return stats
    # Merge the segments' (mean, m2) exactly as Chan's pairwise formula does, all at once:
    # deviations of the segment means from the overall mean, never E[t^2] - E[t]^2. The means
    # are shifted by the row's first value (part[2], the same in every segment): a constant
    # row's are exact zeros, so its mean is exactly the shift and its m2 exactly 0.
    counts = torch.full((splits, 1, 1), float(seg), dtype=acc, device=x.device)
    counts[-1] = row_len - seg * (splits - 1)
    seg_mean, seg_m2 = part[0], part[1]
    mean = (counts * seg_mean).sum(0) / row_len
    m2 = seg_m2.sum(0) + (counts * (seg_mean - mean).square()).sum(0)
    stats[:, :c] = part[2, 0] + mean
    stats[:, c:] = (m2 / row_len + eps).rsqrt()
    return stats
