"""Shared checks of the op, module and model tests: which implementations to test, and tolerances."""

from __future__ import annotations

import pytest
import torch

from alae_fast.ops import _dispatch

# (impl, device) pairs under test. The C++ CPU kernels are required (the package build makes
# them), Triton runs interpreted on CPU; the CUDA pairs join when a GPU is present.
IMPL_DEVICES = [("cpu", "cpu"), ("triton", "cpu")]
if torch.cuda.is_available():
    IMPL_DEVICES += [("cuda", "cuda"), ("triton", "cuda")]

impl_device = pytest.mark.parametrize("impl,device", IMPL_DEVICES,
                                      ids=[f"{i}-{d}" for i, d in IMPL_DEVICES])

# Float32 parity with TF32 off: outputs 1e-5 relative, gradients 1e-4 (the project standard).
FP32_OUT = dict(rtol=1e-5, atol=1e-6)
FP32_GRAD = dict(rtol=1e-4, atol=1e-6)


def require(impl: str, device: str) -> None:
    """Fail (not skip) when an implementation that must exist here is missing."""
    reason = _dispatch.unavailable_reason(impl, device)
    assert reason is None, f"impl {impl!r} on {device} is unavailable: {reason}"


def assert_low_precision_close(ours, ref_same_dtype, truth) -> None:
    """bf16/fp16 parity: our error against the float64 truth is within twice PyTorch's own
    error in the same dtype, with half an ulp of the largest value as the floor (PyTorch's
    error can be zero by luck, ours cannot be asked to beat rounding)."""
    truth = truth.double()
    ours_err = (ours.double() - truth).abs().max().item()
    torch_err = (ref_same_dtype.double() - truth).abs().max().item()
    half_ulp = 0.5 * torch.finfo(ours.dtype).eps * truth.abs().max().item()
    assert ours_err <= 2 * max(torch_err, half_ulp), (
        f"{ours.dtype} error {ours_err:.3g} exceeds twice PyTorch's {torch_err:.3g} "
        f"(floor {half_ulp:.3g})")


CL = torch.channels_last
LAYOUTS = ["contiguous", "non-contiguous", "channels_last"]


def shape_id(shape) -> str:
    return "x".join(map(str, shape))


def randn(shape, device, dtype=torch.float32, seed=0) -> torch.Tensor:
    """Seeded N(0, 1) drawn in float64 on the CPU: the same numbers for every device and dtype."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(device, dtype)


def image(shape, layout, device, dtype=torch.float32, seed=0) -> torch.Tensor:
    """[N, C, H, W] in ``layout``; non-contiguous is a transposed [N, C, W, H]."""
    n, c, h, w = shape
    if layout == "non-contiguous":
        x = randn((n, c, w, h), device, dtype, seed).transpose(2, 3)
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=CL)
        return x
    x = randn(shape, device, dtype, seed)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
        assert not x.is_contiguous() and x.is_contiguous(memory_format=CL)
    return x
