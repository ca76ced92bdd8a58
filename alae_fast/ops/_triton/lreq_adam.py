"""Triton kernel of lreq_adam_step_: the in-place Adam update (second moment only, per-tensor
step sizes) of a list of tensors, bit-exact to the PyTorch op sequence of the kernel spec.

Multi-tensor: one launch for all tensors. A program takes one CHUNK of one tensor, found
through tables built on the host: the tensors' data pointers (read as int64 and cast to
pointers in the kernel, which the interpreter supports too), sizes, and each chunk's tensor
and start. Bit-exactness: every operation is separately rounded (launched with
enable_fp_fusion=False so no multiply-add becomes an FMA; division and square root are
correctly rounded and keep subnormals), scalars are rounded on the host to the type PyTorch
computes in (the tensor dtype for float32 / float64, float32 for float16 / bfloat16), and
float16 / bfloat16 results are rounded to the tensor dtype after each PyTorch op.

Two rounding sequences (FUSED), as the CUDA kernel's AdamRounding: PyTorch's CUDA kernels
(nvcc contracts ``a + alpha * (b * c)`` and ``a + alpha * (b / c)`` into one fma, and
``p + wd * g`` likewise) versus its CPU kernels, every multiply and add rounded apart. FUSED is
taken on CUDA tensors; the fmas are explicit tl.fma (correctly rounded, also in the
interpreter), the rest stays unfused.

The integer tables (pointers, sizes, chunk map) are cached on the device per set of tensors
(keyed by data pointers and sizes), so a step copies only the scalars, from pinned memory.
"""

from __future__ import annotations

import collections

import torch
import triton
import triton.language as tl

from .common import BLOCK
from .common import REDUCE_ITERS
from .common import TILE
from .common import cast_to
from .common import device_of
from .common import div_rn
from .common import sqrt_rn

_TL_DTYPES = {
    torch.float16: tl.float16,
    torch.bfloat16: tl.bfloat16,
    torch.float32: tl.float32,
    torch.float64: tl.float64,
}
# Elements per program: ITERS steps of STEP (the interpreter: one step of a TILE, since it
# pays per program and per operation rather than per element).
STEP = TILE
ITERS = REDUCE_ITERS if TILE == BLOCK else 1
CHUNK = STEP * ITERS
# Compile options of every launch: no implicit contraction (the fmas are explicit).
LAUNCH_OPTIONS = {"enable_fp_fusion": False}
# Device tables of the last few tensor sets (an optimizer has one per dtype and device).
_TABLE_CACHE_SIZE = 8
_table_cache: collections.OrderedDict = collections.OrderedDict()


def launch_constexprs(float64: bool) -> dict:
    """The launch's constexprs that do not depend on the tensors' dtype (BLOCK, ITERS, the
    CUDA rounding sequence and PTX, 16-byte aligned tensors)."""
    return dict(FUSED=True, NV_PTX=True, ALIGNED=True, BLOCK=STEP, ITERS=ITERS)


@triton.jit
def _round_op(x, DT: tl.constexpr, OP: tl.constexpr):
    """The result of one PyTorch op: rounded to the tensor dtype DT when computed in a wider
    OP (float16 / bfloat16 tensors), else x itself."""
    if DT != OP:
        x = cast_to(x, DT).to(OP)
    return x


@triton.jit
def _div_ieee(x, y, NV_PTX: tl.constexpr):
    """x / y correctly rounded, subnormals kept: Triton's float32 div_rn compiles to
    div.rn.ftz.f32, which flushes them, so NVIDIA GPUs get div.rn.f32 written out."""
    if NV_PTX and x.dtype == tl.float32:
        return tl.inline_asm_elementwise(
            "div.rn.f32 $0, $1, $2;", "=f,f,f", [x, y], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return div_rn(x, y)


@triton.jit
def _sqrt_ieee(x, NV_PTX: tl.constexpr):
    """Correctly rounded square root keeping subnormals (see _div_ieee)."""
    if NV_PTX and x.dtype == tl.float32:
        return tl.inline_asm_elementwise("sqrt.rn.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True, pack=1)
    else:
        return sqrt_rn(x)


@triton.jit
def _lreq_adam_kernel(
    pointers_ptr,
    numels_ptr,
    chunk_tensor_ptr,
    chunk_start_ptr,
    scalars_ptr,
    DT: tl.constexpr,
    OP: tl.constexpr,
    HAS_WEIGHT_DECAY: tl.constexpr,
    FUSED: tl.constexpr,
    NV_PTX: tl.constexpr,
    ALIGNED: tl.constexpr,
    BLOCK: tl.constexpr,
    ITERS: tl.constexpr,
):
    pid = tl.program_id(0)
    tensor = tl.load(chunk_tensor_ptr + pid)
    start = tl.load(chunk_start_ptr + pid)
    numel = tl.load(numels_ptr + tensor)
    param_ptr = tl.load(pointers_ptr + 3 * tensor).to(tl.pointer_type(DT))
    grad_ptr = tl.load(pointers_ptr + 3 * tensor + 1).to(tl.pointer_type(DT))
    exp_avg_sq_ptr = tl.load(pointers_ptr + 3 * tensor + 2).to(tl.pointer_type(DT))
    if ALIGNED:  # every pointer 16-byte aligned (checked on the host): vector loads
        param_ptr = tl.multiple_of(param_ptr, 16)
        grad_ptr = tl.multiple_of(grad_ptr, 16)
        exp_avg_sq_ptr = tl.multiple_of(exp_avg_sq_ptr, 16)
    # scalars: beta2, 1 - beta2, eps, weight_decay, then -step_size of each tensor.
    beta2 = tl.load(scalars_ptr)
    one_minus_beta2 = tl.load(scalars_ptr + 1)
    eps = tl.load(scalars_ptr + 2)
    weight_decay = tl.load(scalars_ptr + 3)
    neg_step = tl.load(scalars_ptr + 4 + tensor)
    for it in tl.static_range(ITERS):
        # Chunk starts are multiples of CHUNK: BLOCK-aligned runs of BLOCK elements.
        offs = tl.max_contiguous(tl.multiple_of(start + it * BLOCK + tl.arange(0, BLOCK), BLOCK), BLOCK)
        mask = offs < numel
        p = tl.load(param_ptr + offs, mask=mask, other=0.0).to(OP)
        g = tl.load(grad_ptr + offs, mask=mask, other=0.0).to(OP)
        v = tl.load(exp_avg_sq_ptr + offs, mask=mask, other=1.0).to(OP)  # no 0 / 0 off the end
        if FUSED:  # PyTorch CUDA: fma(wd, p, g), fma(1 - b2, g * g, v), fma(-s, g / d, p)
            if HAS_WEIGHT_DECAY:
                g = _round_op(tl.fma(weight_decay, p, g), DT, OP)
            v = _round_op(v * beta2, DT, OP)
            v = _round_op(tl.fma(one_minus_beta2, g * g, v), DT, OP)
            denom = _round_op(_sqrt_ieee(v, NV_PTX), DT, OP)
            denom = _round_op(denom + eps, DT, OP)
            p = _round_op(tl.fma(neg_step, _div_ieee(g, denom, NV_PTX), p), DT, OP)
        else:  # PyTorch CPU: every operation rounded apart
            if HAS_WEIGHT_DECAY:
                g = _round_op(g + weight_decay * p, DT, OP)  # grad.add(p, alpha=wd)
            v = _round_op(v * beta2, DT, OP)  # v.mul_(beta2)
            v = _round_op(v + (one_minus_beta2 * g) * g, DT, OP)  # v.addcmul_(g, g, 1 - beta2)
            denom = _round_op(_sqrt_ieee(v, NV_PTX), DT, OP)  # v.sqrt()
            denom = _round_op(denom + eps, DT, OP)  # .add_(eps)
            # p.addcdiv_(g, denom, value=-step)
            p = _round_op(p + _div_ieee(neg_step * g, denom, NV_PTX), DT, OP)
        tl.store(exp_avg_sq_ptr + offs, v.to(DT), mask=mask)
        tl.store(param_ptr + offs, p.to(DT), mask=mask)


def _device_tables(params, grads, exp_avg_sqs, device):
    """(pointers, numels, chunk tensor, chunk start) int64 tables on ``device``, cached per
    set of data pointers and sizes: rebuilt only when a tensor moved or changed size."""
    key = (
        device,
        tuple((p.data_ptr(), g.data_ptr(), v.data_ptr(), p.numel()) for p, g, v in zip(params, grads, exp_avg_sqs)),
    )
    cached = _table_cache.get(key)
    if cached is not None:
        _table_cache.move_to_end(key)
        return cached
    pointers, numels, chunk_tensor, chunk_start = [], [], [], []
    for i, (p, g, v) in enumerate(zip(params, grads, exp_avg_sqs)):
        pointers += [p.data_ptr(), g.data_ptr(), v.data_ptr()]
        numels.append(p.numel())
        starts = range(0, p.numel(), CHUNK)
        chunk_tensor += [i] * len(starts)
        chunk_start += starts
    count, chunks = len(params), len(chunk_tensor)
    ints = _to_device(torch.tensor(pointers + numels + chunk_tensor + chunk_start, dtype=torch.int64), device)
    tables = (
        ints[: 3 * count],
        ints[3 * count : 4 * count],
        ints[4 * count : 4 * count + chunks],
        ints[4 * count + chunks :],
        chunks,
    )
    _table_cache[key] = tables
    if len(_table_cache) > _TABLE_CACHE_SIZE:
        _table_cache.popitem(last=False)
    return tables


def _to_device(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``host`` on ``device``; to a GPU from pinned memory without a stream sync (the pinned
    caching allocator keeps the buffer until the copy is done)."""
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def lreq_adam_step_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    step_sizes: list[float],
    beta2: float,
    eps: float,
    weight_decay: float,
    fused: bool | None = None,
) -> None:
    """In place: for each i, exp_avg_sqs[i] and params[i] take one Adam step of step size
    step_sizes[i] (contiguous tensors, one dtype, one device). ``fused``: PyTorch CUDA's
    rounding sequence (default: on CUDA tensors) rather than its CPU one."""
    if not params:
        return
    device, dtype = params[0].device, params[0].dtype
    # PyTorch computes float16 / bfloat16 ops in float32 with float32 scalars.
    op_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    pointer_table, numel_table, chunk_tensor_table, chunk_start_table, chunks = _device_tables(
        params, grads, exp_avg_sqs, device
    )
    if chunks == 0:
        return
    # Scalars rounded once here (double -> op dtype, round to nearest even, as PyTorch does).
    scalars = _to_device(
        torch.tensor([beta2, 1.0 - beta2, eps, weight_decay] + [-s for s in step_sizes], dtype=torch.float64).to(
            op_dtype
        ),
        device,
    )
    if fused is None:
        fused = device.type == "cuda"
    aligned = all(t.data_ptr() % 16 == 0 for ts in (params, grads, exp_avg_sqs) for t in ts)
    with device_of(params[0]):
        _lreq_adam_kernel[(chunks,)](
            pointer_table,
            numel_table,
            chunk_tensor_table,
            chunk_start_table,
            scalars,
            DT=_TL_DTYPES[dtype],
            OP=tl.float64 if op_dtype == torch.float64 else tl.float32,
            HAS_WEIGHT_DECAY=weight_decay != 0,
            FUSED=bool(fused),
            NV_PTX=device.type == "cuda" and torch.version.hip is None,
            ALIGNED=aligned,
            BLOCK=STEP,
            ITERS=ITERS,
            **LAUNCH_OPTIONS,
        )
