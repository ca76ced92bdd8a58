"""Drop-in fast versions of the StyleALAE blocks of :mod:`alae_fast.reference.networks`.

Each class subclasses its reference twin: same constructor arguments, parameters, buffers and
state_dict keys; only ``forward`` differs, running the fused ops of :mod:`alae_fast.ops`
between the convolutions (which stay cuDNN/oneDNN calls). ``impl`` (class default ``None``,
the automatic choice) is passed to every op; :func:`alae_fast.optimize` sets it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn import functional as F

from .. import ops
from ..reference import networks as ref
from ..reference.layers import add_noise
from ..reference.layers import downscale2d
from ..reference.layers import upscale2d
from .conv_dispatch import use_fused_adain_conv

__all__ = ["EncodeBlock", "DecodeBlock", "Generator", "PendingAdaIN", "FromRGB", "ToRGB", "Blur"]

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
        x, style_1 = ops.encode_norm(
            self.conv_1(x), self.bias_1.view(-1), alpha=LRELU_SLOPE, eps=ref.ENCODER_NORM_EPS, impl=impl
        )
        if self.last:
            x = ops.linear_act(x.flatten(1), self.dense.weight, self.dense.bias, alpha=LRELU_SLOPE, impl=impl)
            return x, self.style_1(style_1), self.style_2(x)
        x = self.conv_2(ops.blur(x, impl=impl))
        if not self.fused_scale:
            x = downscale2d(x)
        x, style_2 = ops.encode_norm(x, self.bias_2.view(-1), alpha=LRELU_SLOPE, eps=ref.ENCODER_NORM_EPS, impl=impl)
        return x, self.style_1(style_1), self.style_2(style_2)


class PendingAdaIN(NamedTuple):
    """An AdaIN output that was not written: the pre-activation ``x`` ([N, C, H, W]) with the
    noise/bias/leaky-ReLU terms and the (center, scale, shift) the next convolution applies
    while loading it (see :func:`alae_fast.ops.adain_conv2d`)."""

    x: torch.Tensor
    noise: torch.Tensor | None
    noise_weight: torch.Tensor | None
    act_bias: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor
    center: torch.Tensor

    def conv(self, weight: torch.Tensor, up: bool, impl: str | None) -> torch.Tensor:
        return ops.adain_conv2d(
            self.x,
            self.scale,
            self.shift,
            weight,
            noise=self.noise,
            noise_weight=self.noise_weight,
            act_bias=self.act_bias,
            alpha=LRELU_SLOPE,
            up=up,
            center=self.center,
            impl=impl,
        )


class DecodeBlock(ref.DecodeBlock):
    """Fast :class:`alae_fast.reference.DecodeBlock`: (up-sampling conv, ``blur``), AdaIN, conv,
    AdaIN, where each AdaIN followed by a convolution runs one of two ways, chosen per layer by
    :func:`alae_fast.nn.conv_dispatch.use_fused_adain_conv`:

    * fused: ``adain_stats`` + ``adain_conv2d``: the convolution applies noise, bias, leaky ReLU
      and the AdaIN affine while loading its input, so the AdaIN tensor is never written;
    * separate: the ``adain`` op (one read, one write), then the library convolution.

    Noise is drawn exactly as the reference draws it (same shapes, same order), so both consume
    the random stream identically.
    """

    impl: str | None = None

    def _noise_terms(self, x, noise_weight, noise, n):
        """(x, noise image or None, noise weight [C] or None) for a block input of batch n."""
        if not noise:
            # The deterministic stand-in is not a per-pixel noise image: reference math, then
            # the fused ops without noise.
            x, z, weight = add_noise(x, noise_weight, False, self.layer), None, None
        else:
            batch = x.shape[0] if noise != "batch_constant" else 1
            z = torch.randn(batch, 1, x.shape[2], x.shape[3], dtype=x.dtype, device=x.device)
            weight = noise_weight.view(-1)
        if x.shape[0] != n:  # the learned constant of the first block has batch 1
            x = x.expand(n, -1, -1, -1)
        return x, z, weight

    def _norm_args(self, z, weight) -> dict:
        """The noise, activation and instance-norm arguments shared by adain and adain_stats."""
        return dict(noise=z, noise_weight=weight, alpha=LRELU_SLOPE, eps=ref.DECODER_NORM_EPS, impl=self.impl)

    def _adain(self, x, style, noise_weight, bias, noise) -> torch.Tensor:
        x, z, weight = self._noise_terms(x, noise_weight, noise, style.shape[0])
        return ops.adain(x, style, bias=bias.view(-1), **self._norm_args(z, weight))

    def _pending(self, x, style, noise_weight, bias, noise) -> PendingAdaIN:
        x, z, weight = self._noise_terms(x, noise_weight, noise, style.shape[0])
        x = x.contiguous() if x.stride(0) == 0 else x  # the expanded constant
        stats = ops.adain_stats(x, act_bias=bias.view(-1), **self._norm_args(z, weight))
        # Centred: a constant channel gives exactly the style bias, as the reference's t - mean.
        center, scale, shift = ops.adain_center_scale_shift(stats, style)
        return PendingAdaIN(x, z, weight, bias.view(-1), scale, shift, center)

    def _conv_1_weight(self) -> torch.Tensor:
        """conv_1 as a 3x3 convolution of the nearest-up-sampled input (both reference forms)."""
        w = self.conv_1.weight
        return ops.transposed_to_conv_weight(w) if self.fused_scale else w

    def fuses_conv_1(self, device: torch.device, size: int) -> bool:
        """Whether conv_1 reads the previous block's AdaIN output (``size`` x ``size``)
        deferred."""
        return (
            self.has_first_conv
            and self.style_injection == "adain"
            and use_fused_adain_conv(device, self.inputs, self.conv_2.weight.shape[0], size, True, self.impl)
        )

    def forward(self, x: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, noise) -> torch.Tensor:
        if self.style_injection == "modconv":
            # Modulation and demodulation fold into the weights and the convolution is one
            # grouped library conv: the reference forward is already that kernel.
            return super().forward(x, s1, s2, noise)
        return self.forward_chain(x, s1, s2, noise, defer=False)

    def forward_chain(self, x, s1: torch.Tensor, s2: torch.Tensor, noise, defer: bool):
        """:meth:`forward` that may take and return a :class:`PendingAdaIN`.

        ``x`` is a tensor or the deferred AdaIN output of the previous block; with ``defer`` the
        block's own output AdaIN is returned deferred (for a next block that fuses conv_1).
        """
        if self.has_first_conv:
            if isinstance(x, PendingAdaIN):
                x = x.conv(self._conv_1_weight(), True, self.impl)
            else:
                x = self.conv_1(x if self.fused_scale else upscale2d(x))
            x = ops.blur(x, impl=self.impl)
        style_1 = self.style_1(s1)
        c = self.conv_2.weight.shape[0]
        if use_fused_adain_conv(x.device, c, c, x.shape[2], False, self.impl):
            x = self._pending(x, style_1, self.noise_weight_1, self.bias_1, noise).conv(
                self.conv_2.weight, False, self.impl
            )
        else:
            x = self.conv_2(self._adain(x, style_1, self.noise_weight_1, self.bias_1, noise))
        if defer:
            return self._pending(x, self.style_2(s2), self.noise_weight_2, self.bias_2, noise)
        return self._adain(x, self.style_2(s2), self.noise_weight_2, self.bias_2, noise)


class Generator(ref.Generator):
    """Fast :class:`alae_fast.reference.Generator`: runs the fast DecodeBlocks so that a block
    whose opening convolution takes the fused path receives the previous block's AdaIN output
    deferred (never written)."""

    impl: str | None = None

    def _run_blocks(self, styles: torch.Tensor, count: int, noise) -> torch.Tensor:
        x = self.const
        for i in range(count):
            block = self.decode_block[i]
            # The last block's output feeds ToRGB (and a fade-in), which need the tensor.
            nxt = self.decode_block[i + 1] if i + 1 < count else None
            defer = (
                isinstance(block, DecodeBlock)
                and block.style_injection == "adain"
                and isinstance(nxt, DecodeBlock)
                and nxt.fuses_conv_1(styles.device, self.layer_to_resolution[i])
            )
            s1, s2 = styles[:, 2 * i], styles[:, 2 * i + 1]
            if isinstance(block, DecodeBlock) and block.style_injection == "adain":
                x = block.forward_chain(x, s1, s2, noise, defer)
            else:
                x = block(x, s1, s2, noise)
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
