"""Per-layer choice between the fused AdaIN convolution and cuDNN/oneDNN + the ``adain`` op.

A generator convolution that reads an AdaIN output can run two ways:

* ``"fused"``: :func:`alae_fast.ops.adain_stats` (one read of the pre-activation, nothing
  written) then :func:`alae_fast.ops.adain_conv2d` (the noise, bias, leaky ReLU and the AdaIN
  affine applied while loading the convolution's input): the AdaIN tensor never exists.
* ``"separate"``: :func:`alae_fast.ops.adain` writes the AdaIN tensor and the library
  convolution (cuDNN on CUDA, oneDNN on CPU) reads it back.

The fused path saves one write and one read of the activation; the library convolution has
the better GEMM. Which wins depends on the layer's shape and the device: the rule below is
derived from ``benchmarks/test_adain_conv2d.py`` (numbers in ``benchmarks/RESULTS.md``).

On CUDA the fused path is taken only when both ``adain_conv2d`` and ``adain_stats`` are
verified for the chosen implementation (a GPU parity record in
``alae_fast/verified_kernels.json``, see :mod:`alae_fast.verified`; this holds for an explicit
``impl`` too: an explicitly chosen but unverified kernel still runs, but in the separate path's
``adain`` op) **and** the measured CUDA rule below says fused wins.

``$ALAE_FAST_ADAIN_CONV`` (``auto``, ``fused`` or ``separate``) overrides the rule for every
layer, e.g. to measure both paths on new hardware.
"""

from __future__ import annotations

import os

import torch

from ..ops import _dispatch
from ..ops._dispatch import resolve_impl

__all__ = ["ENV_VAR", "MODES", "use_fused_adain_conv"]

ENV_VAR = "ALAE_FAST_ADAIN_CONV"
MODES = ("auto", "fused", "separate")

# CPU rule, measured by benchmarks/test_adain_conv2d.py (numbers: the "adain+conv3x3" and
# "generator" rows of benchmarks/RESULTS.md, CPU section): the fused C++ path (prologue-applied
# im2col tiles + MKL GEMM) lost to oneDNN's convolution + the adain op at every layer shape of
# the 256 and 1024 configs, forward and forward+backward, and so did the whole generator.
# oneDNN's direct convolution is worth more than the one activation pass the fusion saves, so
# on CPU the separate path is always taken.
CPU_FUSED = False


def cuda_fused_wins(c_in: int, c_out: int, size: int, up: bool) -> bool:
    """The measured CUDA rule: whether the fused path beats cuDNN + adain at this layer.

    Not measured yet: the fused kernels have not run on a GPU (none was available when they
    were written), so cuDNN stays the default until benchmarks/test_adain_conv2d.py has been
    run on one (scripts/gpu_check.sh) and this rule rewritten from its table.
    """
    return False


def _mode() -> str:
    mode = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"${ENV_VAR} must be one of {MODES}, got {mode!r}")
    return mode


def use_fused_adain_conv(device: torch.device, c_in: int, c_out: int, size: int, up: bool, impl: str | None) -> bool:
    """Whether a generator convolution reading an AdaIN output takes the fused path.

    Args:
        device: where the layer runs.
        c_in, c_out: the convolution's channels.
        size: the AdaIN tensor's height (the generator's maps are square), before up-sampling.
        up: the DecodeBlock's opening convolution (nearest 2x up-sampling first).
        impl: the block's implementation choice (``None``: automatic).
    """
    mode = _mode()
    if mode != "auto":
        return mode == "fused"
    chosen = resolve_impl("adain_conv2d", impl, device.type)
    if chosen == "ref":
        return False  # the reference twin is the separate path written out: nothing to gain
    if device.type == "cpu":
        return CPU_FUSED
    # CUDA: both fused ops must have passed their GPU parity tests for this implementation.
    if not all(_dispatch.verification(op, chosen, device.type)[0] for op in ("adain_conv2d", "adain_stats")):
        return False
    return cuda_fused_wins(c_in, c_out, size, up)
