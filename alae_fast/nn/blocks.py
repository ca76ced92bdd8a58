"""Drop-in fast versions of the StyleALAE blocks of :mod:`alae_fast.reference.networks`.

Each class subclasses its reference twin: same constructor arguments, parameters, buffers and
state_dict keys; only ``forward`` differs, running the fused ops of :mod:`alae_fast.ops`
between the convolutions (which stay cuDNN/oneDNN calls). ``impl`` (class default ``None``,
the automatic choice) is passed to every op; :func:`alae_fast.optimize` sets it.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .. import ops
from ..reference import networks as ref
from ..reference.layers import add_noise, downscale2d, upscale2d

__all__ = ["EncodeBlock", "DecodeBlock", "FromRGB", "ToRGB", "Blur"]

LRELU_SLOPE = ref.LRELU_SLOPE


class Blur(ref.Blur):
    """Fast :class:`alae_fast.reference.Blur`: the ``blur`` op (the fixed binomial filter; the
    ``weight`` buffer is kept for checkpoint compatibility and holds that same filter)."""

    impl: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.blur(x, impl=self.impl)


class EncodeBlock(ref.EncodeBlock):
    """Fast :class:`alae_fast.reference.EncodeBlock`: conv, then ``encode_norm`` (bias, leaky
    ReLU, style statistics and instance norm in one op), ``blur``, the down-sampling conv, and
    ``encode_norm`` again."""

    impl: str | None = None

    def forward(self, x: torch.Tensor):
        impl = self.impl
        x, style_1 = ops.encode_norm(self.conv_1(x), self.bias_1.view(-1), alpha=LRELU_SLOPE,
                                     eps=ref.ENCODER_NORM_EPS, impl=impl)
        if self.last:
            x = ops.linear_act(x.flatten(1), self.dense.weight, self.dense.bias, alpha=LRELU_SLOPE,
                               impl=impl)
            return x, self.style_1(style_1), self.style_2(x)
        x = self.conv_2(ops.blur(x, impl=impl))
        if not self.fused_scale:
            x = downscale2d(x)
        x, style_2 = ops.encode_norm(x, self.bias_2.view(-1), alpha=LRELU_SLOPE,
                                     eps=ref.ENCODER_NORM_EPS, impl=impl)
        return x, self.style_1(style_1), self.style_2(style_2)


class DecodeBlock(ref.DecodeBlock):
    """Fast :class:`alae_fast.reference.DecodeBlock`: (up-sampling conv, ``blur``), then
    ``adain`` (noise, bias, leaky ReLU, instance norm and style in one op); conv, ``adain``.

    Noise is drawn exactly as the reference draws it (same shapes, same order), so both consume
    the random stream identically.
    """

    impl: str | None = None

    def _adain(self, x, style, noise_weight, bias, noise) -> torch.Tensor:
        n = style.shape[0]
        if not noise:
            # The deterministic stand-in is not a per-pixel noise image: reference math, then
            # the fused op without noise.
            x, z, weight = add_noise(x, noise_weight, False, self.layer), None, None
        else:
            batch = x.shape[0] if noise != "batch_constant" else 1
            z = torch.randn(batch, 1, x.shape[2], x.shape[3], dtype=x.dtype, device=x.device)
            weight = noise_weight.view(-1)
        if x.shape[0] != n:  # the learned constant of the first block has batch 1
            x = x.expand(n, -1, -1, -1)
        return ops.adain(x, style, noise=z, noise_weight=weight, bias=bias.view(-1),
                         alpha=LRELU_SLOPE, eps=ref.DECODER_NORM_EPS, impl=self.impl)

    def forward(self, x: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, noise) -> torch.Tensor:
        if self.has_first_conv:
            if not self.fused_scale:
                x = upscale2d(x)
            x = ops.blur(self.conv_1(x), impl=self.impl)
        x = self._adain(x, self.style_1(s1), self.noise_weight_1, self.bias_1, noise)
        x = self._adain(self.conv_2(x), self.style_2(s2), self.noise_weight_2, self.bias_2, noise)
        return x


class FromRGB(ref.FromRGB):
    """Fast :class:`alae_fast.reference.FromRGB`: 1x1 conv, then bias + leaky ReLU in one op."""

    impl: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.from_rgb
        return ops.bias_act(F.conv2d(x, conv.weight), conv.bias, alpha=LRELU_SLOPE, impl=self.impl)


class ToRGB(ref.ToRGB):
    """:class:`alae_fast.reference.ToRGB` as a drop-in: a 1x1 conv whose bias the convolution
    already applies in its own epilogue, so there is nothing left to fuse."""

    impl: str | None = None
