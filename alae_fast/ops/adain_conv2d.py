"""``adain_conv2d``: a 3x3 convolution that reads the AdaIN output without it being written.

In the StyleALAE generator every 3x3 convolution consumes ``y = scale * t + shift`` where
``t = leaky_relu(x + noise_weight * noise + act_bias)`` is the previous step's activation and
``scale``/``shift`` ([N, C]) fold the instance norm and the style modulation together. This op
applies that whole prologue while loading the convolution's input tile, so neither ``t`` nor
``y`` is ever materialised:

    pre = x + noise_weight[c] * noise[n, 0] + act_bias[c]      (each term optional)
    t   = leaky_relu(pre, alpha)                               (alpha = 1: identity)
    a   = scale[n, c] * (t - center[n, c]) + shift[n, c]          (center optional, 0)
    A   = nearest 2x up-sampling of a if up else a
    out = conv2d(A, weight, bias, stride 1, zero padding 1)    (padding after the affine)

``up=True`` is the opening convolution of a DecodeBlock: both forms of the reference (nearest
up-sampling + 3x3 conv, and from 128x128 up the transposed stride-2 conv with the 4x4
transformed kernel) equal it, the latter with :func:`transposed_to_conv_weight`.

``adain_stats`` is its companion: ``[mean | rsqrt(var + eps)]`` of ``t`` per (n, c) in one read
of ``x``; :func:`adain_center_scale_shift` folds them with a style into (center, scale, shift)
so that a constant channel gives exactly ``shift``. The generator is not on the R1 path, so
both ops have first-order gradients only.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from . import _checks
from . import _layout
from . import _triton
from ._spec import Example
from ._spec import OpSpec
from ._spec import Rand
from ._spec import define
from ._spec import first_order_only

__all__ = ["adain_conv2d", "adain_conv2d_ref", "adain_stats", "adain_stats_ref", "adain_scale_shift"]
__all__ += ["adain_center_scale_shift", "transposed_to_conv_weight"]


# Reference math (PyTorch), shared by the reference twins and the autograd formulas.
def _activation(x, noise, noise_weight, act_bias, alpha):
    """(pre, t): the pre-activation and the leaky ReLU of it, in x's dtype."""
    pre = x
    if noise is not None:
        pre = torch.addcmul(pre, noise_weight.view(1, -1, 1, 1), noise)
    if act_bias is not None:
        pre = pre + act_bias.view(1, -1, 1, 1)
    return pre, (pre if alpha == 1.0 else F.leaky_relu(pre, alpha))


def _affine(t, scale, shift, center):
    """scale * (t - center) + shift per (n, c) (center None: 0)."""
    n, c = scale.shape
    if center is not None:
        t = t - center.view(n, c, 1, 1)
    return torch.addcmul(shift.view(n, c, 1, 1), t, scale.view(n, c, 1, 1))


def _upsample(a: torch.Tensor) -> torch.Tensor:
    return a.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def adain_conv2d_ref(
    x: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    weight: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    noise_weight: torch.Tensor | None = None,
    act_bias: torch.Tensor | None = None,
    alpha: float = 1.0,
    up: bool = False,
    center: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reference twin of :func:`adain_conv2d`: the prologue written out, then ``F.conv2d``."""
    _, t = _activation(x, noise, noise_weight, act_bias, alpha)
    a = _affine(t, scale, shift, center)
    if up:  # repeat_interleave drops channels_last; the conv's output follows its input
        a = _upsample(a).contiguous(memory_format=_layout.memory_format(x))
    return F.conv2d(a, weight, bias, padding=1)


def adain_stats_ref(
    x: torch.Tensor,
    *,
    noise: torch.Tensor | None = None,
    noise_weight: torch.Tensor | None = None,
    act_bias: torch.Tensor | None = None,
    alpha: float = 1.0,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Reference twin of :func:`adain_stats`: ``[mean | rsqrt(var + eps)]`` of ``t`` per
    (n, c), population variance, in float32 (float64 for float64 inputs)."""
    _, t = _activation(x, noise, noise_weight, act_bias, alpha)
    var, mean = torch.var_mean(t.to(_layout.acc_dtype(x.dtype)), dim=(2, 3), correction=0)
    return torch.cat((mean, (var + eps).rsqrt()), dim=1)


def adain_scale_shift(stats: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold instance-norm statistics and an AdaIN style into the convolution's input affine.

    ``style_mod(instance_norm(t), style) = (t - mean) * rstd * (1 + s) + b = scale * t + shift``
    with ``scale = (1 + s) * rstd`` and ``shift = b - mean * scale``.

    Args:
        stats: [N, 2C] ``[mean | rstd]`` from :func:`adain_stats` (float32).
        style: [N, 2C] ``[s | b]``, the AdaIN style of the reference ``style_mod``.
    Returns:
        (scale, shift), each [N, C] in style's dtype (differentiable, plain PyTorch).
    """
    c = style.shape[1] // 2
    mean, rstd = stats[:, :c], stats[:, c:]
    scale = (1.0 + style[:, :c].to(stats.dtype)) * rstd
    shift = style[:, c:].to(stats.dtype) - mean * scale
    return scale.to(style.dtype), shift.to(style.dtype)


def adain_center_scale_shift(
    stats: torch.Tensor, style: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Instance-norm statistics and an AdaIN style as the centred affine of
    :func:`adain_conv2d`'s ``center`` argument.

    ``style_mod(instance_norm(t), style) = (t - mean) * rstd * (1 + s) + b
    = scale * (t - center) + shift`` with ``center = mean``, ``scale = (1 + s) * rstd`` and
    ``shift = b``: the mean is subtracted before the (large, up to ``1 / sqrt(eps)``) scale,
    so a constant channel (t == mean exactly) gives exactly ``b``, as the reference does.

    Args:
        stats: [N, 2C] ``[mean | rstd]`` from :func:`adain_stats` (float32).
        style: [N, 2C] ``[s | b]``, the AdaIN style of the reference ``style_mod``.
    Returns:
        (center, scale, shift), each [N, C] in style's dtype (differentiable, plain PyTorch).
    """
    c = style.shape[1] // 2
    mean, rstd = stats[:, :c], stats[:, c:]
    scale = (1.0 + style[:, :c].to(stats.dtype)) * rstd
    return mean.to(style.dtype), scale.to(style.dtype), style[:, c:]


def transposed_to_conv_weight(weight: torch.Tensor) -> torch.Tensor:
    """The 3x3 conv weight [Cout, Cin, 3, 3] whose ``up=True`` convolution equals the fused
    up-sampling conv of the reference (``conv_transpose2d`` with stride 2, padding 1 and the
    4x4 transformed kernel of the transposed-layout weight [Cin, Cout, 3, 3])."""
    return weight.transpose(0, 1).flip(2, 3)


def _out_shape(x, weight, up):
    n, _, h, w = x.shape
    return (n, weight.shape[0], 2 * h if up else h, 2 * w if up else w)


def _center_grad(scale, grad_shift):
    """grad_center = -scale * grad_shift: d a / d center = -scale, and grad_shift is the sum
    of d loss / d a over the pixels (computed in the accumulation dtype)."""
    acc = _layout.acc_dtype(scale.dtype)
    return (-(scale.to(acc) * grad_shift.to(acc))).to(scale.dtype)


def _forward_fake(x, scale, shift, center, weight, bias, noise, noise_weight, act_bias, alpha, up):
    return x.new_empty(_out_shape(x, weight, up)).contiguous(memory_format=_layout.memory_format(x))


def _backward_fake(grad_out, x, scale, shift, center, weight, *rest):
    c = x.shape[1]
    return (
        torch.empty_like(x, memory_format=_layout.memory_format(x)),
        torch.empty_like(scale),
        torch.empty_like(shift),
        torch.empty_like(weight),
        x.new_empty(weight.shape[0]),
        x.new_empty(c),
        x.new_empty(c),
    )


def _grad_forward(s, grad_out):
    grads = _backward(
        grad_out, s.x, s.scale, s.shift, s.center, s.weight, s.noise, s.noise_weight, s.act_bias, s.alpha, s.up, s.impl
    )
    out = dict(zip(("x", "scale", "shift", "weight", "bias", "noise_weight", "act_bias"), grads))
    if s.center is not None:
        out["center"] = _center_grad(s.scale, out["shift"])
    return out


_backward = define(
    "adain_conv2d_backward(Tensor grad_out, Tensor x, Tensor scale, Tensor shift, "
    "Tensor? center, Tensor weight, Tensor? noise, Tensor? noise_weight, Tensor? act_bias, "
    "float alpha, bool up) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
    kernel=lambda k, grad_out, *args: k.adain_conv2d_bwd(_layout.dense(grad_out), *args),
    triton=lambda: _triton.adain_conv2d,
    fake=_backward_fake,
    backward=first_order_only("adain_conv2d", "the generator is not on the R1 path"),
    autocast="lower",
)
_forward = define(
    "adain_conv2d(Tensor x, Tensor scale, Tensor shift, Tensor? center, Tensor weight, "
    "Tensor? bias, Tensor? noise, Tensor? noise_weight, Tensor? act_bias, float alpha, bool up) "
    "-> Tensor",
    kernel=lambda k, *args: k.adain_conv2d_fwd(*args),
    triton=lambda: _triton.adain_conv2d,
    fake=_forward_fake,
    save=("x", "scale", "shift", "center", "weight", "noise", "noise_weight", "act_bias"),
    backward=_grad_forward,
    autocast="lower",
)


def _stats_fake(x, noise, noise_weight, act_bias, alpha, eps):
    return x.new_empty(x.shape[0], 2 * x.shape[1], dtype=_layout.acc_dtype(x.dtype))


def _grad_stats(s, grad_stats):
    # One elementwise pass in PyTorch: d mean / dt = 1/M, d rstd / dt = -rstd^3 (t - mean) / M.
    acc = s.stats.dtype

    def f(t):
        return None if t is None else t.to(acc)

    n, c, h, w = s.x.shape
    pre, t = _activation(f(s.x), f(s.noise), f(s.noise_weight), f(s.act_bias), s.alpha)
    mean, rstd = s.stats[:, :c].view(n, c, 1, 1), s.stats[:, c:].view(n, c, 1, 1)
    g_mean, g_rstd = grad_stats[:, :c].view(n, c, 1, 1), grad_stats[:, c:].view(n, c, 1, 1)
    grad_t = (g_mean - g_rstd * rstd.pow(3) * (t - mean)) / (h * w)
    slope = torch.where(pre > 0, pre.new_ones(()), pre.new_full((), s.alpha))
    grad_pre = grad_t * slope
    grad_nw = None if s.noise is None else (grad_pre * s.noise.to(acc)).sum((0, 2, 3))
    return {
        "x": grad_pre.to(s.x.dtype),
        "act_bias": grad_pre.sum((0, 2, 3)).to(s.x.dtype),
        "noise_weight": None if grad_nw is None else grad_nw.to(s.x.dtype),
    }


_stats = define(
    "adain_stats(Tensor x, Tensor? noise, Tensor? noise_weight, Tensor? act_bias, float alpha, float eps) -> Tensor",
    kernel=lambda k, *args: k.adain_stats_fwd(*args),
    triton=lambda: _triton.adain_conv2d,
    fake=_stats_fake,
    save=("x", "noise", "noise_weight", "act_bias"),
    save_outputs={"stats": 0},
    backward=_grad_stats,
    autocast="input",
)


_PROLOGUE = dict(x=Rand((3, 5, 7, 7), 0), noise=Rand((3, 1, 7, 7), 7), noise_weight=Rand((5,), 8, 0.5), alpha=0.2)
_PROLOGUE.update(act_bias=Rand((5,), 9, 0.5))
_CONV = dict(_PROLOGUE, scale=Rand((3, 5), 10, 0.3, shift=1.0), shift=Rand((3, 5), 11), bias=Rand((4,), 13, 0.5))
_CONV.update(weight=Rand((4, 5, 3, 3), 12, 0.2))
_CONV_GRAD = ("x", "scale", "shift", "weight", "bias", "noise_weight", "act_bias")
_CONV_EXAMPLES = tuple(Example(f"adain_conv2d{'(up)' * up}", dict(_CONV, up=up), _CONV_GRAD) for up in (False, True))
_STATS_EXAMPLE = Example("adain_stats", dict(_PROLOGUE, eps=1e-8), ("x", "noise_weight", "act_bias"))
SPEC = OpSpec("adain_conv2d", adain_conv2d_ref, _forward, grad_order=1, examples=_CONV_EXAMPLES)
STATS_SPEC = OpSpec(
    "adain_stats", adain_stats_ref, _stats, grad_order=1, family="adain_conv2d", examples=(_STATS_EXAMPLE,)
)


def _check_prologue(op, x, noise, noise_weight, act_bias, alpha):
    """Checks shared by both ops; returns (noise expanded to the batch and dense, alpha)."""
    _checks.tensor(op, "x", x, dim=4, shape_hint="[N, C, H, W]")
    noise = _checks.noise(op, x, noise, noise_weight)
    if act_bias is not None:
        _checks.vector(op, "act_bias", act_bias, x.shape[1], x)
    return noise, _checks.non_negative(op, alpha=alpha)[0]


def adain_conv2d(
    x: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    weight: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    noise_weight: torch.Tensor | None = None,
    act_bias: torch.Tensor | None = None,
    alpha: float = 1.0,
    up: bool = False,
    center: torch.Tensor | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """3x3 convolution (stride 1, zero padding 1) of ``scale * (t - center) + shift``, fused.

    ``t = leaky_relu(x + noise_weight * noise + act_bias, alpha)`` (see the module docstring);
    with the defaults (no noise, no act_bias, alpha 1) ``t = x``. The zero padding is applied
    after the affine, as the reference computes it.

    Args:
        x: [N, C, H, W] float32, float16, bfloat16 or float64; contiguous or channels_last
            (other strides are copied). The output has x's layout.
        scale, shift: [N, C] per-(sample, channel) affine, x's dtype (see
            :func:`adain_scale_shift`).
        weight: [Cout, C, 3, 3], x's dtype (the equalized weight as stored).
        bias: [Cout] added to the output, or None.
        noise: [N, 1, H, W] or [1, 1, H, W] per-pixel noise (a constant: no gradient), or None.
        noise_weight: [C], given exactly when ``noise`` is.
        act_bias: [C] added before the activation, or None.
        alpha: leaky ReLU slope (>= 0); 1.0 means no activation.
        up: nearest 2x up-sampling of the affine output before the convolution.
        center: [N, C] subtracted from ``t`` before the scale (see
            :func:`adain_center_scale_shift`), or None (0).
        impl: ``None`` (automatic), ``"ref"``, ``"triton"``, ``"cuda"`` or ``"cpu"``.
    Returns:
        [N, Cout, H, W] (``[N, Cout, 2H, 2W]`` with ``up``), x's dtype and layout. First-order
        gradients for x, scale, shift, center, weight, bias, noise_weight and act_bias (float32
        accumulation); differentiating them again raises (except with ``impl="ref"``).
    """
    op = "adain_conv2d"
    noise, alpha = _check_prologue(op, x, noise, noise_weight, act_bias, alpha)
    n, c, h, w = x.shape
    for name, t in (("scale", scale), ("shift", shift), ("center", center)):
        if t is not None:
            _checks.shaped(op, name, t, (n, c), x, "N, C")
    _checks.tensor(op, "weight", weight, dim=4, shape_hint=f"[Cout, C, 3, 3] = [Cout, {c}, 3, 3]")
    _checks.same_device_dtype(op, x=x, weight=weight)
    if weight.shape[1:] != (c, 3, 3):
        raise ValueError(
            f"alae_fast.ops.{op}: weight must have shape [Cout, C, 3, 3] = [Cout, {c}, 3, 3], got {tuple(weight.shape)}"
        )
    if bias is not None:
        _checks.vector(op, "bias", bias, weight.shape[0], x, "Cout")
    if not isinstance(up, bool):
        raise TypeError(f"alae_fast.ops.{op}: up must be a bool, got {type(up).__name__}")
    return SPEC(
        impl,
        _layout.dense(x),
        scale.contiguous(),
        shift.contiguous(),
        _layout.contiguous(center),
        weight.contiguous(),
        _layout.contiguous(bias),
        noise,
        _layout.contiguous(noise_weight),
        _layout.contiguous(act_bias),
        alpha,
        up,
    )


def adain_stats(
    x: torch.Tensor,
    *,
    noise: torch.Tensor | None = None,
    noise_weight: torch.Tensor | None = None,
    act_bias: torch.Tensor | None = None,
    alpha: float = 1.0,
    eps: float = 1e-8,
    impl: str | None = None,
) -> torch.Tensor:
    """Instance-norm statistics of ``t = leaky_relu(x + noise_weight * noise + act_bias)``.

    One read of ``x``, nothing written: with :func:`adain_scale_shift` and
    :func:`adain_conv2d` the AdaIN output is never materialised.

    Args:
        x, noise, noise_weight, act_bias, alpha, impl: as in :func:`adain_conv2d`.
        eps: added to the variance.
    Returns:
        [N, 2C] float32 (float64 for float64 x): ``[mean | rsqrt(var + eps)]`` over H, W
        (population variance). First-order gradients for x, noise_weight and act_bias.
    """
    op = "adain_stats"
    noise, alpha = _check_prologue(op, x, noise, noise_weight, act_bias, alpha)
    (eps,) = _checks.non_negative(op, eps=eps)
    return STATS_SPEC(
        impl, _layout.dense(x), noise, _layout.contiguous(noise_weight), _layout.contiguous(act_bias), alpha, eps
    )
