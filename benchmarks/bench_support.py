"""Shared pieces of the op benchmarks: timing one case and recording it for RESULTS.md."""

from __future__ import annotations

import time

import pytest
import torch

from alae_fast.ops import available_impls

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Per-case time budget: enough rounds for a stable median, small enough that the whole
# `pytest benchmarks/` stays within a few minutes on a 2-core CPU.
TARGET_SECONDS = 0.5
MIN_ROUNDS, MAX_ROUNDS = 3, 500

# Result rows of this session, written by conftest.pytest_sessionfinish.
ROWS: list[dict] = []


def impls(supported=("ref", "triton", "cuda", "cpu")) -> list[str]:
    """The implementations benchmarked here: every available one (Triton's CPU interpreter
    is a test vehicle, not an implementation to time, so it is left out on CPU)."""
    return [i for i in available_impls(DEVICE, supported) if not (i == "triton" and DEVICE == "cpu")]


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def run_case(
    benchmark, *, op: str, mode: str, shape: str, impl: str, fn, nbytes: int, flops: int = 0, baseline: str = "ref"
) -> None:
    """Time ``fn`` with pytest-benchmark and record median time, achieved bandwidth
    (``nbytes`` read + written per call) and, where given, achieved FLOP/s (``flops`` per call).
    ``baseline`` names the impl row the speed-up is taken against."""

    def call():
        fn()
        _sync()

    if benchmark.disabled:  # --benchmark-disable: run the case once as a check, record nothing
        benchmark.pedantic(call, rounds=1, iterations=1)
        return
    call()  # warm-up: lazy loading, Triton compilation, allocator
    t0 = time.perf_counter()
    call()
    once = max(time.perf_counter() - t0, 1e-7)
    rounds = int(min(MAX_ROUNDS, max(MIN_ROUNDS, TARGET_SECONDS / once)))
    benchmark.group = f"{op} {mode} {shape}"
    benchmark.extra_info.update(op=op, mode=mode, shape=shape, impl=impl)
    benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=1)
    median = benchmark.stats.stats.median
    row = dict(
        op=op, mode=mode, shape=shape, impl=impl, median_us=median * 1e6, gbps=nbytes / median / 1e9, rounds=rounds
    )
    if flops:
        row["tflops"] = flops / median / 1e12
    if baseline != "ref":
        row["baseline"] = baseline
    ROWS.append(row)


def parametrize_impls(supported=("ref", "triton", "cuda", "cpu")):
    return pytest.mark.parametrize("impl", impls(supported))


def nbytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


# ---- the forward / forward+backward grid of the op benchmarks ---------------------------------
MODES = ["forward", "forward+backward"]
# Activations of the small StyleALAE (batch 4) and of a 64x64 model (batch 32); on GPU also a
# 128x128 one.
ACTIVATION_SHAPES = [(4, 16, 32, 32), (4, 64, 8, 8), (32, 64, 64, 64)]
if DEVICE == "cuda":
    ACTIVATION_SHAPES += [(32, 128, 128, 128)]
# Logit counts of the adversarial losses.
LOGIT_SIZES = [64, 4096, 1 << 20] if DEVICE == "cpu" else [64, 4096, 1 << 20, 1 << 24]


def _shape_id(shape) -> str:
    return "x".join(map(str, shape)) if isinstance(shape, tuple) else str(shape)


def parametrize_cases(shapes, supported=("ref", "triton", "cuda", "cpu")):
    """Every available impl x ``shapes`` (as ``shape``) x ``MODES`` (as ``mode``)."""

    def decorate(test):
        test = pytest.mark.parametrize("mode", MODES)(test)
        test = pytest.mark.parametrize("shape", shapes, ids=_shape_id)(test)
        return parametrize_impls(supported)(test)

    return decorate


def randn(shape, mode: str) -> torch.Tensor:
    """N(0, 1) input on DEVICE, differentiable in mode "forward+backward"."""
    return torch.randn(shape, device=DEVICE, requires_grad=mode != "forward")


def _backward(out) -> None:
    outs = out if isinstance(out, tuple) else (out,)
    loss = None
    for t in outs:
        t = t if t.dim() == 0 else t.sum()
        loss = t if loss is None else loss + t
    loss.backward()


def run_op_case(benchmark, op: str, mode: str, shape, impl: str, forward, moved: tuple[int, int]) -> None:
    """``run_case`` of ``forward()`` (mode "forward") or of it and the backward of the sum of
    its outputs (mode "forward+backward"); ``moved`` holds the bytes of each mode."""
    fn = forward if mode == "forward" else (lambda: _backward(forward()))
    label = str(list(shape)) if isinstance(shape, tuple) else f"[{shape}]"
    run_case(benchmark, op=op, mode=mode, shape=label, impl=impl, fn=fn, nbytes=moved[mode != "forward"])


# ---- the "## " sections of RESULTS.md that a benchmark module writes itself ---------------------
def write_section(heading: str, lines: list[str], path=None) -> None:
    """Replace the section of RESULTS.md that starts with the line ``heading`` (up to the next
    line starting with "## ") by ``lines``, or append it when absent; everything else is kept.
    ``conftest.write_markdown`` keeps every "## " section when it rebuilds the device tables."""
    from pathlib import Path

    path = Path(path) if path is not None else Path(__file__).resolve().parent / "RESULTS.md"
    old = path.read_text().splitlines(keepends=True) if path.exists() else []
    block = "\n".join(lines).rstrip("\n") + "\n"
    starts = [i for i, line in enumerate(old) if line.rstrip("\n") == heading]
    if starts:
        start = starts[0]
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")), len(old))
        after = "".join(old[end:])
        text = "".join(old[:start]) + block + ("\n" + after if after else "")
    else:
        before = "".join(old).rstrip("\n")
        text = before + "\n\n" + block if before else block
    path.write_text(text)
