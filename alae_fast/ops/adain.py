"""``adain``: the StyleALAE generator step between convolutions, fused.

``t = x + noise_weight * noise + bias``, ``a = leaky_relu(t)``, instance norm of ``a``, then the
style modulation ``* (1 + style[:, :C]) + style[:, C:]``: one read of ``x``, one write.

The generator is not on the R1 path, so this op has first-order gradients only; its backward op
refuses to be differentiated (a clear error rather than wrong numbers). The noise is a constant
input (it is sampled, never learned) and receives no gradient.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from . import _checks, _layout
from ._dispatch import resolve_impl
from ._kernels import kernel
from ._library import define
from ..reference.layers import instance_norm, style_mod

__all__ = ["adain", "adain_ref"]


def adain_ref(x: torch.Tensor, style: torch.Tensor, *, noise: torch.Tensor | None = None,
              noise_weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
              alpha: float = 0.2, eps: float = 1e-8) -> torch.Tensor:
    """Reference twin of :func:`adain`: the reference ``DecodeBlock``'s computation."""
    if noise is not None:
        x = torch.addcmul(x, noise_weight.view(1, -1, 1, 1), noise)
    if bias is not None:
        x = x + bias.view(1, -1, 1, 1)
    return style_mod(instance_norm(F.leaky_relu(x, alpha), eps), style)


def _forward_impl(x, style, noise, noise_weight, bias, alpha, eps, impl):
    if impl == "ref":
        t = x if noise is None else torch.addcmul(x, noise_weight.view(1, -1, 1, 1), noise)
        a = F.leaky_relu(t if bias is None else t + bias.view(1, -1, 1, 1), alpha)
        acc = _layout.acc_dtype(x.dtype)
        var, mean = torch.var_mean(a.to(acc), dim=(2, 3), correction=0)
        y = adain_ref(x, style, noise=noise, noise_weight=noise_weight, bias=bias, alpha=alpha,
                      eps=eps)
        return y.contiguous(), torch.cat((mean, (var + eps).rsqrt()), dim=1)

    def dense(t):
        return None if t is None else t.contiguous()

    return kernel(impl, "adain", "adain_fwd")(x.contiguous(), style.contiguous(), dense(noise),
                                              dense(noise_weight), dense(bias), alpha, eps)


def _grad_formula(grad_y, x, style, noise, noise_weight, bias, alpha, eps):
    """The four gradients of adain in closed form (PyTorch ops), recomputed from the inputs."""
    n, c, h, w = x.shape
    t = x if noise is None else torch.addcmul(x, noise_weight.view(1, -1, 1, 1), noise)
    t = t if bias is None else t + bias.view(1, -1, 1, 1)
    a = F.leaky_relu(t, alpha)
    slope = torch.where(t > 0, t.new_ones(()), t.new_full((), alpha))
    d = a - a.mean((2, 3), keepdim=True)
    rstd = (d.square().mean((2, 3), keepdim=True) + eps).rsqrt()
    xn = d * rstd
    sum_g = grad_y.sum((2, 3), keepdim=True)
    sum_gx = (grad_y * xn).sum((2, 3), keepdim=True)
    scale = 1.0 + style[:, :c].reshape(n, c, 1, 1)
    grad_t = slope * (scale * rstd) * (grad_y - (sum_g + xn * sum_gx) / (h * w))
    grad_style = torch.cat((sum_gx, sum_g), dim=1).view(n, 2 * c)
    grad_nw = (grad_t * noise).sum((0, 2, 3)) if noise is not None else x.new_zeros(c)
    return grad_t, grad_style, grad_nw, grad_t.sum((0, 2, 3))


def _backward_impl(grad_y, x, style, noise, noise_weight, bias, stats, alpha, eps, impl):
    if impl == "ref":
        grad_x, grad_style, grad_nw, grad_b = _grad_formula(grad_y, x, style, noise, noise_weight,
                                                            bias, alpha, eps)
        return grad_x.contiguous(), grad_style, grad_nw, grad_b

    def dense(t):
        return None if t is None else t.contiguous()

    return kernel(impl, "adain", "adain_bwd")(
        grad_y.contiguous(), x.contiguous(), style.contiguous(), dense(noise), dense(noise_weight),
        dense(bias), stats.contiguous(), alpha, eps)


def _forward_fake(x, style, noise, noise_weight, bias, alpha, eps, impl):
    n, c = x.shape[:2]
    return (torch.empty_like(x, memory_format=torch.contiguous_format),
            x.new_empty(n, 2 * c, dtype=_layout.acc_dtype(x.dtype)))


def _backward_fake(grad_y, x, style, noise, noise_weight, bias, stats, alpha, eps, impl):
    c = x.shape[1]
    return (torch.empty_like(x, memory_format=torch.contiguous_format),
            torch.empty_like(style), x.new_empty(c), x.new_empty(c))


def _setup_forward(ctx, inputs, output):
    x, style, noise, noise_weight, bias, alpha, eps, impl = inputs
    ctx.save_for_backward(x, style, noise, noise_weight, bias, output[1])
    ctx.alpha, ctx.eps, ctx.impl = alpha, eps, impl


def _grad_forward(ctx, grad_y, _grad_stats):
    x, style, noise, noise_weight, bias, stats = ctx.saved_tensors
    if grad_y is None:
        grad_y = torch.zeros_like(x)
    grad_x, grad_style, grad_nw, grad_b = _backward_op(grad_y, x, style, noise, noise_weight, bias,
                                                      stats, ctx.alpha, ctx.eps, ctx.impl)
    return (grad_x, grad_style, None, grad_nw if noise_weight is not None else None,
            grad_b if bias is not None else None, None, None, None)


def _setup_backward(ctx, inputs, output):
    pass


def _grad_backward(ctx, *grads):
    raise RuntimeError(
        "alae_fast.ops.adain supports first-order gradients only (the generator is not on the "
        "R1 path); for higher-order gradients through the generator use impl='ref'")


_backward_op = define(
    "adain_backward(Tensor grad_y, Tensor x, Tensor style, Tensor? noise, Tensor? noise_weight, "
    "Tensor? bias, Tensor stats, float alpha, float eps, str impl) "
    "-> (Tensor, Tensor, Tensor, Tensor)",
    _backward_impl, _backward_fake, backward=_grad_backward, setup_context=_setup_backward)
_forward_op = define(
    "adain(Tensor x, Tensor style, Tensor? noise, Tensor? noise_weight, Tensor? bias, "
    "float alpha, float eps, str impl) -> (Tensor, Tensor)",
    _forward_impl, _forward_fake, backward=_grad_forward, setup_context=_setup_forward)


def _check_channel_vector(name: str, t, c: int, x: torch.Tensor) -> None:
    _checks.tensor("adain", name, t, dim=1, shape_hint=f"[C] = [{c}]")
    _checks.same_device_dtype("adain", x=x, **{name: t})
    if t.shape[0] != c:
        raise ValueError(f"alae_fast.ops.adain: {name} must have shape [C] = [{c}], got "
                         f"{tuple(t.shape)}")


def adain(x: torch.Tensor, style: torch.Tensor, *, noise: torch.Tensor | None = None,
          noise_weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
          alpha: float = 0.2, eps: float = 1e-8, impl: str | None = None) -> torch.Tensor:
    """Noise, bias, leaky ReLU, instance norm and AdaIN style modulation, fused.

    Args:
        x: [N, C, H, W] floating point (other layouts than contiguous are copied).
        style: [N, 2C]: per-channel scale (first C, applied as ``1 + scale``) and shift.
        noise: [N, 1, H, W] or [1, 1, H, W] (shared by the batch), or None; a constant (it must
            not require grad).
        noise_weight: [C] per-channel noise strength; given exactly when ``noise`` is.
        bias: [C] or None.
        alpha: leaky ReLU slope for negative inputs (>= 0).
        eps: added to the variance of the instance norm.
        impl: ``None`` (automatic, or ``$ALAE_FAST_IMPL``), ``"ref"``, ``"triton"``,
            ``"cuda"`` or ``"cpu"``.
    Returns:
        [N, C, H, W] of x's dtype. First-order gradients for x, style, noise_weight and bias;
        differentiating those gradients again raises (except with ``impl="ref"``).
    """
    _checks.tensor("adain", "x", x, dim=4, shape_hint="[N, C, H, W]")
    n, c, h, w = x.shape
    _checks.tensor("adain", "style", style, dim=2, shape_hint=f"[N, 2C] = [{n}, {2 * c}]")
    _checks.same_device_dtype("adain", x=x, style=style)
    if tuple(style.shape) != (n, 2 * c):
        raise ValueError(f"alae_fast.ops.adain: style must have shape [N, 2C] = [{n}, {2 * c}], "
                         f"got {tuple(style.shape)}")
    if (noise is None) != (noise_weight is None):
        raise ValueError("alae_fast.ops.adain: noise and noise_weight must be given together")
    if noise is not None:
        _checks.tensor("adain", "noise", noise, dim=4, shape_hint=f"[N, 1, H, W] = [{n}, 1, {h}, {w}]")
        _checks.same_device_dtype("adain", x=x, noise=noise)
        if noise.shape[0] not in (1, n) or tuple(noise.shape[1:]) != (1, h, w):
            raise ValueError(f"alae_fast.ops.adain: noise must have shape [N, 1, H, W] = "
                             f"[{n}, 1, {h}, {w}] (or batch 1), got {tuple(noise.shape)}")
        if noise.requires_grad:
            raise ValueError("alae_fast.ops.adain: noise is a constant input and gets no "
                             "gradient; pass noise.detach()")
        _check_channel_vector("noise_weight", noise_weight, c, x)
        noise = noise.expand(n, 1, h, w)
    if bias is not None:
        _check_channel_vector("bias", bias, c, x)
    alpha = _checks.finite_float("adain", "alpha", alpha)
    eps = _checks.finite_float("adain", "eps", eps)
    if alpha < 0 or eps < 0:
        raise ValueError(f"alae_fast.ops.adain: alpha and eps must be >= 0, got alpha={alpha}, "
                         f"eps={eps}")
    impl = resolve_impl("adain", impl, x.device.type)
    if impl == "ref":
        return adain_ref(x, style, noise=noise, noise_weight=noise_weight, bias=bias, alpha=alpha,
                         eps=eps)
    y, _ = _forward_op(x, style, noise, noise_weight, bias, alpha, eps, impl)
    return y
