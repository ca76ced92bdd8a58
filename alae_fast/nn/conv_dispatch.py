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

``$ALAE_FAST_ADAIN_CONV`` (``auto``, ``fused`` or ``separate``) overrides the rule for every
layer, e.g. to measure both paths on new hardware.
"""

from __future__ import annotations

import os

import torch

from ..ops._dispatch import resolve_impl

__all__ = ["ENV_VAR", "MODES", "use_fused_adain_conv"]

ENV_VAR = "ALAE_FAST_ADAIN_CONV"
MODES = ("auto", "fused", "separate")

# CPU rule, measured (benchmarks/test_adain_conv2d.py, 2-core AMD EPYC, torch 2.13, batch 1,
# 2026-11-24, machine shared with other jobs): the fused C++ path (prologue-applied im2col
# tiles + MKL GEMM) lost to oneDNN's convolution + the adain op at every layer shape of the
# 256 and 1024 configs: forward 0.46-0.86x, forward+backward 0.29-0.97x, the whole 256x256
# generator forward+backward 4.17 s against 3.24 s. oneDNN's direct convolution is worth more
# than the one activation pass the fusion saves, so on CPU the separate path is always taken.
CPU_FUSED = False


def _mode() -> str:
    mode = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"${ENV_VAR} must be one of {MODES}, got {mode!r}")
    return mode


def use_fused_adain_conv(device: torch.device, c_in: int, c_out: int, size: int, up: bool,
                         impl: str | None) -> bool:
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
    if resolve_impl("adain_conv2d", impl, device.type) == "ref":
        return False  # the reference twin is the separate path written out: nothing to gain
    if device.type == "cpu":
        return CPU_FUSED
    # CUDA: the fused kernels have not been measured on a GPU yet (no GPU was available when
    # they were written); cuDNN stays the default until benchmarks/test_adain_conv2d.py has
    # been run on one and this rule rewritten from its table.
    return False
