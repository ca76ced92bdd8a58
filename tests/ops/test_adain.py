import constant_rows
import pytest
import torch
from support import CL
from support import FP32_GRAD
from support import FP32_OUT
from support import assert_compiled_matches_ref
from support import assert_low_precision_op_close
from support import impl_device
from support import op_overloads
from support import randn as _randn
from support import require
from support import shape_id as _ids

from alae_fast.ops import adain
from alae_fast.ops import adain_ref

OP, BACKWARD_OP = op_overloads("adain")

# H * W > 1: the reference instance norm refuses single-pixel rows.
SHAPES = [(1, 1, 1, 4), (5, 3, 4, 9), (1, 17, 33, 1), (5, 1, 9, 4), (1, 3, 9, 33)]
# Which of noise (batch N or batch 1, broadcast) and bias are given.
VARIANTS = ["noise+bias", "noise", "bias", "none", "noise1+bias"]


def _inputs(shape, variant, device, dtype=torch.float32):
    """(x, style, kwargs) with every differentiable input requiring grad; noise is constant."""
    n, c, h, w = shape
    x = _randn(shape, device, dtype).requires_grad_()
    style = (0.5 * _randn((n, 2 * c), device, dtype, seed=1)).requires_grad_()
    kwargs = {}
    if variant.startswith("noise"):
        kwargs["noise"] = _randn((1 if variant.startswith("noise1") else n, 1, h, w), device, dtype, seed=2)
        kwargs["noise_weight"] = (0.5 * _randn((c,), device, dtype, seed=3)).requires_grad_()
    if variant.endswith("bias"):
        kwargs["bias"] = (0.5 * _randn((c,), device, dtype, seed=4)).requires_grad_()
    return x, style, kwargs


def _differentiable(x, style, kwargs):
    return [x, style] + [kwargs[k] for k in ("noise_weight", "bias") if k in kwargs]


def _check_parity(x, style, kwargs, impl, alpha=0.2, eps=1e-8):
    ours = adain(x, style, alpha=alpha, eps=eps, impl=impl, **kwargs)
    ref = adain_ref(x, style, alpha=alpha, eps=eps, **kwargs)
    assert ours.shape == x.shape and ours.dtype == x.dtype and ours.is_contiguous()
    torch.testing.assert_close(ours, ref, **FP32_OUT)
    upstream = _randn(x.shape, x.device, x.dtype, seed=7)
    inputs = _differentiable(x, style, kwargs)
    for g, rg in zip(torch.autograd.grad(ours, inputs, upstream), torch.autograd.grad(ref, inputs, upstream)):
        assert g.shape == rg.shape and g.dtype == rg.dtype
        torch.testing.assert_close(g, rg, **FP32_GRAD)


# Every shape with noise and bias, every variant on two shapes.
CASES = [(shape, "noise+bias") for shape in SHAPES] + [
    (shape, v) for shape in [(5, 3, 4, 9), (5, 1, 9, 4)] for v in VARIANTS if v != "noise+bias"
]


@impl_device
@pytest.mark.parametrize("shape,variant", CASES, ids=[f"{_ids(s)}-{v}" for s, v in CASES])
def test_matches_reference_values_and_gradients(impl, device, shape, variant):
    require(impl, device)
    _check_parity(*_inputs(shape, variant, device), impl)


@impl_device
@pytest.mark.parametrize("alpha,eps,variant", [(1.0, 1e-5, "noise"), (0.0, 1e-8, "noise+bias")])
def test_other_activations_and_eps(impl, device, alpha, eps, variant):
    require(impl, device)
    # (With the identity activation the bias gradient is zero up to rounding: no bias there.)
    _check_parity(*_inputs((5, 3, 4, 9), variant, device), impl, alpha=alpha, eps=eps)


@impl_device
def test_known_values(impl, device):
    require(impl, device)
    # One row of t = [1, 2, 3, 4] + noise * 0.5 + bias: with noise [-2, 0, 0, 2] and bias 1,
    # t = [1, 3, 4, 6]: mean 3.5, population variance 3.25. Scale 1 + 1 = 2, shift -1.
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], device=device).view(1, 1, 2, 2)
    noise = torch.tensor([-2.0, 0.0, 0.0, 2.0], device=device).view(1, 1, 2, 2)
    style = torch.tensor([[1.0, -1.0]], device=device)
    y = adain(
        x,
        style,
        noise=noise,
        noise_weight=torch.tensor([0.5], device=device),
        bias=torch.tensor([1.0], device=device),
        eps=1e-8,
        impl=impl,
    )
    t = torch.tensor([1.0, 3.0, 4.0, 6.0], dtype=torch.float64)
    expected = (t - 3.5) / (3.25 + 1e-8) ** 0.5 * 2.0 - 1.0
    torch.testing.assert_close(y.flatten(), expected.float().to(device), **FP32_OUT)


@impl_device
@pytest.mark.parametrize("layout", ["non-contiguous", "channels_last"])
def test_layouts(impl, device, layout):
    require(impl, device)
    n, c, h, w = 5, 3, 9, 4
    if layout == "channels_last":
        x = _randn((n, c, h, w), device).contiguous(memory_format=CL)
        noise = _randn((n, 1, h, w), device, seed=2).contiguous(memory_format=CL)
    else:
        x = _randn((n, c, w, h), device).transpose(2, 3)
        noise = _randn((n, 1, w, h), device, seed=2).transpose(2, 3)
    style = _randn((2 * c, n), device, seed=1).t()  # a transposed view
    nw = _randn((c, 2), device, seed=3)[:, 0]  # strided
    assert not x.is_contiguous() and not style.is_contiguous() and not nw.is_contiguous()
    _check_parity(
        x.requires_grad_(),
        style.requires_grad_(),
        dict(noise=noise, noise_weight=nw.requires_grad_(), bias=_randn((c,), device, seed=4).requires_grad_()),
        impl,
    )


@impl_device
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("variant", ["noise+bias", "none"])
def test_low_precision_within_twice_pytorch_error(impl, device, dtype, variant):
    require(impl, device)
    x, style, kwargs = _inputs((5, 17, 9, 4), variant, device, dtype)
    names = [k for k in ("noise_weight", "bias") if k in kwargs]
    noise = {"noise": kwargs["noise"]} if "noise" in kwargs else {}

    def call(fn):
        # The constant noise follows the inputs' dtype (float64 for the truth).
        return lambda x, style, *rest: fn(
            x, style, **dict(zip(names, rest)), **{k: v.to(x.dtype) for k, v in noise.items()}
        )

    assert_low_precision_op_close(
        call(lambda *a, **k: adain(*a, impl=impl, **k)),
        call(adain_ref),
        _differentiable(x, style, kwargs),
        _randn(x.shape, device, dtype, seed=7),
    )


def _fn(impl, kwargs):
    """adain of the differentiable inputs in _differentiable's order (noise fixed)."""
    names = [k for k in ("noise_weight", "bias") if k in kwargs]
    noise = kwargs.get("noise")

    def fn(x, style, *rest):
        extra = dict(zip(names, rest))
        if noise is not None:
            extra["noise"] = noise
        return adain(x, style, eps=1e-5, impl=impl, **extra)

    return fn


@impl_device
@pytest.mark.parametrize("variant", VARIANTS)
def test_gradcheck_float64(impl, device, variant):
    require(impl, device)
    x, style, kwargs = _inputs((2, 3, 5, 4), variant, device, torch.float64)
    # 120 inputs: fast mode keeps the interpreted Triton kernels quick; the full Jacobians are
    # checked on the small case below.
    assert torch.autograd.gradcheck(_fn(impl, kwargs), _differentiable(x, style, kwargs), fast_mode=True)


@impl_device
@pytest.mark.parametrize("variant", ["noise1+bias", "none"])
def test_gradcheck_float64_full_jacobian(impl, device, variant):
    require(impl, device)
    # Batch 2 where the noise of batch 1 is broadcast; else 1.
    shape = (2, 2, 1, 3) if variant.startswith("noise1") else (1, 2, 1, 3)
    x, style, kwargs = _inputs(shape, variant, device, torch.float64)
    assert torch.autograd.gradcheck(_fn(impl, kwargs), _differentiable(x, style, kwargs))


@impl_device
def test_second_order_gradients_raise(impl, device):
    require(impl, device)
    x, style, kwargs = _inputs((2, 3, 4, 4), "noise+bias", device)
    y = adain(x, style, impl=impl, **kwargs)
    (gx,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="first-order"):
        torch.autograd.grad(gx.square().sum(), style)
    (gs,) = torch.autograd.grad(y.sum(), style, create_graph=True)
    with pytest.raises(RuntimeError, match="first-order"):
        gs.sum().backward()


def test_reference_supports_second_order():
    x, style, kwargs = _inputs((1, 1, 2, 2), "noise+bias", "cpu", torch.float64)
    assert torch.autograd.gradgradcheck(_fn("ref", kwargs), _differentiable(x, style, kwargs))


@impl_device
@pytest.mark.parametrize("n,variant", [(1, "noise+bias"), (5, "noise1+bias"), (5, "none")])
def test_opcheck(impl, device, n, variant):
    require(impl, device)
    x, style, kwargs = _inputs((n, 3, 5, 4), variant, device)
    noise = kwargs.get("noise")
    if noise is not None:
        noise = noise.expand(n, 1, 5, 4)  # what the public op hands to the registered one
    nw, bias = kwargs.get("noise_weight"), kwargs.get("bias")
    torch.library.opcheck(OP, (x, style, noise, nw, bias, 0.2, 1e-8, impl))
    _, stats = OP(
        x.detach(),
        style.detach(),
        noise,
        None if nw is None else nw.detach(),
        None if bias is None else bias.detach(),
        0.2,
        1e-8,
        impl,
    )
    # The backward op is not differentiable (first-order only): its inputs do not require grad.
    detached = [None if t is None else t.detach() for t in (x, style, noise, nw, bias)]
    grad_y = _randn(x.shape, device, seed=7)
    torch.library.opcheck(BACKWARD_OP, (grad_y, *detached, stats, 0.2, 1e-8, impl))


@impl_device
@pytest.mark.parametrize("variant", ["noise+bias", "none"])
def test_torch_compile_fullgraph(impl, device, variant):
    require(impl, device)
    x, style, kwargs = _inputs((5, 3, 4, 9), variant, device)
    upstream = _randn(x.shape, device, seed=7)
    assert_compiled_matches_ref(
        lambda x, style: adain(x, style, impl=impl, **kwargs) * upstream,
        lambda x, style: adain_ref(x, style, **kwargs) * upstream,
        (x, style),
        _differentiable(x, style, kwargs),
    )


def test_bad_inputs_raise_clear_errors():
    # Every check runs before the impl is resolved, so one run covers all impls.
    n, c, h, w = 2, 3, 4, 4
    x, style = torch.zeros(n, c, h, w), torch.zeros(n, 2 * c)
    noise, nw, bias = torch.zeros(n, 1, h, w), torch.zeros(c), torch.zeros(c)
    with pytest.raises(ValueError, match=r"adain: x must be 4-D \[N, C, H, W\], got shape \(3, 4, 4\)"):
        adain(torch.zeros(c, h, w), style)
    with pytest.raises(ValueError, match=r"adain: style must have shape \[N, 2C\] = \[2, 6\], got \(2, 3\)"):
        adain(x, torch.zeros(n, c))
    with pytest.raises(ValueError, match=r"adain: style must be 2-D \[N, 2C\] = \[2, 6\], got shape \(12,\)"):
        adain(x, torch.zeros(2 * n * c))
    with pytest.raises(TypeError, match=r"adain: x is torch.float32 but style is torch.float64"):
        adain(x, style.double())
    with pytest.raises(TypeError, match=r"adain: x must be a floating-point tensor.*torch.int64"):
        adain(x.long(), style)
    with pytest.raises(ValueError, match=r"adain: x is on cpu but style is on meta"):
        adain(x, style.to("meta"))
    with pytest.raises(ValueError, match=r"adain: noise and noise_weight must be given together"):
        adain(x, style, noise=noise)
    with pytest.raises(ValueError, match=r"adain: noise and noise_weight must be given together"):
        adain(x, style, noise_weight=nw)
    with pytest.raises(
        ValueError,
        match=r"adain: noise must have shape \[N, 1, H, W\] = "
        r"\[2, 1, 4, 4\] \(or batch 1\), got \(2, 3, 4, 4\)",
    ):
        adain(x, style, noise=torch.zeros(n, c, h, w), noise_weight=nw)
    with pytest.raises(ValueError, match=r"adain: noise must have shape .* got \(3, 1, 4, 4\)"):
        adain(x, style, noise=torch.zeros(3, 1, h, w), noise_weight=nw)
    with pytest.raises(TypeError, match=r"adain: x is torch.float32 but noise is torch.float16"):
        adain(x, style, noise=noise.half(), noise_weight=nw)
    with pytest.raises(ValueError, match=r"adain: noise is a constant input and gets no gradient"):
        adain(x, style, noise=noise.clone().requires_grad_(), noise_weight=nw)
    with pytest.raises(ValueError, match=r"adain: noise_weight must have shape \[C\] = \[3\], got \(4,\)"):
        adain(x, style, noise=noise, noise_weight=torch.zeros(4))
    with pytest.raises(ValueError, match=r"adain: x is on cpu but noise_weight is on meta"):
        adain(x, style, noise=noise, noise_weight=nw.to("meta"))
    with pytest.raises(ValueError, match=r"adain: bias must have shape \[C\] = \[3\], got \(2,\)"):
        adain(x, style, bias=torch.zeros(2))
    with pytest.raises(ValueError, match=r"adain: bias must be 1-D \[C\] = \[3\], got shape \(1, 3\)"):
        adain(x, style, bias=torch.zeros(1, 3))
    with pytest.raises(TypeError, match=r"adain: x is torch.float32 but bias is torch.float64"):
        adain(x, style, bias=bias.double())
    with pytest.raises(ValueError, match=r"adain: alpha and eps must be >= 0, got alpha=-0.2"):
        adain(x, style, alpha=-0.2)
    with pytest.raises(ValueError, match=r"adain: alpha and eps must be >= 0, .*eps=-1e-08"):
        adain(x, style, eps=-1e-8)
    with pytest.raises(TypeError, match=r"adain: eps must be a Python float, got Tensor"):
        adain(x, style, eps=torch.tensor(1e-8))
    with pytest.raises(TypeError, match=r"adain: style must be a torch.Tensor, got list"):
        adain(x, [[0.0] * 6] * 2)
    with pytest.raises(TypeError, match=r"adain: bias must be a torch.Tensor, got tuple"):
        adain(x, style, bias=(0.0, 0.0, 0.0))


def _double(kwargs):
    return {k: v.double() for k, v in kwargs.items()}


@impl_device
@pytest.mark.parametrize("shape", constant_rows.SHAPES, ids=_ids)
@pytest.mark.parametrize("variant", ["noise+bias", "bias"])
def test_constant_rows_give_exactly_the_style_shift(impl, device, shape, variant):
    require(impl, device)
    # A constant row has x - mean == 0 exactly, so AdaIN's output is the style shift itself
    # (any residue in the mean would come out multiplied by 1 / sqrt(eps) = 1e4).
    x, kwargs, rows = constant_rows.constant_row_inputs(shape, device, noise="noise" in variant)
    n, c = shape[:2]
    style = 0.5 * _randn((n, 2 * c), device, seed=1)
    ours = adain(x, style, alpha=0.2, eps=1e-8, impl=impl, **kwargs)
    for i, j in rows:
        expected = style[i, c + j].expand(shape[2:])
        diff = (ours[i, j] - expected).abs().max().item()
        assert torch.equal(ours[i, j], expected), f"row ({i}, {j}) is off by {diff:.3g}"
    ref = adain_ref(x.double(), style.double(), alpha=0.2, eps=1e-8, **_double(kwargs))
    other = constant_rows.other_rows_mask(shape, rows, device)
    torch.testing.assert_close(ours[other].double(), ref[other], **FP32_OUT)
