import constant_rows
import pytest
import torch
from support import CL
from support import FP32_GRAD
from support import assert_low_precision_close
from support import impl_device
from support import op_overloads
from support import randn as _randn
from support import require
from support import shape_id as _ids
from torch.nn import functional as F

from alae_fast.ops import adain_center_scale_shift
from alae_fast.ops import adain_conv2d
from alae_fast.ops import adain_conv2d_ref
from alae_fast.ops import adain_ref
from alae_fast.ops import adain_scale_shift
from alae_fast.ops import adain_stats
from alae_fast.ops import adain_stats_ref
from alae_fast.ops import transposed_to_conv_weight
from alae_fast.reference.layers import ConvTranspose2d

OP, BACKWARD_OP = op_overloads("adain_conv2d")
STATS_OP = torch.ops.alae_fast.adain_stats.default

# (N, C, H, W, Cout): C in 3, 17, 64 and H, W in 4, 9, 32, odd and unequal sizes mixed.
SHAPES = [
    (1, 3, 4, 4, 5),
    (3, 17, 9, 9, 8),
    (2, 3, 9, 32, 17),
    (1, 64, 4, 9, 64),
    (2, 17, 32, 4, 3),
    (1, 64, 9, 9, 17),
    (1, 3, 32, 32, 64),
    (2, 1, 1, 3, 2),
]
# Which prologue terms are given: noise (batch N or broadcast batch 1), act_bias, activation.
VARIANTS = ["full", "affine", "noise1+act", "bias-only"]
PROLOGUE = ("noise_weight", "act_bias")


def _inputs(shape, variant, device, dtype=torch.float32):
    """(x, scale, shift, weight, kwargs), every differentiable input requiring grad."""
    n, c, h, w, cout = shape
    x = _randn((n, c, h, w), device, dtype).requires_grad_()
    scale = (1.0 + 0.5 * _randn((n, c), device, dtype, seed=1)).requires_grad_()
    shift = (0.5 * _randn((n, c), device, dtype, seed=2)).requires_grad_()
    weight = (_randn((cout, c, 3, 3), device, dtype, seed=3) / (3.0 * c**0.5)).requires_grad_()
    kwargs = {}
    if variant in ("full", "noise1+act"):
        kwargs["noise"] = _randn((n if variant == "full" else 1, 1, h, w), device, dtype, seed=4)
        kwargs["noise_weight"] = (0.5 * _randn((c,), device, dtype, seed=5)).requires_grad_()
        kwargs["act_bias"] = (0.5 * _randn((c,), device, dtype, seed=6)).requires_grad_()
        kwargs["alpha"] = 0.2
    if variant in ("full", "bias-only"):
        kwargs["bias"] = (0.5 * _randn((cout,), device, dtype, seed=7)).requires_grad_()
    return x, scale, shift, weight, kwargs


def _differentiable(x, scale, shift, weight, kwargs):
    return [x, scale, shift, weight] + [kwargs[k] for k in ("bias",) + PROLOGUE if k in kwargs]


def _close(ours, ref, rtol):
    # Relative to the tensor's scale: a 3x3xC sum's rounding is relative to its terms, so
    # outputs that cancel to ~0 are held to rtol x the largest value, not to 0.
    atol = rtol * ref.detach().abs().max().item()
    torch.testing.assert_close(ours, ref, rtol=rtol, atol=max(atol, 1e-7))


def _check_parity(x, scale, shift, weight, kwargs, impl, up, grad_layout=None):
    ours = adain_conv2d(x, scale, shift, weight, up=up, impl=impl, **kwargs)
    ref = adain_conv2d_ref(x, scale, shift, weight, up=up, **kwargs)
    assert ours.shape == ref.shape and ours.dtype == x.dtype
    _close(ours, ref, 1e-5)
    upstream = _randn(ref.shape, x.device, x.dtype, seed=8)
    if grad_layout == "channels_last":
        upstream = upstream.contiguous(memory_format=CL)
    inputs = _differentiable(x, scale, shift, weight, kwargs)
    for g, rg in zip(torch.autograd.grad(ours, inputs, upstream), torch.autograd.grad(ref, inputs, upstream)):
        assert g.shape == rg.shape and g.dtype == rg.dtype
        _close(g, rg, FP32_GRAD["rtol"])
    return ours


CASES = [(s, "full", up) for s in SHAPES for up in (False, True)] + [
    (s, v, up) for s in SHAPES[1:3] for v in VARIANTS[1:] for up in (False, True)
]


@impl_device
@pytest.mark.parametrize("shape,variant,up", CASES, ids=[f"{_ids(s)}-{v}-{'up' if u else 'same'}" for s, v, u in CASES])
def test_matches_reference_values_and_gradients(impl, device, shape, variant, up):
    require(impl, device)
    _check_parity(*_inputs(shape, variant, device), impl, up)


@impl_device
@pytest.mark.parametrize("layout", ["non-contiguous", "channels_last", "channels_last-grad"])
@pytest.mark.parametrize("up", [False, True])
def test_layouts(impl, device, layout, up):
    require(impl, device)
    x, scale, shift, weight, kwargs = _inputs((2, 17, 9, 4, 5), "full", device)
    x = x.detach()
    if layout == "non-contiguous":
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
        scale = scale.detach().t().contiguous().t()  # a transposed view
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=CL)
    elif layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    x.requires_grad_()
    if not scale.requires_grad:
        scale.requires_grad_()
    grad_layout = "channels_last" if layout == "channels_last-grad" else None
    out = _check_parity(x, scale, shift, weight, kwargs, impl, up, grad_layout)
    if layout == "channels_last":
        assert out.is_contiguous(memory_format=CL)


@impl_device
def test_known_values(impl, device):
    require(impl, device)
    # x = [[1, 2], [3, 4]] with noise [[-2, 0], [0, 2]] * 0.5 and act_bias -2: pre = [[-2, 0],
    # [1, 3]], leaky ReLU 0.5 -> t = [[-1, 0], [1, 3]]; a = 2 t + 1 = [[-1, 1], [3, 7]].
    # An all-ones 3x3 kernel sums each 3x3 window of the zero-padded a: every output of a 2x2
    # image sees all four values: 10, plus the bias 0.5.
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], device=device).view(1, 1, 2, 2)
    noise = torch.tensor([-2.0, 0.0, 0.0, 2.0], device=device).view(1, 1, 2, 2)
    one = torch.ones(1, 1, device=device)
    w = torch.ones(1, 1, 3, 3, device=device)
    bias, nw, act_bias = (torch.tensor([v], device=device) for v in (0.5, 0.5, -2.0))

    def run(up):
        return adain_conv2d(
            x, 2 * one, one, w, bias=bias, noise=noise, noise_weight=nw, act_bias=act_bias, alpha=0.5, up=up, impl=impl
        )

    out = run(up=False)
    torch.testing.assert_close(out, torch.full((1, 1, 2, 2), 10.5, device=device))
    # Up-sampled: A is 4x4 with 2x2 blocks of -1, 1, 3, 7; the top-left output sees the padded
    # window [[0,0,0],[0,-1,-1],[0,-1,-1]] = -4 (+0.5); the one at (1, 1) sees -1 -1 1 -1 -1 1
    # 3 3 7 = 11 (+0.5).
    up = run(up=True)
    assert up.shape == (1, 1, 4, 4)
    assert up[0, 0, 0, 0].item() == pytest.approx(-3.5)
    assert up[0, 0, 1, 1].item() == pytest.approx(11.5)


def test_up_equals_the_fused_transposed_convolution():
    # The DecodeBlock's fused up-sampling conv (>= 128 px) is this op with up=True and the
    # re-laid-out 3x3 weight.
    torch.manual_seed(0)
    conv = ConvTranspose2d(5, 7, 3, 2, 1, bias=False, transform_kernel=True).double()
    x, scale, shift, _, _ = _inputs((2, 5, 6, 9, 7), "affine", "cpu", torch.float64)
    a = x * scale[:, :, None, None] + shift[:, :, None, None]
    ours = adain_conv2d(x, scale, shift, transposed_to_conv_weight(conv.weight), up=True, impl="ref")
    torch.testing.assert_close(ours, conv(a), rtol=1e-12, atol=1e-12)


@impl_device
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("variant,up", [("full", False), ("full", True), ("affine", False)])
def test_low_precision_within_twice_pytorch_error(impl, device, dtype, variant, up):
    require(impl, device)
    x, scale, shift, weight, kwargs = _inputs((2, 17, 9, 4, 5), variant, device, dtype)
    inputs = _differentiable(x, scale, shift, weight, kwargs)
    inputs64 = [t.detach().double().requires_grad_() for t in inputs]
    kw64 = {
        k: (
            v.detach().double().requires_grad_()
            if isinstance(v, torch.Tensor) and v.requires_grad
            else (v.double() if isinstance(v, torch.Tensor) else v)
        )
        for k, v in kwargs.items()
    }
    named = ["bias"] + list(PROLOGUE)
    inputs64 = inputs64[:4] + [kw64[k] for k in named if k in kw64]
    truth = adain_conv2d_ref(*inputs64[:4], up=up, **{k: v for k, v in kw64.items()})
    ours = adain_conv2d(x, scale, shift, weight, up=up, impl=impl, **kwargs)
    ref = adain_conv2d_ref(x, scale, shift, weight, up=up, **kwargs)
    assert ours.dtype == dtype
    assert_low_precision_close(ours, ref, truth)
    upstream = _randn(ref.shape, device, dtype, seed=8)
    grads = torch.autograd.grad(ours, inputs, upstream)
    ref_grads = torch.autograd.grad(ref, inputs, upstream)
    true_grads = torch.autograd.grad(truth, inputs64, upstream.double())
    for g, rg, tg in zip(grads, ref_grads, true_grads):
        assert g.dtype == dtype
        assert_low_precision_close(g, rg, tg)


def _fn(impl, kwargs, up):
    names = [k for k in ("bias",) + PROLOGUE if k in kwargs]
    fixed = {k: v for k, v in kwargs.items() if k not in names}

    def fn(x, scale, shift, weight, *rest):
        return adain_conv2d(x, scale, shift, weight, up=up, impl=impl, **fixed, **dict(zip(names, rest)))

    return fn


@impl_device
@pytest.mark.parametrize("variant,up", [("full", False), ("full", True), ("noise1+act", True), ("affine", False)])
def test_gradcheck_float64(impl, device, variant, up):
    require(impl, device)
    x, scale, shift, weight, kwargs = _inputs((2, 3, 3, 4, 2), variant, device, torch.float64)
    assert torch.autograd.gradcheck(
        _fn(impl, kwargs, up), _differentiable(x, scale, shift, weight, kwargs), fast_mode=True
    )


@impl_device
def test_second_order_gradients_raise(impl, device):
    require(impl, device)
    x, scale, shift, weight, kwargs = _inputs((2, 3, 4, 4, 2), "full", device)
    y = adain_conv2d(x, scale, shift, weight, impl=impl, **kwargs)
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="first-order"):
        torch.autograd.grad(gx.square().sum(), scale)


def _center(shape, device, dtype=torch.float32):
    """A per-(n, c) center near the activations' scale, requiring grad."""
    n, c = shape[:2]
    return (0.5 * _randn((n, c), device, dtype, seed=11)).requires_grad_()


def _op_args(shape, variant, device, up, impl, center=False):
    x, scale, shift, weight, kw = _inputs(shape, variant, device)
    n, _, h, w, _ = shape
    noise = kw.get("noise")
    noise = None if noise is None else noise.expand(n, 1, h, w).contiguous()
    return (
        x,
        scale,
        shift,
        _center(shape, device) if center else None,
        weight,
        kw.get("bias"),
        noise,
        kw.get("noise_weight"),
        kw.get("act_bias"),
        kw.get("alpha", 1.0),
        up,
        impl,
    )


@impl_device
@pytest.mark.parametrize(
    "variant,up,center",
    [
        ("full", False, False),
        ("full", True, False),
        ("affine", True, False),
        ("full", False, True),
        ("full", True, True),
    ],
)
def test_opcheck(impl, device, variant, up, center):
    require(impl, device)
    args = _op_args((2, 3, 5, 4, 4), variant, device, up, impl, center)
    torch.library.opcheck(OP, args)
    detached = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    x, scale, shift, ce, weight, _, noise, nw, ab, alpha, up, impl = detached
    grad_out = _randn(OP(*detached).shape, device, seed=9)
    torch.library.opcheck(BACKWARD_OP, (grad_out, x, scale, shift, ce, weight, noise, nw, ab, alpha, up, impl))
    torch.library.opcheck(STATS_OP, (args[0], noise, args[7], args[8], alpha, 1e-8, impl))


# -- adain_stats -------------------------------------------------------------------------------

STATS_SHAPES = [(1, 3, 4, 4), (3, 17, 9, 32), (2, 64, 9, 9), (2, 5, 1, 3)]


@impl_device
@pytest.mark.parametrize("shape", STATS_SHAPES, ids=_ids)
@pytest.mark.parametrize("variant", ["full", "affine"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_stats_match_reference(impl, device, shape, variant, layout):
    require(impl, device)
    x, _, _, _, kwargs = _inputs((*shape, 1), variant, device)
    kwargs.pop("bias", None)
    if layout == "channels_last":
        x = x.detach().contiguous(memory_format=CL).requires_grad_()
    ours = adain_stats(x, impl=impl, **kwargs)
    ref = adain_stats_ref(x, **kwargs)
    assert ours.shape == (shape[0], 2 * shape[1]) and ours.dtype == torch.float32
    _close(ours, ref, 1e-5)
    upstream = _randn(ref.shape, device, seed=8)
    inputs = [x] + [kwargs[k] for k in PROLOGUE if k in kwargs]
    for g, rg in zip(torch.autograd.grad(ours, inputs, upstream), torch.autograd.grad(ref, inputs, upstream)):
        _close(g, rg, FP32_GRAD["rtol"])


@impl_device
def test_stats_known_values(impl, device):
    require(impl, device)
    # t = leaky_relu([1, 2, 3, 4] + 0.5 [-2, 0, 0, 2] - 2, 0.5) = [-1, 0, 1, 3]: mean 0.75,
    # population variance (1.75^2 + 0.75^2 + 0.25^2 + 2.25^2) / 4 = 2.1875.
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], device=device).view(1, 1, 2, 2)
    noise = torch.tensor([-2.0, 0.0, 0.0, 2.0], device=device).view(1, 1, 2, 2)
    stats = adain_stats(
        x,
        noise=noise,
        noise_weight=torch.tensor([0.5], device=device),
        act_bias=torch.tensor([-2.0], device=device),
        alpha=0.5,
        eps=1e-8,
        impl=impl,
    )
    torch.testing.assert_close(stats, torch.tensor([[0.75, (2.1875 + 1e-8) ** -0.5]], device=device))


@impl_device
@pytest.mark.parametrize("up", [False, True])
def test_stats_scale_shift_conv_is_adain_then_conv(impl, device, up):
    # The generator's fused path against the reference chain it replaces: adain, then conv.
    require(impl, device)
    n, c, h, w, cout = 2, 17, 9, 4, 5
    x, _, _, weight, kwargs = _inputs((n, c, h, w, cout), "full", device)
    kwargs.pop("bias")
    style = (0.5 * _randn((n, 2 * c), device, seed=10)).requires_grad_()
    scale, shift = adain_scale_shift(adain_stats(x, eps=1e-8, impl=impl, **kwargs), style)
    ours = adain_conv2d(x, scale, shift, weight, up=up, impl=impl, **kwargs)
    y = adain_ref(
        x,
        style,
        noise=kwargs["noise"],
        noise_weight=kwargs["noise_weight"],
        bias=kwargs["act_bias"],
        alpha=0.2,
        eps=1e-8,
    )
    ref = F.conv2d(y.repeat_interleave(2, 2).repeat_interleave(2, 3) if up else y, weight, padding=1)
    _close(ours, ref, 1e-5)
    inputs = [x, style, weight, kwargs["noise_weight"], kwargs["act_bias"]]
    upstream = _randn(ref.shape, device, seed=8)
    for g, rg in zip(torch.autograd.grad(ours, inputs, upstream), torch.autograd.grad(ref, inputs, upstream)):
        _close(g, rg, FP32_GRAD["rtol"])


# -- argument checks ---------------------------------------------------------------------------


def _good(device="cpu"):
    x, scale, shift, weight, _ = _inputs((2, 3, 4, 4, 5), "affine", device)
    return x.detach(), scale.detach(), shift.detach(), weight.detach()


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda a: {**a, "weight": a["weight"][:, :2]}, r"weight must have shape \[Cout, C, 3, 3\]"),
        (lambda a: {**a, "weight": a["weight"][..., :2]}, r"weight must have shape"),
        (lambda a: {**a, "scale": a["scale"][:1]}, r"scale must have shape \[N, C\] = \[2, 3\]"),
        (lambda a: {**a, "shift": a["shift"].view(-1)}, r"shift must be 2-D"),
        (lambda a: {**a, "x": a["x"][0]}, r"x must be 4-D"),
        (lambda a: {**a, "scale": a["scale"].double()}, r"scale is torch.float64|x is torch.float32"),
        (lambda a: {**a, "bias": torch.zeros(4)}, r"bias must have shape \[Cout\] = \[5\]"),
        (lambda a: {**a, "noise": torch.zeros(2, 1, 4, 4)}, r"noise and noise_weight"),
        (
            lambda a: {**a, "noise": torch.zeros(2, 1, 4, 4, requires_grad=True), "noise_weight": torch.zeros(3)},
            r"noise is a constant input",
        ),
        (
            lambda a: {**a, "noise": torch.zeros(2, 2, 4, 4), "noise_weight": torch.zeros(3)},
            r"noise must have shape \[N, 1, H, W\]",
        ),
        (lambda a: {**a, "act_bias": torch.zeros(5)}, r"act_bias must have shape \[C\] = \[3\]"),
        (lambda a: {**a, "alpha": -0.1}, r"alpha must be >= 0"),
        (lambda a: {**a, "up": 1}, r"up must be a bool"),
        (lambda a: {**a, "x": a["x"].long()}, r"x must be a floating-point tensor"),
        (lambda a: {**a, "center": a["scale"][:, :2]}, r"center must have shape \[N, C\] = \[2, 3\]"),
        (lambda a: {**a, "center": a["scale"].view(-1)}, r"center must be 2-D"),
        (lambda a: {**a, "center": a["scale"].double()}, r"center is torch.float64|x is torch.float32"),
    ],
)
def test_bad_arguments_name_the_argument(change, match):
    x, scale, shift, weight = _good()
    args = change(dict(x=x, scale=scale, shift=shift, weight=weight))
    with pytest.raises((ValueError, TypeError), match=match):
        adain_conv2d(impl="ref", **args)


def test_stats_bad_arguments():
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"eps must be >= 0"):
        adain_stats(x, eps=-1.0)
    with pytest.raises(ValueError, match=r"act_bias must have shape \[C\] = \[3\]"):
        adain_stats(x, act_bias=torch.zeros(2))


@impl_device
@pytest.mark.parametrize("shape", constant_rows.SHAPES, ids=_ids)
@pytest.mark.parametrize("variant", ["full", "affine"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_stats_of_constant_rows_are_exact(impl, device, shape, variant, layout):
    require(impl, device)
    # A constant row: mean exactly its value, var exactly 0, so rsqrt(var + eps) at eps = 0 is
    # exactly inf (a residue var of any size would give a finite rstd).
    x, kwargs, rows = constant_rows.constant_row_inputs(shape, device, noise=variant == "full", bias=variant == "full")
    if "bias" in kwargs:
        kwargs["act_bias"] = kwargs.pop("bias")
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    stats = adain_stats(x, alpha=0.2, eps=0.0, impl=impl, **kwargs)
    c = shape[1]
    named = {("bias" if k == "act_bias" else k): v for k, v in kwargs.items()}
    for i, j in rows:
        a = constant_rows.activation(x, named, 0.2, i, j).item()
        assert stats[i, j].item() == a, f"row ({i}, {j}): mean {stats[i, j].item()!r} != {a!r}"
        rstd = stats[i, c + j].item()
        assert rstd == float("inf"), f"row ({i}, {j}): var is not 0 (rstd {rstd:.6g})"
    ref = adain_stats_ref(x.double(), alpha=0.2, eps=0.0, **{k: v.double() for k, v in kwargs.items()})
    other = constant_rows.other_rows_mask(shape, rows, device)
    other = torch.cat((other, other), dim=1)
    _close(stats[other].double(), ref[other], 1e-5)


# -- center: scale * (t - center) + shift --------------------------------------------------------

CENTER_CASES = [
    ((3, 17, 9, 9, 8), "full", False),
    ((3, 17, 9, 9, 8), "full", True),
    ((2, 3, 9, 32, 17), "affine", True),
    ((1, 64, 4, 9, 64), "noise1+act", False),
]


@impl_device
@pytest.mark.parametrize(
    "shape,variant,up", CENTER_CASES, ids=[f"{_ids(s)}-{v}-{'up' if u else 'same'}" for s, v, u in CENTER_CASES]
)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_center_matches_reference(impl, device, shape, variant, up, layout):
    require(impl, device)
    x, scale, shift, weight, kwargs = _inputs(shape, variant, device)
    if layout == "channels_last":
        x = x.detach().contiguous(memory_format=CL).requires_grad_()
    center = _center(shape, device)
    ours = adain_conv2d(x, scale, shift, weight, up=up, center=center, impl=impl, **kwargs)
    ref = adain_conv2d_ref(x, scale, shift, weight, up=up, center=center, **kwargs)
    _close(ours, ref, 1e-5)
    upstream = _randn(ref.shape, device, seed=8)
    inputs = _differentiable(x, scale, shift, weight, kwargs) + [center]
    for g, rg in zip(torch.autograd.grad(ours, inputs, upstream), torch.autograd.grad(ref, inputs, upstream)):
        assert g.shape == rg.shape and g.dtype == rg.dtype
        _close(g, rg, FP32_GRAD["rtol"])


def test_center_reference_is_the_shifted_affine():
    # The reference twin's center against the affine written out in float64 (a twin that
    # ignored center would differ by scale * center, of order 1).
    x, scale, shift, weight, kwargs = _inputs((2, 5, 6, 7, 3), "full", "cpu", torch.float64)
    center = _center((2, 5), "cpu", torch.float64)
    t = F.leaky_relu(
        x + kwargs["noise_weight"].view(1, -1, 1, 1) * kwargs["noise"] + kwargs["act_bias"].view(1, -1, 1, 1), 0.2
    )
    a = scale[:, :, None, None] * (t - center[:, :, None, None]) + shift[:, :, None, None]
    truth = F.conv2d(a, weight, kwargs["bias"], padding=1)
    ours = adain_conv2d_ref(x, scale, shift, weight, center=center, **kwargs)
    torch.testing.assert_close(ours, truth, rtol=1e-12, atol=1e-12)


@impl_device
@pytest.mark.parametrize("variant,up", [("full", False), ("full", True), ("affine", True)])
def test_center_gradcheck_float64(impl, device, variant, up):
    require(impl, device)
    shape = (2, 3, 3, 4, 2)
    x, scale, shift, weight, kwargs = _inputs(shape, variant, device, torch.float64)
    center = _center(shape, device, torch.float64)
    names = [k for k in ("bias",) + PROLOGUE if k in kwargs]
    fixed = {k: v for k, v in kwargs.items() if k not in names}

    def fn(x, scale, shift, weight, center, *rest):
        return adain_conv2d(x, scale, shift, weight, up=up, center=center, impl=impl, **fixed, **dict(zip(names, rest)))

    inputs = [x, scale, shift, weight, center] + [kwargs[k] for k in names]
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)


@impl_device
@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_center_makes_constant_channels_exact(impl, device, up, layout):
    require(impl, device)
    # The official initialisation's case: every channel constant (zero noise weights), so the
    # stats give mean == t and rstd = 1 / sqrt(1e-8) = 1e4 exactly-ish. Centred, the prologue
    # is 1e4 * (1 + s) * 0 + b = b exactly; with weights in {-2..2} and b in multiples of 1/8
    # every product and partial sum of the conv is exact in float32 (|sums| < 2^10), so the
    # output equals F.conv2d of b broadcast bit for bit in any summation order.
    n, c, h, w, cout = 2, 17, 5, 6, 4
    g = torch.Generator().manual_seed(12)
    x = torch.randn(n, c, 1, 1, generator=g).expand(n, c, h, w).contiguous().to(device)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    noise = torch.randn(n, 1, h, w, generator=g).to(device)
    kwargs = dict(
        noise=noise,
        noise_weight=torch.zeros(c, device=device),
        act_bias=torch.randn(c, generator=g).to(device),
        alpha=0.2,
    )
    style = torch.cat((torch.randn(n, c, generator=g), torch.randint(-16, 17, (n, c), generator=g) / 8.0), dim=1).to(
        device
    )
    weight = torch.randint(-2, 3, (cout, c, 3, 3), generator=g).float().to(device)
    stats = adain_stats(x, eps=1e-8, impl=impl, **kwargs)
    center, scale, shift = adain_center_scale_shift(stats, style)
    assert torch.equal(shift, style[:, c:])
    ours = adain_conv2d(x, scale, shift, weight, up=up, center=center, impl=impl, **kwargs)
    b = style[:, c:, None, None].expand(n, c, 2 * h if up else h, 2 * w if up else w)
    truth = F.conv2d(b, weight, padding=1)
    assert torch.equal(ours, truth), (ours - truth).abs().max().item()


def test_center_scale_shift_is_the_scale_shift_affine():
    # (center, scale, shift) and (scale, shift) are the same affine: scale * (t - mean) + b
    # == scale * t + (b - mean * scale), in float64 to 1e-12 of the values' size.
    g = torch.Generator().manual_seed(13)
    n, c = 3, 5
    stats = torch.cat((torch.randn(n, c, generator=g), torch.rand(n, c, generator=g) + 0.5), dim=1).double()
    style = torch.randn(n, 2 * c, generator=g).double()
    t = torch.randn(n, c, 7, generator=g).double()
    center, scale, shift = adain_center_scale_shift(stats, style)
    scale2, shift2 = adain_scale_shift(stats, style)
    torch.testing.assert_close(scale, scale2, rtol=0, atol=0)
    torch.testing.assert_close(center, stats[:, :c], rtol=0, atol=0)
    torch.testing.assert_close(shift, style[:, c:], rtol=0, atol=0)
    torch.testing.assert_close(
        scale[..., None] * (t - center[..., None]) + shift[..., None],
        scale2[..., None] * t + shift2[..., None],
        rtol=1e-12,
        atol=1e-12,
    )
