"""The generator's AdaIN + 3x3 convolution, per layer shape of the 256x256 (CelebA-HQ:
startf 64, maxf 512, 7 levels) and 1024x1024 (FFHQ: startf 16, maxf 512, 9 levels) StyleALAE
configs, two ways:

- ``separate``: the ``adain`` op writes the AdaIN tensor, the library convolution (cuDNN /
  oneDNN) reads it: ``F.conv2d``, or for the opening up-sampling conv what the reference runs
  there (nearest up-sampling + conv below 128 px, the stride-2 transposed conv with the 4x4
  transformed kernel from 128 px up);
- ``fused:<impl>``: ``adain_stats`` + ``adain_conv2d`` (the AdaIN tensor is never written).

Shapes are ``<config> N<batch> <Cin>-><Cout> @<size>`` with ``^`` for the up-sampling conv
(size is the AdaIN tensor's, before up-sampling). TFLOP/s counts the convolution's 2 * N * Cout
* Cin * 9 * Ho * Wo per forward (x3 with the backward); GB/s counts the activations each path
must read and write (inputs once per pass that needs them, outputs once). Batch 8 (256) / 4
(1024) on GPU; on CPU batch 1 and only the 256 config plus the 1024 config's extra levels.
The ``generator`` rows time the whole 256x256 generator forward+backward with each path forced
(``$ALAE_FAST_ADAIN_CONV``) against the reference model.
"""

import copy

import pytest
import torch
from torch.nn import functional as F

import alae_fast
from alae_fast import ops
from alae_fast import reference
from alae_fast.nn import conv_dispatch
from alae_fast.reference.layers import _fused_kernel
from alae_fast.reference.layers import upscale2d

from .bench_support import DEVICE
from .bench_support import impls
from .bench_support import run_case

CONFIGS = {"256": (64, 512, 7, 8), "1024": (16, 512, 9, 4)}  # startf, maxf, levels, GPU batch


def _layers():
    """(config, batch, c_in, c_out, size, up) of every AdaIN-reading conv, without repeats."""
    seen, out = set(), []
    for name, (startf, maxf, levels, batch) in CONFIGS.items():
        if DEVICE == "cpu":
            batch = 1
        chans = [min(maxf, startf * 2 ** (levels - 1 - i)) for i in range(levels)]
        for i in range(levels):
            size = 4 * 2**i
            layers = [(chans[i], chans[i], size, False)]
            if i:
                layers.insert(0, (chans[i - 1], chans[i], size // 2, True))
            for c_in, c_out, s, up in layers:
                if DEVICE == "cpu" and name == "1024" and s < 256:
                    continue  # the 256 config already has these shapes
                key = (c_in, c_out, s, up, batch)
                if key not in seen:
                    seen.add(key)
                    out.append((name, batch, c_in, c_out, s, up))
    return out


LAYERS = _layers()
FUSED = [i for i in impls(("triton", "cuda", "cpu"))]


def _layer_id(layer):
    name, batch, c_in, c_out, size, up = layer
    return f"{name} N{batch} {c_in}->{c_out} @{size}{'^' if up else ''}"


def _inputs(layer, grad):
    _, n, c, co, s, up = layer

    def leaf(t):
        return t.to(DEVICE).requires_grad_(grad)

    x = leaf(torch.randn(n, c, s, s))
    style = leaf(0.1 * torch.randn(n, 2 * c))
    noise = torch.randn(n, 1, s, s, device=DEVICE)
    nw, bias = leaf(0.1 * torch.randn(c)), leaf(0.1 * torch.randn(c))
    w = leaf(torch.randn(co, c, 3, 3) / (3 * c**0.5))
    return x, style, noise, nw, bias, w


def _separate(layer):
    _, _, _, _, size, up = layer
    transposed = up and 2 * size >= 128  # the reference's fused_scale layers

    def fn(x, style, noise, nw, bias, w):
        y = ops.adain(x, style, noise=noise, noise_weight=nw, bias=bias, alpha=0.2, eps=1e-8)
        if transposed:
            return F.conv_transpose2d(y, _fused_kernel(w.flip(2, 3).transpose(0, 1)), stride=2, padding=1)
        return F.conv2d(upscale2d(y) if up else y, w, padding=1)

    return fn


def _fused(layer, impl):
    up = layer[5]

    def fn(x, style, noise, nw, bias, w):
        stats = ops.adain_stats(x, noise=noise, noise_weight=nw, act_bias=bias, alpha=0.2, eps=1e-8, impl=impl)
        # As the fast generator runs it: the centered prologue scale * (a - mean) + b.
        center, scale, shift = ops.adain_center_scale_shift(stats, style)
        return ops.adain_conv2d(
            x, scale, shift, w, center=center, noise=noise, noise_weight=nw, act_bias=bias, alpha=0.2, up=up, impl=impl
        )

    return fn


def _cost(layer, path, backward):
    _, n, c, co, s, up = layer
    so = 2 * s if up else s
    flops = 2 * n * co * c * 9 * so * so * (3 if backward else 1)
    x, out = 4 * n * c * s * s, 4 * n * co * so * so
    if path == "separate":  # adain: read x, write y; conv: read y, write out
        moved = 3 * x + out
        if backward:  # conv: read grad, y (weight grad), write grad y; adain: read grad y, x
            moved += 2 * out + 4 * x + x
    else:  # stats: read x; conv: read x, write out
        moved = 2 * x + out
        if backward:  # read grad twice, x twice, write grad x; stats backward: read x, grad x
            moved += 2 * out + 3 * x + 2 * x
    return flops, moved


@pytest.mark.parametrize("path", ["separate"] + [f"fused:{i}" for i in FUSED])
@pytest.mark.parametrize("layer", LAYERS, ids=_layer_id)
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
def test_adain_conv2d(benchmark, path, layer, mode):
    backward = mode != "forward"
    inputs = _inputs(layer, backward)
    fn = _separate(layer) if path == "separate" else _fused(layer, path.split(":")[1])
    if backward:
        call = lambda: fn(*inputs).sum().backward()  # noqa: E731
    else:

        def call():
            with torch.no_grad():
                fn(*inputs)

    flops, moved = _cost(layer, "separate" if path == "separate" else "fused", backward)
    run_case(
        benchmark,
        op="adain+conv3x3",
        mode=mode,
        shape=_layer_id(layer),
        impl=path,
        fn=call,
        nbytes=moved,
        flops=flops,
        baseline="separate",
    )


GEN_BATCH = 8 if DEVICE == "cuda" else 1


@pytest.mark.parametrize("path", ["ref", "separate", "fused"])
def test_generator_256(benchmark, path, monkeypatch):
    startf, maxf, levels, _ = CONFIGS["256"]
    torch.manual_seed(0)
    gen = reference.Generator(startf, maxf, levels, latent_size=512, channels=3).to(DEVICE)
    if path != "ref":
        gen = alae_fast.optimize(copy.deepcopy(gen))
        monkeypatch.setenv(conv_dispatch.ENV_VAR, path)
    styles = torch.randn(GEN_BATCH, 2 * levels, 512, device=DEVICE)
    params = list(gen.parameters())

    def call():
        out = gen(styles, levels - 1, 1.0, noise=True)
        torch.autograd.grad(out.square().mean(), params, allow_unused=True)

    flops = 3 * sum(
        2 * GEN_BATCH * co * c * 9 * (2 * s if up else s) ** 2 for name, _, c, co, s, up in _layers() if name == "256"
    )
    run_case(
        benchmark,
        op="generator 256x256",
        mode="forward+backward",
        shape=f"N{GEN_BATCH}",
        impl=path,
        fn=call,
        nbytes=0,
        flops=flops,
    )
