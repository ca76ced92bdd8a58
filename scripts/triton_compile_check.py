#!/usr/bin/env python3
"""Compile every launched Triton kernel of alae_fast for NVIDIA targets, without a GPU.

Each case is one kernel in one configuration its launcher or autotuner can choose (tiles,
warps, stages, dtypes, input precision), compiled with ``triton.compile`` for a
``GPUTarget("cuda", arch, 32)``; Triton's bundled ptxas produces the cubin, and its ``-v``
log gives registers and spills. A case fails when it does not compile or when its shared
memory exceeds the arch's dynamic maximum per block.

Launch-time choices that depend on the problem (tile sizes of the element-wise and row
kernels) are enumerated by calling the launchers' own tile functions on representative shapes
(``SHAPES_*`` below, on the meta device); autotuned kernels take their configs from the
kernel modules' config lists. Feature flags (HAS_BIAS, HAS_NOISE, ...) are compiled with all
features on, the variant with the most code; 32-bit index scalars as for any tensor under 2**31
elements.

    python scripts/triton_compile_check.py [--arch 80,90] [--quick] [--write-results]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Dynamic shared memory per block (bytes): sm_80 163 KB, sm_90 227 KB (CUDA programming
# guide, compute capabilities table).
SHARED_LIMIT = {80: 166912, 86: 101376, 89: 101376, 90: 232448}
DTYPES = ("float32", "float64", "float16", "bfloat16")
_PTR = {"float32": "fp32", "float64": "fp64", "float16": "fp16", "bfloat16": "bf16"}
SECTION = "## Triton compile check"


@dataclasses.dataclass
class Case:
    """One kernel configuration to compile. ``signature`` maps every argument to a Triton
    type string ("*fp32", "i32", "fp64", "constexpr"); ``constexprs`` gives the constexprs'
    values; ``options`` the compile options (num_warps, num_stages, enable_fp_fusion)."""

    kernel: str
    dtype: str
    config: str
    fn: object
    signature: dict
    constexprs: dict
    options: dict


@dataclasses.dataclass
class Result:
    kernel: str
    dtype: str
    config: str
    arch: int
    shared: int | None = None
    registers: int | None = None
    spill_stores: int | None = None
    spill_loads: int | None = None
    seconds: float = 0.0
    error: str | None = None


def parse_ptxas_log(text: str):
    """(registers, spill store bytes, spill load bytes) from a ptxas ``-v`` log of one kernel;
    None for what the log does not say."""
    regs = re.findall(r"Used (\d+) registers", text)
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    registers = int(regs[-1]) if regs else None
    stores, loads = (int(spills[-1][0]), int(spills[-1][1])) if spills else (None, None)
    return registers, stores, loads


def failures(result: Result) -> list[str]:
    """Why ``result`` fails the check (empty when it passes)."""
    if result.error is not None:
        return [f"compile error: {result.error}"]
    limit = SHARED_LIMIT.get(result.arch)
    if limit is None:
        return [f"no shared-memory limit known for sm_{result.arch}"]
    if result.shared is None:
        return ["no shared-memory size in the compiled metadata"]
    if result.shared > limit:
        return [f"shared memory {result.shared} B > sm_{result.arch} limit {limit} B"]
    return []


# --------------------------------------------------------------------------------------------
# Case enumeration (imports the kernel modules: run with TRITON_INTERPRET unset)
# --------------------------------------------------------------------------------------------

# Representative (N, C, H, W) activations of the StyleALAE generator / encoder and of the
# tests, small rows to rows longer than one tile; bias_act also sees [N, C] latents.
SHAPES_4D = [(32, 512, 4, 4), (32, 256, 16, 16), (8, 64, 64, 64), (4, 16, 256, 256), (1, 3, 1024, 1024), (2, 8, 3, 5)]
SHAPES_2D = [(32, 512), (4096, 8)]
# (batch, IN, OUT) of the mapping / latent layers.
SHAPES_LINEAR = [(32, 512, 512), (1, 512, 512), (64, 512, 1), (8, 3, 17)]


def _meta(shape, channels_last=False):
    import torch

    t = torch.empty(shape, device="meta")
    return t.to(memory_format=torch.channels_last) if channels_last else t


def _tl(name):
    import triton.language as tl

    return {"float32": tl.float32, "float64": tl.float64, "float16": tl.float16, "bfloat16": tl.bfloat16}[name]


def _acc(dtype):
    return "float64" if dtype == "float64" else "float32"


def _signature(fn, ptr, constexprs, ptr_types=None, scalar_types=None):
    """Signature of ``fn``: pointers ("*_ptr" arguments) of dtype ``ptr`` unless named in
    ``ptr_types``, scalars "i32" unless annotated tl.float64 or named in ``scalar_types``."""
    ptr_types, scalar_types = ptr_types or {}, scalar_types or {}
    sig = {}
    for param in fn.params:
        name = param.name
        if param.is_constexpr:
            sig[name] = "constexpr"
            assert name in constexprs, f"{fn.__name__}: constexpr {name} not given"
        elif name.endswith("_ptr"):
            sig[name] = "*" + _PTR.get(ptr_types.get(name, ptr), ptr_types.get(name, ptr))
        elif name in scalar_types:
            sig[name] = scalar_types[name]
        elif "float64" in str(param.annotation) or param.annotation == "tl.float64":
            sig[name] = "fp64"
        else:
            sig[name] = "i32"
    return sig


def _fmt(constexprs, keys):
    return " ".join(f"{k}={constexprs[k]}" for k in keys if k in constexprs)


def _add(cases, fn, name, dtype, constexprs, show, ptr_types=None, warps=4, stages=3, extra_options=None):
    opts = {"num_warps": warps, "num_stages": stages, **(extra_options or {})}
    config = _fmt(constexprs, show) + f" w{warps}s{stages}"
    if extra_options:
        config += " " + " ".join(f"{k}={v}" for k, v in extra_options.items())
    cases.append(Case(name, dtype, config.strip(), fn, _signature(fn, dtype, constexprs, ptr_types), constexprs, opts))


def _dedupe(items):
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _reduction_cases(cases, dtypes):
    from alae_fast.ops._triton import adv_loss
    from alae_fast.ops._triton import latent_l2
    from alae_fast.ops._triton import r1_penalty
    from alae_fast.ops._triton.common import BLOCK
    from alae_fast.ops._triton.common import REDUCE_ITERS

    for dt in dtypes:
        acc = _acc(dt)
        base = dict(ACC=_tl(acc), BLOCK=BLOCK)
        _add(
            cases,
            latent_l2._l2_fwd_kernel,
            "latent_l2.fwd",
            dt,
            dict(base, ITERS=REDUCE_ITERS),
            ["BLOCK", "ITERS"],
            {"partial_ptr": acc},
        )
        _add(cases, latent_l2._l2_bwd_kernel, "latent_l2.bwd", dt, base, ["BLOCK"])
        _add(
            cases,
            r1_penalty._r1_fwd_kernel,
            "r1_penalty.fwd",
            dt,
            dict(base, ITERS=REDUCE_ITERS),
            ["BLOCK", "ITERS"],
            {"partial_ptr": acc},
        )
        _add(cases, r1_penalty._r1_bwd_kernel, "r1_penalty.bwd", dt, base, ["BLOCK"], {"scale_ptr": acc})
        # d_adv_loss (FAKE_SIGN 1, with real logits) and g_adv_loss (-1, without).
        for sign, real in ((1.0, True), (-1.0, False)):
            flags = dict(base, FAKE_SIGN=sign, HAS_REAL=real)
            _add(
                cases,
                adv_loss._adv_loss_fwd_kernel,
                "adv_loss.fwd",
                dt,
                dict(flags, ITERS=REDUCE_ITERS),
                ["FAKE_SIGN", "HAS_REAL", "BLOCK", "ITERS"],
                {"partial_ptr": acc},
            )
            _add(cases, adv_loss._adv_loss_bwd_kernel, "adv_loss.bwd", dt, flags, ["FAKE_SIGN", "HAS_REAL", "BLOCK"])


def _elementwise_cases(cases, dtypes):
    from alae_fast.ops._triton import bias_act
    from alae_fast.ops._triton import blur
    from alae_fast.ops._triton.common import REDUCE_ITERS

    layouts = [_meta(s) for s in SHAPES_4D] + [_meta(s, True) for s in SHAPES_4D] + [_meta(s) for s in SHAPES_2D]
    tiles = _dedupe(bias_act._tile(*bias_act._layout(x)) for x in layouts)
    blur_tiles = _dedupe(blur.tiles(x) for x in layouts if x.dim() == 4)
    for dt in dtypes:
        acc = _tl(_acc(dt))
        for bo, bc, bi in tiles:
            meta = dict(ACC=acc, BO=bo, BC=bc, BI=bi)
            _add(
                cases, bias_act._bias_act_fwd_kernel, "bias_act.fwd", dt, dict(meta, HAS_BIAS=True), ["BO", "BC", "BI"]
            )
            _add(
                cases,
                bias_act._bias_act_bwd_kernel,
                "bias_act.bwd",
                dt,
                dict(meta, ITERS=REDUCE_ITERS),
                ["BO", "BC", "BI", "ITERS"],
                {"partial_ptr": _acc(dt)},
            )
        for bc, bh, bw in blur_tiles:
            _add(cases, blur._blur_kernel, "blur", dt, dict(ACC=acc, BC=bc, BH=bh, BW=bw), ["BC", "BH", "BW"])


def _row_cases(cases, dtypes):
    from alae_fast.ops._triton import adain
    from alae_fast.ops._triton import encode_norm
    from alae_fast.ops._triton.common import row_tile

    tiles = _dedupe(row_tile(n * c, h * w) for n, c, h, w in SHAPES_4D)
    for dt in dtypes:
        acc_name = _acc(dt)
        acc = _tl(acc_name)
        for rows, bm in tiles:
            meta = dict(ACC=acc, ROWS=rows, BM=bm)
            show = ["ROWS", "BM"]
            stats = {"stats_ptr": acc_name}
            _add(cases, encode_norm._encode_norm_fwd_kernel, "encode_norm.fwd", dt, meta, show, stats)
            _add(
                cases,
                encode_norm._encode_norm_bwd_kernel,
                "encode_norm.bwd",
                dt,
                meta,
                show,
                dict(stats, partial_ptr=acc_name),
            )
            flags = dict(meta, HAS_NOISE=True, HAS_BIAS=True)
            _add(cases, adain._adain_fwd_kernel, "adain.fwd", dt, flags, show, stats)
            _add(
                cases,
                adain._adain_bwd_kernel,
                "adain.bwd",
                dt,
                flags,
                show,
                dict(stats, partial_noise_ptr=acc_name, partial_bias_ptr=acc_name),
            )


def _linear_cases(cases, dtypes):
    from alae_fast.ops._triton import linear_act

    for dt in dtypes:
        precisions = ["ieee", "tf32"] if dt == "float32" else ["ieee"]
        tiles = _dedupe(linear_act.tiles(b, o, i, dt == "float64") + (i,) for b, i, o in SHAPES_LINEAR)
        for bm, bn, bk, warps, in_features in tiles:
            for prec in precisions:
                meta = dict(
                    IN=in_features,
                    HAS_BIAS=True,
                    ACC=_tl(_acc(dt)),
                    USE_DOT=dt != "float64",
                    PRECISION=prec,
                    BM=bm,
                    BN=bn,
                    BK=bk,
                    GROUP=linear_act.GROUP_M,
                )
                _add(
                    cases,
                    linear_act._linear_act_kernel,
                    "linear_act",
                    dt,
                    meta,
                    ["IN", "BM", "BN", "BK"] + (["PRECISION"] if dt == "float32" else []),
                    warps=warps,
                )


def _lreq_adam_cases(cases, dtypes):
    from alae_fast.ops._triton import lreq_adam

    for dt in dtypes:
        op = _acc(dt)
        meta = dict(lreq_adam.launch_constexprs(dt == "float64"), DT=_tl(dt), OP=_tl(op), HAS_WEIGHT_DECAY=True)
        table = {
            "pointers_ptr": "i64",
            "numels_ptr": "i64",
            "chunk_tensor_ptr": "i64",
            "chunk_start_ptr": "i64",
            "scalars_ptr": op,
        }
        _add(
            cases,
            lreq_adam._lreq_adam_kernel,
            "lreq_adam",
            dt,
            meta,
            ["BLOCK", "ITERS"],
            table,
            extra_options=lreq_adam.LAUNCH_OPTIONS,
        )


def _conv_cases(cases, dtypes, quick):
    import torch

    from alae_fast.ops._triton import adain_conv2d as conv

    # A layer of 256 -> 256 channels at 32 x 32: every tuned tile fits it (none pruned).
    c = cout = 256
    kpix = 4096
    for dt in dtypes:
        tdt = getattr(torch, dt)
        acc_name = _acc(dt)
        flags = dict(
            C=c,
            COUT=cout,
            HAS_NOISE=True,
            HAS_AB=True,
            HAS_CENTER=True,
            ACC=_tl(acc_name),
            USE_DOT=dt != "float64",
            PRECISION=conv.input_precision(tdt),
        )
        for up in (False, True):
            fwd = dict(flags, UP=up, TAPS=2 if up else 3, HAS_BIAS=True)
            grad_a = dict(flags, TAPS=4 if up else 3, STRIDE=2 if up else 1)
            grad_w = dict(flags, UP=up, TAPS=2 if up else 3, KPIX=kpix)
            if dt in conv.TUNED_DTYPES:
                fwd_cfgs = [(cfg.kwargs, cfg.num_warps, cfg.num_stages) for cfg in conv.FWD_CONFIGS[tdt]]
                # BM of _grad_a is chosen at launch (its partial-sum buffer depends on it):
                # the largest one, which needs the most shared memory and registers.
                grad_a_cfgs = [
                    (dict(cfg.kwargs, BM=conv.grad_a_bm(1 << 20, True)), cfg.num_warps, cfg.num_stages)
                    for cfg in conv.GRAD_A_CONFIGS[tdt]
                ]
                grad_w_cfgs = [
                    (cfg.kwargs, cfg.num_warps, cfg.num_stages)
                    for cfg in conv.GRAD_W_CONFIGS[tdt]
                    if kpix % cfg.kwargs["BK"] == 0
                ]
            else:
                bm, bn, bk = conv._dot_tiles(1 << 20, cout, c, 256, 64, 64, False)
                fwd_cfgs = [(dict(BM=bm, BN=bn, BK=bk), 4, 3)]
                gbm = conv.grad_a_bm(1 << 20, False)
                _, bn, bk = conv._dot_tiles(gbm, c, cout, gbm, 64, 64, False)
                grad_a_cfgs = [(dict(BM=gbm, BN=bn, BK=bk), 4, 3)]
                bco, bc, bk = conv._dot_tiles(cout, c, conv.FLOAT64_KPIX, 64, 64, 256, False)
                grad_w_cfgs = [(dict(BCO=bco, BC=bc, BK=min(bk, conv.FLOAT64_KPIX)), 4, 3)]
                grad_w = dict(grad_w, KPIX=conv.FLOAT64_KPIX)
            if quick:
                fwd_cfgs, grad_a_cfgs, grad_w_cfgs = fwd_cfgs[:1], grad_a_cfgs[:1], grad_w_cfgs[:1]
            shown = ["UP", "PRECISION"] if dt == "float32" else ["UP"]
            for tiles, warps, stages in fwd_cfgs:
                _add(
                    cases,
                    conv._fwd_kernel,
                    "adain_conv2d.fwd",
                    dt,
                    dict(fwd, **tiles),
                    ["BM", "BN", "BK"] + shown,
                    warps=warps,
                    stages=stages,
                )
            for tiles, warps, stages in grad_a_cfgs:
                _add(
                    cases,
                    conv._grad_a_kernel,
                    "adain_conv2d.grad_a",
                    dt,
                    dict(grad_a, **tiles),
                    ["BM", "BN", "BK", "STRIDE"] + shown[1:],
                    {"part_ptr": acc_name},
                    warps=warps,
                    stages=stages,
                )
            for tiles, warps, stages in grad_w_cfgs:
                _add(
                    cases,
                    conv._grad_w_kernel,
                    "adain_conv2d.grad_w",
                    dt,
                    dict(grad_w, **tiles),
                    ["BCO", "BC", "BK"] + shown,
                    {"part_ptr": acc_name},
                    warps=warps,
                    stages=stages,
                )
        # adain_stats: tiles from the launcher's own choice on the shapes (meta: 1 "SM").
        stats_tiles = _dedupe(
            conv._stats_tiles(x, x.shape[0] * x.shape[1], x.shape[2] * x.shape[3])[:2]
            for x in [_meta(s) for s in SHAPES_4D] + [_meta(s, True) for s in SHAPES_4D]
        )
        for rows, bm in stats_tiles:
            _add(
                cases,
                conv._stats_kernel,
                "adain_conv2d.stats",
                dt,
                dict(HAS_NOISE=True, HAS_AB=True, FINAL=True, ACC=_tl(acc_name), ROWS=rows, BM=bm),
                ["ROWS", "BM"],
                {"stats_ptr": acc_name, "part_ptr": acc_name},
            )


def build_cases(dtypes=DTYPES, quick=False, kernels=None):
    """Every case, in a fixed order; with ``quick`` one config per kernel and dtype; only
    kernels whose name starts with one of ``kernels`` when given."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise SystemExit(
            "triton_compile_check: unset TRITON_INTERPRET (the kernel modules choose interpreter tiles when it is set)"
        )
    cases = []
    _reduction_cases(cases, dtypes)
    _elementwise_cases(cases, dtypes)
    _row_cases(cases, dtypes)
    _linear_cases(cases, dtypes)
    _lreq_adam_cases(cases, dtypes)
    _conv_cases(cases, dtypes, quick)
    if kernels:
        cases = [c for c in cases if c.kernel.startswith(tuple(kernels))]
    if quick:
        seen, kept = set(), []
        for case in cases:
            if (case.kernel, case.dtype) not in seen:
                seen.add((case.kernel, case.dtype))
                kept.append(case)
        cases = kept
    return cases


# --------------------------------------------------------------------------------------------
# Compilation
# --------------------------------------------------------------------------------------------


def _ptxas_log_by_rerun(ptx: str, arch: int, fp_fusion: bool) -> str:
    """ptxas -v on the PTX (when Triton printed no log, e.g. an older Triton)."""
    from triton.backends.nvidia import compiler as nv

    ptxas = nv.get_ptxas(arch).path if hasattr(nv, "get_ptxas") else nv._path_to_binary("ptxas")[0]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        cmd = [
            ptxas,
            "-v",
            f"--gpu-name={nv.sm_arch_from_capability(arch)}",
            str(src),
            "-o",
            str(Path(tmp) / "k.o"),
        ] + ([] if fp_fusion else ["--fmad=false"])
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stderr


def compile_case(case: Case, arch: int) -> Result:
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.compiler import make_backend

    result = Result(case.kernel, case.dtype, case.config, arch)
    target = GPUTarget("cuda", arch, 32)
    start = time.time()
    try:
        # Pointers from the caching allocator are 16-byte aligned: specialised as at launch.
        parse = make_backend(target).parse_attr
        attrs = {(i,): parse("D") for i, t in enumerate(case.signature.values()) if t.startswith("*")}
        src = ASTSource(case.fn, case.signature, case.constexprs, attrs)
        log = io.StringIO()
        knobs.nvidia.dump_ptxas_log = True
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(src, target=target, options=dict(case.options))
        text = log.getvalue()
        if "registers" not in text:
            text = _ptxas_log_by_rerun(compiled.asm["ptx"], arch, case.options.get("enable_fp_fusion", True))
        result.shared = int(compiled.metadata.shared)
        result.registers, result.spill_stores, result.spill_loads = parse_ptxas_log(text)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the run
        result.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
    result.seconds = time.time() - start
    return result


_WORKER_CASES = None


def _init_worker(quick, dtypes, kernels, cache_dir):
    global _WORKER_CASES
    os.environ["TRITON_CACHE_DIR"] = cache_dir
    import warnings

    warnings.filterwarnings("ignore", message="TRITON_DEFAULT_FP_FUSION")
    _WORKER_CASES = build_cases(dtypes, quick, kernels)


def _run_one(job):
    index, arch = job
    return compile_case(_WORKER_CASES[index], arch)


def run(archs, quick=False, dtypes=DTYPES, jobs=None, kernels=None):
    cases = build_cases(dtypes, quick, kernels)
    work = [(i, arch) for i in range(len(cases)) for arch in archs]
    # The big convolution cases first, so the pool does not end on one long compile.
    work.sort(key=lambda w: not cases[w[0]].kernel.startswith("adain_conv2d."))
    jobs = jobs or os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as cache_dir:
        with concurrent.futures.ProcessPoolExecutor(
            jobs, initializer=_init_worker, initargs=(quick, dtypes, kernels, cache_dir)
        ) as pool:
            results = list(pool.map(_run_one, work))
    order = {(c.kernel, c.dtype, c.config): i for i, c in enumerate(cases)}
    return sorted(results, key=lambda r: (order[(r.kernel, r.dtype, r.config)], r.arch))


def _kb(n):
    return "-" if n is None else f"{n / 1024:.1f}"


def markdown(results, wall, triton_version, archs, quick) -> str:
    bad = [r for r in results if failures(r)]
    today = datetime.date.today().isoformat()
    lines = [
        SECTION,
        "",
        f"`python scripts/triton_compile_check.py --arch {','.join(map(str, archs))}"
        f"{' --quick' if quick else ''}`: triton {triton_version}, {today}, no GPU; "
        f"{len(results)} compiles in {wall:.0f} s on {os.cpu_count()} cores. Shared "
        "memory from the compiled metadata (limits: sm_80 163 KB, sm_90 227 KB per "
        "block), registers per thread and spill bytes (stores / loads) from ptxas -v. "
        f"Failures: {len(bad)}.",
        "",
        "| kernel | dtype | config | arch | shared KB | registers | spill bytes (st/ld) | status |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for r in results:
        why = failures(r)
        spill = "-" if r.spill_stores is None else f"{r.spill_stores}/{r.spill_loads}"
        status = "ok" if not why else "FAIL: " + "; ".join(why).replace("|", "/")
        lines.append(
            f"| {r.kernel} | {r.dtype} | {r.config} | sm_{r.arch} | {_kb(r.shared)} "
            f"| {r.registers if r.registers is not None else '-'} | {spill} "
            f"| {status} |"
        )
    return "\n".join(lines) + "\n"


def replace_section(text: str, section: str) -> str:
    """``text`` with its "## Triton compile check" section (up to the next "## " heading)
    replaced by ``section``, or ``section`` appended."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        return text.rstrip("\n") + "\n\n" + section
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ") or lines[i].startswith("# ")), len(lines)
    )
    tail = "".join(lines[end:])
    return "".join(lines[:start]) + section + ("\n" + tail if tail else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="80,90", help="compute capabilities, e.g. 80,90")
    parser.add_argument("--quick", action="store_true", help="one config per kernel and dtype")
    parser.add_argument("--write-results", action="store_true", help="replace the section of benchmarks/RESULTS.md")
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--kernels", default=None, help="comma-separated kernel name prefixes (default: all)")
    parser.add_argument("--jobs", type=int, default=None, help="processes (default: cores)")
    args = parser.parse_args(argv)
    archs = [int(a) for a in args.arch.split(",")]
    unknown = [a for a in archs if a not in SHARED_LIMIT]
    if unknown:
        parser.error(f"--arch: no shared-memory limit known for {unknown}")
    sys.path.insert(0, str(ROOT))
    import triton

    start = time.time()
    kernels = args.kernels.split(",") if args.kernels else None
    results = run(archs, args.quick, tuple(args.dtypes.split(",")), args.jobs, kernels)
    wall = time.time() - start
    table = markdown(results, wall, triton.__version__, archs, args.quick)
    print(table)
    if args.write_results:
        path = ROOT / "benchmarks" / "RESULTS.md"
        path.write_text(replace_section(path.read_text(), table))
    bad = [r for r in results if failures(r)]
    for r in bad:
        print(f"FAIL {r.kernel} {r.dtype} {r.config} sm_{r.arch}: {'; '.join(failures(r))}", file=sys.stderr)
    print(f"{len(results)} compiles, {len(bad)} failures, {wall:.0f} s", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
