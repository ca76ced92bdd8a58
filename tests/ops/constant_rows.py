"""Inputs of the instance-norm ops in which some (n, c) rows are constant after noise, bias and
leaky ReLU (as every channel of StyleALAE's first AdaIN is at initialisation). A constant row
must give x - mean == 0 and var == 0 exactly: its normalised output is then exactly 0 (and
AdaIN's exactly the style shift), where a rounding residue in the mean would be multiplied by
1 / sqrt(eps) (1e4 at eps = 1e-8)."""

from __future__ import annotations

import torch
from support import randn

# (n, c, x value): values whose float32 sums over a row are not exact (0.1, -0.3, 1e3 + 0.1,
# ...), positive and negative (the leaky ReLU's two sides). Samples 1, 2: channel 1 only.
CONSTANTS = [(0, 0, 1.0), (0, 2, -0.3), (0, 3, 0.1), (1, 1, 1e3), (2, 1, -1.7)]
# Noise weights: channel 1 has none, so its rows stay constant under random noise; the other
# channels see constant noise only in sample 0 (NOISE0), and w * NOISE0 is exact in float32
# (so an FMA and a separate multiply-add give the same t).
NOISE_WEIGHT = [0.5, 0.0, 0.25, -0.5]
NOISE0 = 0.75
BIAS = [0.0, 0.1, -0.7, 0.3]
# 35 pixels: one chunk everywhere; 576: several chunks / segments (Triton splits rows longer
# than two chunks, the CPU channels_last stats merge 256-pixel chunks); 1600: more than the
# 1024 elements the CPU kernels sum in float lanes before adding into doubles.
SHAPES = [(3, 4, 5, 7), (2, 4, 24, 24), (3, 4, 40, 40)]


def constant_row_inputs(shape, device, noise=True, bias=True):
    """(x, kwargs, rows): x [N, 4, H, W] random except the CONSTANTS rows of this batch;
    kwargs noise, noise_weight, bias as asked; rows, the (n, c) of the constant rows."""
    n, c, h, w = shape
    assert c == len(NOISE_WEIGHT)
    x = randn(shape, "cpu", torch.float32, seed=10)
    rows = [(i, j) for i, j, _ in CONSTANTS if i < n]
    for i, j, value in CONSTANTS:
        if i < n:
            x[i, j] = value
    kwargs = {}
    if noise:
        z = randn((n, 1, h, w), "cpu", torch.float32, seed=11)
        z[0] = NOISE0
        kwargs["noise"] = z.to(device)
        kwargs["noise_weight"] = torch.tensor(NOISE_WEIGHT, device=device)
    if bias:
        kwargs["bias"] = torch.tensor(BIAS, device=device)
    return x.to(device), kwargs, rows


def activation(x, kwargs, alpha, n, c):
    """The float32 value of leaky_relu((x + w * noise) + b) of the constant row (n, c), in the
    kernels' order of operations."""
    t = x[n, c, 0, 0].float()
    if "noise" in kwargs:
        t = t + kwargs["noise_weight"][c] * kwargs["noise"][n, 0, 0, 0]
    if "bias" in kwargs:
        t = t + kwargs["bias"][c]
    return torch.where(t > 0, t, alpha * t)


def other_rows_mask(shape, rows, device):
    """[N, C] bool, True for the rows that are not constant."""
    mask = torch.ones(shape[:2], dtype=torch.bool, device=device)
    for n, c in rows:
        mask[n, c] = False
    return mask
