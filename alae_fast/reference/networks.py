"""The four ALAE networks of the reference implementation: F (``MappingF``), G (``Generator`` or
``GeneratorFC``), E (``Encoder`` or ``EncoderFC``) and D (``MappingD`` or ``MappingDFC``).

Module and parameter names, shapes, call signatures and outputs follow the official ALAE code
(podgorskiy/ALAE, ``net.py``), so official state_dicts load with ``strict=True``. Differences
that do not change results: tensors are created on the input's device and dtype (the official
code relies on a CUDA default tensor type), and style sums are accumulated out of place.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import Blur
from .layers import Conv2d
from .layers import ConvTranspose2d
from .layers import Linear
from .layers import add_noise
from .layers import downscale2d
from .layers import instance_norm
from .layers import instance_stats
from .layers import modulated_conv2d
from .layers import pixel_norm
from .layers import style_mod
from .layers import upscale2d

__all__ = [
    "EncodeBlock",
    "DecodeBlock",
    "FromRGB",
    "ToRGB",
    "Generator",
    "Encoder",
    "MappingBlock",
    "MappingF",
    "MappingD",
    "MappingDFC",
    "GeneratorFC",
    "EncoderFC",
]

LRELU_SLOPE = 0.2
ENCODER_NORM_EPS = 1e-5  # nn.InstanceNorm2d's default, used by the official EncodeBlock
DECODER_NORM_EPS = 1e-8  # the official DecodeBlock passes eps=1e-8
#: Generator style injections: "adain" (official StyleALAE, the default) or "modconv"
#: (StyleGAN2 weight modulation/demodulation; an alternative for training from scratch).
STYLE_INJECTIONS = ("adain", "modconv")
#: Image conventions of the MLP (MNIST) model. "pad32": the 28x28 digit zero-padded to 32x32,
#: pixels in [-1, 1]; E nearest-resizes its input to 28x28 and G resizes its 28x28 output to
#: ``4 * 2**lod`` (official master ``mnist_fc``). "raw28": 28x28 pixels in [0, 1] with no
#: resizing on either side (official branch ``mnist_ref``, the paper's MNIST model).
MLP_IMAGES = ("pad32", "raw28")
#: Leaky ReLU slopes of the MLP model's E (after fc_1, fc_2, fc_3) and G (after fc_1, fc_2).
MLP_ENCODER_SLOPES = (LRELU_SLOPE, LRELU_SLOPE, LRELU_SLOPE)
MLP_GENERATOR_SLOPES = (LRELU_SLOPE, LRELU_SLOPE)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LRELU_SLOPE)


def _check_lod(lod: int, blend: float, layer_count: int) -> None:
    if not 0 <= lod < layer_count:
        raise ValueError(f"lod must be in [0, {layer_count - 1}], got {lod}")
    if blend != 1 and lod == 0:
        raise ValueError("blend < 1 needs lod >= 1 (there is no lower level to fade from)")


def _check_style_injection(style_injection: str) -> None:
    if style_injection not in STYLE_INJECTIONS:
        raise ValueError(f"style_injection must be one of {list(STYLE_INJECTIONS)}, got {style_injection!r}")


def _channels(startf: int, maxf: int, mul: int) -> int:
    return min(maxf, startf * mul)


class EncodeBlock(nn.Module):
    """One encoder level: conv + bias + leaky ReLU, read (mean, std) style, instance norm, then
    (blurred) down-sampling conv + bias + leaky ReLU, read the second style, instance norm.

    Args:
        inputs, outputs: channel counts before and after the block.
        latent_size: size of w; each style read-out is an equalized linear layer to it.
        last: replace the down-sampling conv by a dense layer on the 4x4 map (the official
            ``EncoderWithStatistics`` variant; ``EncoderDefault`` never uses it).
        fused_scale: use the stride-2 convolution with the transformed kernel (resolution >=
            128) instead of conv + 2x2 average pooling.

    ``forward(x [N, inputs, H, W]) -> (x [N, outputs, H/2, W/2], w1 [N, latent], w2 [N, latent])``.
    """

    def __init__(self, inputs: int, outputs: int, latent_size: int, last: bool = False, fused_scale: bool = True):
        super().__init__()
        self.last = last
        self.fused_scale = fused_scale
        self.conv_1 = Conv2d(inputs, inputs, 3, 1, 1, bias=False)
        self.bias_1 = nn.Parameter(torch.zeros(1, inputs, 1, 1))
        self.blur = Blur(inputs)
        if last:
            self.dense = Linear(inputs * 4 * 4, outputs)
        elif fused_scale:
            self.conv_2 = Conv2d(inputs, outputs, 3, 2, 1, bias=False, transform_kernel=True)
        else:
            self.conv_2 = Conv2d(inputs, outputs, 3, 1, 1, bias=False)
        self.bias_2 = nn.Parameter(torch.zeros(1, outputs, 1, 1))
        self.style_1 = Linear(2 * inputs, latent_size)
        self.style_2 = Linear(outputs if last else 2 * outputs, latent_size)

    def forward(self, x: torch.Tensor):
        x = _lrelu(self.conv_1(x) + self.bias_1)
        m, std = instance_stats(x)
        style_1 = torch.cat((m, std), dim=1).flatten(1)
        x = instance_norm(x, ENCODER_NORM_EPS)

        if self.last:
            x = _lrelu(self.dense(x.flatten(1)))
            return x, self.style_1(style_1), self.style_2(x)

        x = self.conv_2(self.blur(x))
        if not self.fused_scale:
            x = downscale2d(x)
        x = _lrelu(x + self.bias_2)
        m, std = instance_stats(x)
        style_2 = torch.cat((m, std), dim=1).flatten(1)
        x = instance_norm(x, ENCODER_NORM_EPS)
        return x, self.style_1(style_1), self.style_2(style_2)


class DecodeBlock(nn.Module):
    """One generator level: (up-sampling conv + blur), noise, bias, leaky ReLU, instance norm,
    AdaIN with style 1; conv, noise, bias, leaky ReLU, instance norm, AdaIN with style 2.

    With ``style_injection="modconv"`` the styles modulate (and demodulate) the convolution
    weights instead, as in StyleGAN2 (:func:`~alae_fast.reference.layers.modulated_conv2d`):
    (modulated up-sampling conv with style 1 + blur), noise, bias, leaky ReLU; modulated conv
    with style 2, noise, bias, leaky ReLU. There is no instance norm and no AdaIN. The first
    block (no first conv) starts from the learned constant, broadcast to the batch; it has no
    ``style_1`` and ignores ``s1``.

    Args:
        inputs, outputs: channel counts.
        latent_size: size of w; each AdaIN style is an equalized linear layer (gain 1) to 2C.
            In "modconv" mode each style is an equalized linear layer (gain 1, bias initialised
            to 1 so the initial modulation is about 1) to the input channels of its conv:
            ``style_1`` to ``inputs``, ``style_2`` to ``outputs``.
        has_first_conv: False for the 4x4 block, which starts from the learned constant.
        fused_scale: transposed stride-2 conv with the transformed kernel (resolution >= 128)
            instead of nearest up-sampling + 3x3 conv. Both compute the same function of the
            weight, so "modconv" runs both as a modulated up-sampling conv (the fused weight is
            stored in the transposed layout [inputs, outputs, 3, 3]).
        layer: index of the block (used by the deterministic no-noise stand-in).
        style_injection: "adain" (official, default) or "modconv".

    ``forward(x [N or 1, inputs, H, W], s1 [N, latent], s2 [N, latent], noise)``
    ``-> [N, outputs, 2H, 2W]`` (same size for the first block).
    """

    def __init__(
        self,
        inputs: int,
        outputs: int,
        latent_size: int,
        has_first_conv: bool = True,
        fused_scale: bool = True,
        layer: int = 0,
        style_injection: str = "adain",
    ):
        super().__init__()
        _check_style_injection(style_injection)
        self.inputs, self.layer, self.style_injection = inputs, layer, style_injection
        self.has_first_conv, self.fused_scale = has_first_conv, fused_scale
        modconv = style_injection == "modconv"
        if has_first_conv:
            self.conv_1: Conv2d  # a ConvTranspose2d when up-sampling with the fused kernel
            if fused_scale:
                self.conv_1 = ConvTranspose2d(inputs, outputs, 3, 2, 1, bias=False, transform_kernel=True)
            else:
                self.conv_1 = Conv2d(inputs, outputs, 3, 1, 1, bias=False)
        self.blur = Blur(outputs)
        self.noise_weight_1 = nn.Parameter(torch.zeros(1, outputs, 1, 1))
        self.bias_1 = nn.Parameter(torch.zeros(1, outputs, 1, 1))
        if not modconv:
            self.style_1 = Linear(latent_size, 2 * outputs, gain=1.0)
        elif has_first_conv:
            self.style_1 = Linear(latent_size, inputs, gain=1.0)
        self.conv_2 = Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.noise_weight_2 = nn.Parameter(torch.zeros(1, outputs, 1, 1))
        self.bias_2 = nn.Parameter(torch.zeros(1, outputs, 1, 1))
        self.style_2 = Linear(latent_size, outputs if modconv else 2 * outputs, gain=1.0)
        if modconv:
            with torch.no_grad():
                for name in ("style_1", "style_2"):
                    if hasattr(self, name):
                        getattr(self, name).bias.fill_(1.0)

    def _conv_1_weight(self) -> torch.Tensor:
        """conv_1's weight in the ordinary [outputs, inputs, 3, 3] layout of an up-sampling conv:
        the fused transposed conv equals nearest up-sampling + a 3x3 conv with the flipped,
        transposed weight."""
        w = self.conv_1.weight
        return w.transpose(0, 1).flip(2, 3) if self.fused_scale else w

    def _forward_modconv(self, x: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, noise) -> torch.Tensor:
        if self.has_first_conv:
            x = self.blur(modulated_conv2d(x, self._conv_1_weight(), self.style_1(s1), up=True))
        else:
            x = x.expand(s2.shape[0], -1, -1, -1)  # the learned constant, one copy per sample
        x = add_noise(x, self.noise_weight_1, noise, self.layer)
        x = _lrelu(x + self.bias_1)

        x = modulated_conv2d(x, self.conv_2.weight, self.style_2(s2))
        x = add_noise(x, self.noise_weight_2, noise, self.layer)
        return _lrelu(x + self.bias_2)

    def forward(self, x: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, noise) -> torch.Tensor:
        if self.style_injection == "modconv":
            return self._forward_modconv(x, s1, s2, noise)
        if self.has_first_conv:
            if not self.fused_scale:
                x = upscale2d(x)
            x = self.blur(self.conv_1(x))

        x = add_noise(x, self.noise_weight_1, noise, self.layer)
        x = _lrelu(x + self.bias_1)
        x = style_mod(instance_norm(x, DECODER_NORM_EPS), self.style_1(s1))

        x = self.conv_2(x)
        x = add_noise(x, self.noise_weight_2, noise, self.layer)
        x = _lrelu(x + self.bias_2)
        return style_mod(instance_norm(x, DECODER_NORM_EPS), self.style_2(s2))


class FromRGB(nn.Module):
    """1x1 equalized conv from image channels to features, then leaky ReLU."""

    def __init__(self, channels: int, outputs: int):
        super().__init__()
        self.from_rgb = Conv2d(channels, outputs, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _lrelu(self.from_rgb(x))


class ToRGB(nn.Module):
    """1x1 equalized conv (gain 0.03) from features to image channels; no activation."""

    def __init__(self, inputs: int, channels: int):
        super().__init__()
        self.inputs = inputs
        self.channels = channels
        self.to_rgb = Conv2d(inputs, channels, 1, 1, 0, gain=0.03)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_rgb(x)


class Generator(nn.Module):
    """StyleALAE generator G: a learned 4x4 constant and ``layer_count`` DecodeBlocks, each with
    its ToRGB, for resolutions 4, 8, ..., 2**(layer_count + 1).

    ``forward(styles [N, 2 * layer_count, latent], lod, blend, noise) -> [N, channels, R, R]``
    with ``R = 4 * 2**lod``. ``blend < 1`` fades in level ``lod`` over the nearest-upsampled
    output of level ``lod - 1``: ``lerp(prev, cur, blend)``.

    ``style_injection`` ("adain", the official generator and the default, or "modconv") is
    passed to every :class:`DecodeBlock`. With "modconv" the style slot 0 (``s1`` of the first
    block) is unused: that block starts from the constant and has only one (modulated) conv.
    """

    def __init__(
        self,
        startf: int = 32,
        maxf: int = 256,
        layer_count: int = 3,
        latent_size: int = 128,
        channels: int = 3,
        style_injection: str = "adain",
    ):
        super().__init__()
        _check_style_injection(style_injection)
        self.style_injection, self.startf, self.maxf = style_injection, startf, maxf
        self.layer_count, self.latent_size, self.channels = layer_count, latent_size, channels

        mul = 2 ** (layer_count - 1)
        inputs = _channels(startf, maxf, mul)
        self.const = nn.Parameter(torch.ones(1, inputs, 4, 4))
        self.layer_to_resolution = [4 * 2**i for i in range(layer_count)]
        self.decode_block = nn.ModuleList()
        self.to_rgb = nn.ModuleList()
        for i in range(layer_count):
            outputs = _channels(startf, maxf, mul)
            fused_scale = self.layer_to_resolution[i] >= 128
            self.decode_block.append(
                DecodeBlock(
                    inputs,
                    outputs,
                    latent_size,
                    has_first_conv=i != 0,
                    fused_scale=fused_scale,
                    layer=i,
                    style_injection=style_injection,
                )
            )
            self.to_rgb.append(ToRGB(outputs, channels))
            inputs = outputs
            mul //= 2

    def _check(self, styles: torch.Tensor, lod: int, blend: float) -> None:
        _check_lod(lod, blend, self.layer_count)
        if styles.dim() != 3 or styles.shape[1] < 2 * (lod + 1) or styles.shape[2] != self.latent_size:
            raise ValueError(
                f"styles must have shape [N, {2 * self.layer_count}, {self.latent_size}], got {list(styles.shape)}"
            )

    def _run_blocks(self, styles: torch.Tensor, count: int, noise) -> torch.Tensor:
        x = self.const
        for i in range(count):
            x = self.decode_block[i](x, styles[:, 2 * i], styles[:, 2 * i + 1], noise)
        return x

    def forward(self, styles: torch.Tensor, lod: int, blend: float, noise=True) -> torch.Tensor:
        self._check(styles, lod, blend)
        if blend == 1:
            return self.to_rgb[lod](self._run_blocks(styles, lod + 1, noise))
        x = self._run_blocks(styles, lod, noise)
        prev = self.to_rgb[lod - 1](x)
        x = self.decode_block[lod](x, styles[:, 2 * lod], styles[:, 2 * lod + 1], noise)
        cur = self.to_rgb[lod](x)
        prev = F.interpolate(prev, size=self.layer_to_resolution[lod])  # nearest
        return torch.lerp(prev, cur, blend)


class Encoder(nn.Module):
    """StyleALAE encoder E (the official ``EncoderDefault``): FromRGB at each level and
    ``layer_count`` EncodeBlocks whose instance-norm style read-outs are summed into w.

    ``forward(x [N, channels, R, R], lod, blend) -> w [N, 1, latent]`` with ``R = 4 * 2**lod``.
    ``blend < 1`` fades the new level in: the first block's features are lerped with FromRGB
    of the 2x average-pooled image, and its two styles are scaled by ``blend``.
    """

    def __init__(
        self, startf: int = 32, maxf: int = 256, layer_count: int = 3, latent_size: int = 128, channels: int = 3
    ):
        super().__init__()
        self.startf = startf
        self.maxf = maxf
        self.layer_count = layer_count
        self.latent_size = latent_size
        self.channels = channels
        self.from_rgb = nn.ModuleList()
        self.encode_block = nn.ModuleList()
        inputs = startf
        mul = 2
        resolution = 2 ** (layer_count + 1)
        for _ in range(layer_count):
            outputs = _channels(startf, maxf, mul)
            self.from_rgb.append(FromRGB(channels, inputs))
            self.encode_block.append(
                EncodeBlock(inputs, outputs, latent_size, last=False, fused_scale=resolution >= 128)
            )
            resolution //= 2
            inputs = outputs
            mul *= 2

    def _check(self, x: torch.Tensor, lod: int, blend: float) -> None:
        _check_lod(lod, blend, self.layer_count)
        r = 4 * 2**lod
        if x.dim() != 4 or x.shape[1] != self.channels or x.shape[2] != r or x.shape[3] != r:
            raise ValueError(f"x must have shape [N, {self.channels}, {r}, {r}] at lod {lod}, got {list(x.shape)}")

    def forward(self, x: torch.Tensor, lod: int, blend: float) -> torch.Tensor:
        self._check(x, lod, blend)
        first = self.layer_count - lod - 1
        w = torch.zeros(x.shape[0], self.latent_size, dtype=x.dtype, device=x.device)
        h = _lrelu(self.from_rgb[first](x))  # FromRGB's own leaky ReLU, then one more (official)
        if blend != 1:
            h, s1, s2 = self.encode_block[first](h)
            w = w + (s1 * blend + s2 * blend)
            prev = _lrelu(self.from_rgb[first + 1](F.avg_pool2d(x, 2, 2)))
            h = torch.lerp(prev, h, blend)
            first += 1
        for i in range(first, self.layer_count):
            h, s1, s2 = self.encode_block[i](h)
            w = w + (s1 + s2)
        return w.unsqueeze(1)


class MappingBlock(nn.Module):
    """Equalized linear (lrmul as given) followed by leaky ReLU."""

    def __init__(self, inputs: int, outputs: int, lrmul: float):
        super().__init__()
        self.fc = Linear(inputs, outputs, lrmul=lrmul)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _lrelu(self.fc(x))


class MappingF(nn.Module):
    """F: z -> w. Pixel norm, then ``mapping_layers`` MappingBlocks (lrmul 0.1); the result is
    broadcast to ``num_layers`` style slots. ``identity=True``: w = z, no pixel norm and no
    layers (the MNIST model of the official branch ``mnist_ref``, whose ``MappingFromLatent``
    builds its blocks but returns its input unchanged).

    ``forward(z [N, latent]) -> [N, num_layers, dlatent]``.
    """

    def __init__(
        self,
        num_layers: int,
        mapping_layers: int = 5,
        latent_size: int = 256,
        dlatent_size: int = 256,
        mapping_fmaps: int = 256,
        identity: bool = False,
    ):
        super().__init__()
        self.num_layers = num_layers
        self.mapping_layers = 0 if identity else mapping_layers
        self.latent_size = latent_size
        self.identity = identity
        self.map_blocks = nn.ModuleList()
        # The official code reads dlatent_size for the input width and latent_size for the
        # output width; both are equal in every ALAE config.
        inputs = dlatent_size
        for i in range(self.mapping_layers):
            outputs = latent_size if i == mapping_layers - 1 else mapping_fmaps
            self.map_blocks.append(MappingBlock(inputs, outputs, lrmul=0.1))
            inputs = outputs

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_size:
            raise ValueError(f"z must have shape [N, {self.latent_size}], got {list(z.shape)}")
        if self.identity:
            return z.unsqueeze(1).expand(-1, self.num_layers, -1)
        x = pixel_norm(z)
        for block in self.map_blocks:
            x = block(x)
        return x.unsqueeze(1).expand(-1, self.num_layers, -1)


class MappingD(nn.Module):
    """D: w -> logit for StyleALAE. ``mapping_layers`` equalized linear layers (lrmul 0.1) with no
    activation in between (as in the official code); the last has ``2 * dlatent_size`` outputs
    of which only the middle one is used (kept for checkpoint compatibility).

    ``forward(w [N, 1, latent]) -> logits [N]``.
    """

    def __init__(
        self, mapping_layers: int = 5, latent_size: int = 256, dlatent_size: int = 256, mapping_fmaps: int = 256
    ):
        super().__init__()
        self.mapping_layers = mapping_layers
        self.map_blocks = nn.ModuleList()
        widths = [latent_size] + [mapping_fmaps] * (mapping_layers - 1) + [self._out(dlatent_size)]
        for inputs, outputs in zip(widths[:-1], widths[1:]):
            self.map_blocks.append(Linear(inputs, outputs, lrmul=0.1))

    @staticmethod
    def _out(dlatent_size: int) -> int:
        return 2 * dlatent_size

    def _run(self, w: torch.Tensor) -> torch.Tensor:
        for block in self.map_blocks:
            w = block(w)
        return w

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        x = self._run(w)
        return x[:, 0, x.shape[2] // 2]


class MappingDFC(MappingD):
    """D: w -> logit for the MLP (MNIST) ALAE, the official ``MappingDNoStyle``: linear layers
    (lrmul 0.1, no activation), ``dlatent_size`` outputs of which the first is the logit.

    ``forward(w [N, latent]) -> logits [N]``.
    """

    def __init__(self, mapping_layers: int = 3, latent_size: int = 50, dlatent_size: int = 50, mapping_fmaps: int = 50):
        super().__init__(mapping_layers, latent_size, dlatent_size, mapping_fmaps)

    @staticmethod
    def _out(dlatent_size: int) -> int:
        return dlatent_size

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self._run(w)[:, 0]


def _check_mlp_options(images: str, slopes: tuple[float, ...], count: int, what: str) -> tuple[float, ...]:
    if images not in MLP_IMAGES:
        raise ValueError(f"images must be one of {MLP_IMAGES}, got {images!r}")
    slopes = tuple(float(a) for a in slopes)
    if len(slopes) != count or not all(0.0 <= a <= 1.0 for a in slopes):
        raise ValueError(f"{what} must be {count} leaky ReLU slopes in [0, 1], got {slopes!r}")
    return slopes


class EncoderFC(nn.Module):
    """MLP encoder E of the MNIST ALAE: 784 -> 1024 -> 1024 -> latent, each followed by a leaky
    ReLU of slope ``slopes[i]``. With ``images="pad32"`` the input is nearest-resized to 28x28
    first (official master); with ``"raw28"`` it must be 28x28 already (official ``mnist_ref``,
    whose output activation has slope 0.01, PyTorch's default).

    ``forward(x [N, channels, R, R], lod, blend) -> w [N, latent]`` (``lod``/``blend`` unused);
    :meth:`features` also returns the hidden layer h [N, 1024] (after fc_2's activation).
    """

    def __init__(
        self,
        startf: int = 32,
        maxf: int = 256,
        layer_count: int = 4,
        latent_size: int = 50,
        channels: int = 1,
        images: str = "pad32",
        slopes: tuple[float, ...] = MLP_ENCODER_SLOPES,
    ):
        super().__init__()
        self.slopes = _check_mlp_options(images, slopes, 3, "EncoderFC slopes")
        self.images = images
        self.layer_count = layer_count
        self.latent_size = latent_size
        self.channels = channels
        self.fc_1 = Linear(channels * 28 * 28, 1024)
        self.fc_2 = Linear(1024, 1024)
        self.fc_3 = Linear(1024, latent_size)

    def _flat_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"x must have shape [N, {self.channels}, H, W], got {list(x.shape)}")
        if self.images == "raw28":
            if x.shape[2:] != (28, 28):
                raise ValueError(f"x must be 28x28 images (images='raw28'), got {list(x.shape)}")
            return x.flatten(1)
        return F.interpolate(x, 28).flatten(1)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w [N, latent], h [N, 1024])``: the output and the hidden layer before fc_3."""
        a1, a2, a3 = self.slopes
        x = F.leaky_relu(self.fc_1(self._flat_input(x)), a1)
        h = F.leaky_relu(self.fc_2(x), a2)
        return F.leaky_relu(self.fc_3(h), a3), h

    def forward(self, x: torch.Tensor, lod: int = 0, blend: float = 1.0) -> torch.Tensor:
        return self.features(x)[0]


class GeneratorFC(nn.Module):
    """MLP generator G of the MNIST ALAE: latent -> 1024 -> 1024 -> 784 (leaky ReLUs of slopes
    ``slopes`` after the two hidden layers), reshaped to 28x28; with ``images="pad32"``
    nearest-resized to ``4 * 2**lod``, with ``"raw28"`` returned as is.

    ``forward(styles [N, L, latent] or [N, latent], lod, blend, noise) -> [N, channels, R, R]``.
    """

    def __init__(
        self,
        startf: int = 32,
        maxf: int = 256,
        layer_count: int = 4,
        latent_size: int = 50,
        channels: int = 1,
        images: str = "pad32",
        slopes: tuple[float, ...] = MLP_GENERATOR_SLOPES,
    ):
        super().__init__()
        self.slopes = _check_mlp_options(images, slopes, 2, "GeneratorFC slopes")
        self.images = images
        self.layer_count = layer_count
        self.latent_size = latent_size
        self.channels = channels
        self.fc_1 = Linear(latent_size, 1024)
        self.fc_2 = Linear(1024, 1024)
        self.fc_3 = Linear(1024, channels * 28 * 28)
        self.layer_to_resolution = [28] * 10

    def _latent(self, styles: torch.Tensor) -> torch.Tensor:
        x = styles[:, 0] if styles.dim() == 3 else styles  # one w for the whole image
        if x.dim() != 2 or x.shape[1] != self.latent_size:
            raise ValueError(
                f"styles must have shape [N, L, {self.latent_size}] or "
                f"[N, {self.latent_size}], got {list(styles.shape)}"
            )
        return x

    def _image(self, x: torch.Tensor, lod: int) -> torch.Tensor:
        x = x.view(x.shape[0], self.channels, 28, 28)
        return x if self.images == "raw28" else F.interpolate(x, 2 ** (2 + lod))

    def forward(self, styles: torch.Tensor, lod: int, blend: float = 1.0, noise=True) -> torch.Tensor:
        x = self._latent(styles)
        x = F.leaky_relu(self.fc_1(x), self.slopes[0])
        x = F.leaky_relu(self.fc_2(x), self.slopes[1])
        return self._image(self.fc_3(x), lod)
