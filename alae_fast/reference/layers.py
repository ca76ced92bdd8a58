"""Building layers of the reference ALAE: equalized-learning-rate linear and convolution, blur,
pixel norm, AdaIN style modulation, noise injection and resampling, and the StyleGAN2-style
modulated convolution of the optional ``style_injection="modconv"`` generator.

Equalized learning rate is *implicit*, as in the official ALAE code: the stored weight already
carries the He scale (it is initialised with std ``gain / sqrt(fan_in)``) and the optimizer
multiplies each parameter's step by ``param.lr_equalization_coef`` (see
:mod:`alae_fast.reference.optim`). Because Adam's step is invariant to the gradient's scale,
this trains exactly like the explicit form ``w * c`` of ProGAN/StyleGAN, while keeping the
state_dict of official checkpoints loadable as-is.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "Linear",
    "Conv2d",
    "ConvTranspose2d",
    "Blur",
    "pixel_norm",
    "style_mod",
    "modulated_conv2d",
    "instance_norm",
    "instance_stats",
    "add_noise",
    "upscale2d",
    "downscale2d",
    "lr_equalization_coef",
]

SQRT2 = math.sqrt(2.0)


def lr_equalization_coef(param: torch.Tensor) -> float:
    """The learning-rate multiplier of ``param`` (1.0 for parameters of plain layers)."""
    return float(getattr(param, "lr_equalization_coef", 1.0))


def _attach_lr_coefs(layer) -> None:
    """The per-parameter step multipliers read by the optimizer: He constant x lrmul for the
    weight, lrmul for the bias."""
    layer.weight.lr_equalization_coef = layer.std
    if layer.bias is not None:
        layer.bias.lr_equalization_coef = layer.lrmul


def _equalized_init(layer) -> None:
    """Implicit equalized-LR init: weight ~ N(0, gain / sqrt(fan_in)), zero bias, and the
    step multipliers."""
    nn.init.normal_(layer.weight, mean=0.0, std=layer.std / layer.lrmul)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    _attach_lr_coefs(layer)


class _EqualizedLayer(nn.Module):
    """Base of the equalized layers. ``copy.deepcopy`` and pickling rebuild parameters without
    their Python attributes, so the step multipliers are re-attached when the state is restored
    (a copied model would otherwise train with the wrong learning rates)."""

    def __setstate__(self, state):
        super().__setstate__(state)
        _attach_lr_coefs(self)


def _pair(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class Linear(_EqualizedLayer):
    """Fully connected layer with implicit equalized learning rate.

    Args:
        in_features, out_features: sizes of the input and output.
        bias: whether to add a (zero-initialised) bias.
        gain: He gain; the weight is initialised with std ``gain / sqrt(in_features)``.
        lrmul: learning-rate multiplier (the mapping networks use 0.1).

    Shapes: ``[..., in_features] -> [..., out_features]``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, gain: float = SQRT2, lrmul: float = 1.0):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.gain = gain
        self.lrmul = lrmul
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.std = gain / math.sqrt(in_features) * lrmul
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _equalized_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, gain={self.gain:.4g}, lrmul={self.lrmul}"
        )


def _fused_kernel(w: torch.Tensor) -> torch.Tensor:
    """3x3 -> 4x4 kernel: the sum of the four 1-pixel shifts of ``w`` (a 2x2 box filter folded
    into the kernel)."""
    w = F.pad(w, (1, 1, 1, 1))
    return w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]


class Conv2d(_EqualizedLayer):
    """2-D convolution with implicit equalized learning rate.

    ``transform_kernel=True`` turns the 3x3 weight into the 4x4 kernel used by the fused
    stride-2 down-sampling convolution (the encoder at resolution >= 128); for the transposed
    form it gives the fused up-sampling convolution of the generator. The weight keeps its 3x3
    shape, so checkpoints store the same tensors either way.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, output_padding, dilation, groups:
            as in :class:`torch.nn.Conv2d` / :class:`torch.nn.ConvTranspose2d`.
        bias: whether to add a (zero-initialised) bias.
        gain: He gain; fan-in is ``kernel_h * kernel_w * in_channels / groups`` (also when
            transposed, as in the official code).
        transpose: use a transposed convolution (weight ``[in, out / groups, kh, kw]``).
        transform_kernel: fold the 2x2 box filter into the kernel (see above).
        lrmul: learning-rate multiplier.

    Shapes: ``[N, in_channels, H, W] -> [N, out_channels, H', W']``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        gain: float = SQRT2,
        transpose: bool = False,
        transform_kernel: bool = False,
        lrmul: float = 1.0,
    ):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.output_padding = _pair(output_padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.gain = gain
        self.lrmul = lrmul
        self.transpose = transpose
        self.transform_kernel = transform_kernel
        self.fan_in = self.kernel_size[0] * self.kernel_size[1] * in_channels // groups
        if transpose:
            shape = (in_channels, out_channels // groups, *self.kernel_size)
        else:
            shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.std = gain / math.sqrt(self.fan_in) * lrmul
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _equalized_init(self)

    def effective_weight(self) -> torch.Tensor:
        """The kernel the convolution actually applies (4x4 when ``transform_kernel``)."""
        w: torch.Tensor = self.weight
        if self.transform_kernel:
            w = _fused_kernel(w)
            if not self.transpose:
                # Stride-2 conv with the averaged kernel == 3x3 conv then 2x2 average pooling;
                # stride-2 transpose with the summed kernel == nearest up-sampling then 3x3 conv.
                w = w * 0.25
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.effective_weight()
        if self.transpose:
            return F.conv_transpose2d(
                x,
                w,
                self.bias,
                stride=self.stride,
                padding=self.padding,
                output_padding=self.output_padding,
                groups=self.groups,
                dilation=self.dilation,
            )
        return F.conv2d(
            x, w, self.bias, stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, transpose={self.transpose}, "
            f"transform_kernel={self.transform_kernel}, bias={self.bias is not None}, "
            f"gain={self.gain:.4g}"
        )


class ConvTranspose2d(Conv2d):
    """:class:`Conv2d` with ``transpose=True``: the same arguments, ``transpose`` excluded (the
    ones after ``gain`` by keyword)."""

    def __init__(self, *args, **kwargs):
        if len(args) > 10 or "transpose" in kwargs:
            raise TypeError("ConvTranspose2d takes Conv2d's arguments up to gain by position, the rest by keyword")
        super().__init__(*args, transpose=True, **kwargs)


def blur_kernel(dtype=torch.float32, device=None) -> torch.Tensor:
    """The normalised 3x3 binomial filter ``outer([1,2,1], [1,2,1]) / 16``, shape [3, 3]."""
    f = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    k = torch.outer(f, f)
    return (k / k.sum()).to(dtype=dtype, device=device)


class Blur(nn.Module):
    """Depthwise 3x3 binomial blur with zero padding 1 (keeps the spatial size).

    The kernel is a persistent buffer named ``weight`` of shape [C, 1, 3, 3], as in official
    checkpoints. Shapes: ``[N, C, H, W] -> [N, C, H, W]``.
    """

    weight: torch.Tensor

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.register_buffer("weight", blur_kernel().view(1, 1, 3, 3).repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), groups=self.channels, padding=1)


# Half-precision inputs whose normalisation statistics are computed in float32 (PyTorch's CPU
# autocast lists neither instance_norm nor mean/var: they would run in the input's dtype).
_HALF = (torch.float16, torch.bfloat16)


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalise each row to unit mean square over dim 1: ``x / sqrt(mean(x^2) + eps)``
    (float16/bfloat16: computed in float32, returned in x's dtype)."""
    if x.dtype in _HALF:
        return pixel_norm(x.float(), eps).to(x.dtype)
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


def instance_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(n, c) mean and population standard deviation (no eps) over H, W.

    Returns two tensors of shape [N, C, 1, 1] of x's dtype (computed in float32 for float16 and
    bfloat16). This is what the encoder reads its styles from.
    """
    if x.dtype in _HALF:
        m, std = instance_stats(x.float())
        return m.to(x.dtype), std.to(x.dtype)
    m = x.mean(dim=(2, 3), keepdim=True)
    std = (x - m).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()
    return m, std


def instance_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Instance normalisation without affine parameters: ``(x - mean) / sqrt(var + eps)``,
    biased variance over H, W (the computation of ``nn.InstanceNorm2d(affine=False)``); float16
    and bfloat16 are normalised in float32 and rounded once to x's dtype."""
    if x.dtype in _HALF:
        return F.instance_norm(x.float(), eps=eps).to(x.dtype)
    return F.instance_norm(x, eps=eps)


def style_mod(x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """AdaIN modulation: ``x * (1 + scale) + shift`` with ``style = [scale | shift]``.

    Args:
        x: [N, C, H, W] (N may be 1 and broadcast against the style batch).
        style: [N, 2C]; the first C entries scale, the last C shift.
    """
    s = style.view(style.shape[0], 2, x.shape[1], 1, 1)
    return torch.addcmul(s[:, 1], x, s[:, 0] + 1.0)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    up: bool = False,
    eps: float = 1e-8,
) -> torch.Tensor:
    """StyleGAN2 weight modulation (and demodulation) with a per-sample convolution.

    Each sample ``n`` gets its own kernel ``w'_n = weight * styles[n]`` (scaled along the input
    channels); with ``demodulate`` each output filter of ``w'_n`` is then rescaled to unit L2
    norm: ``w'_n[o] *= rsqrt(sum over (Cin, kh, kw) of w'_n[o]**2 + eps)``. The whole batch runs
    as ONE grouped convolution (the batch folded into the channels, ``groups=N``).

    Args:
        x: input [N, Cin, H, W].
        weight: the stored equalized conv weight [Cout, Cin, kh, kw] in the ordinary
            (``conv2d``) layout, used as is (it already carries the He scale). Odd kernel sizes
            keep the spatial size (padding ``kh // 2``, ``kw // 2``).
        styles: per-sample input-channel scales [N, Cin].
        demodulate: normalise every output filter of the modulated kernel (see above).
        up: nearest-neighbour 2x up-sampling before the convolution (3x3 kernels only). It is
            done as one stride-2 transposed convolution with the 4x4 kernel of
            :func:`_fused_kernel` (the four 1-pixel shifts of the flipped 3x3 kernel), which
            equals ``conv2d(upscale2d(x), w'_n, padding=1)`` per sample without materialising
            the up-sampled input.
        eps: added to the sum of squares before the reciprocal square root.

    Returns:
        [N, Cout, H, W], or [N, Cout, 2H, 2W] when ``up``; the dtype of ``x``.
    """
    if x.dim() != 4 or weight.dim() != 4 or styles.dim() != 2:
        raise ValueError(
            f"expected x [N, Cin, H, W], weight [Cout, Cin, kh, kw] and styles "
            f"[N, Cin], got {list(x.shape)}, {list(weight.shape)}, "
            f"{list(styles.shape)}"
        )
    n, cin, h, w_ = x.shape
    cout, _, kh, kw = weight.shape
    if weight.shape[1] != cin or styles.shape != (n, cin):
        raise ValueError(
            f"channel/batch mismatch: x {list(x.shape)}, weight {list(weight.shape)}, styles {list(styles.shape)}"
        )
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"the kernel size must be odd, got {kh}x{kw}")
    if up and (kh, kw) != (3, 3):
        raise ValueError(f"up=True needs a 3x3 kernel, got {kh}x{kw}")

    # [N, Cout, Cin, kh, kw]: the kernel of every sample.
    w = weight.to(x.dtype).unsqueeze(0) * styles.to(x.dtype).view(n, 1, cin, 1, 1)
    if demodulate:
        w = w * torch.rsqrt(w.square().sum(dim=(2, 3, 4), keepdim=True) + eps)
    out_hw = (2 * h, 2 * w_) if up else (h, w_)
    if n == 0:  # groups=0 is not a convolution; the (empty) result still tracks gradients
        return (x.sum() * 0 + w.sum() * 0).expand(0, cout, *out_hw)
    xg = x.reshape(1, n * cin, h, w_)
    if up:
        # Transposed layout [N*Cin, Cout, 3, 3] of the flipped kernel, then the 4x4 transform:
        # conv_transpose2d(x, fused(flip(w)^T), stride 2, padding 1) == conv2d(upscale2d(x), w).
        wt = w.flip(3, 4).transpose(1, 2).reshape(n * cin, cout, kh, kw)
        y = F.conv_transpose2d(xg, _fused_kernel(wt), stride=2, padding=1, groups=n)
    else:
        y = F.conv2d(xg, w.reshape(n * cout, cin, kh, kw), padding=(kh // 2, kw // 2), groups=n)
    return y.view(n, cout, *out_hw)


def add_noise(x: torch.Tensor, weight: torch.Tensor, noise, layer: int) -> torch.Tensor:
    """Per-pixel noise injection of a DecodeBlock.

    Args:
        x: activations [N or 1, C, H, W].
        weight: per-channel noise strength [1, C, 1, 1].
        noise: ``True`` -> one N(0, 1) image per sample; ``"batch_constant"`` -> one image shared
            by the batch; ``False`` -> the official deterministic stand-in
            ``x + s * exp(-x^2 / (2 s^2)) / sqrt(2 pi) * 0.8`` with ``s = sqrt(layer + 1)``.
        layer: index of the block (only used when ``noise`` is False).
    """
    if noise:
        n = x.shape[0] if noise != "batch_constant" else 1
        z = torch.randn(n, 1, x.shape[2], x.shape[3], dtype=x.dtype, device=x.device)
        return torch.addcmul(x, weight, z)
    s = math.sqrt(layer + 1)
    return x + s * torch.exp(-x * x / (2.0 * s * s)) / math.sqrt(2 * math.pi) * 0.8


def upscale2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour up-sampling by an integer factor: [N, C, H, W] -> [N, C, fH, fW]."""
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def downscale2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Box-filter down-sampling by an integer factor: [N, C, H, W] -> [N, C, H/f, W/f]."""
    return F.avg_pool2d(x, factor, factor)
