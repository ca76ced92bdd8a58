import math

import constant_rows
import pytest
import torch
from support import FP32_GRAD
from support import FP32_OUT
from support import LAYOUTS
from support import assert_compiled_matches_ref
from support import assert_low_precision_op_close
from support import assert_r1_chain_close
from support import image as _image
from support import impl_device
from support import op_overloads
from support import r1_chain
from support import randn as _randn
from support import require
from support import shape_id as _ids
from torch.nn import functional as F

from alae_fast.ops import encode_norm
from alae_fast.ops import encode_norm_ref

OP, BACKWARD_OP = op_overloads("encode_norm")

# H * W > 1: the reference instance norm refuses single-pixel rows.
SHAPES = [(1, 1, 1, 4), (5, 3, 4, 9), (1, 17, 33, 1), (5, 1, 9, 4), (1, 3, 9, 33)]
# opcheck runs each op many times (and traces it): three (N, layout) samples.
OPCHECK_CASES = [(1, "contiguous"), (5, "non-contiguous"), (5, "channels_last")]


def _inputs(shape, device, dtype=torch.float32, layout="contiguous"):
    x = _image(shape, layout, device, dtype).requires_grad_()
    bias = (0.5 * _randn(shape[1:2], device, dtype, seed=1)).requires_grad_()
    return x, bias


def _check_parity(x, bias, impl, alpha=0.2, eps=1e-5, carry=("y", "style")):
    """Values, and the gradients of x and bias for random upstream gradients on the outputs
    named in ``carry``."""
    ours = encode_norm(x, bias, alpha=alpha, eps=eps, impl=impl)
    ref = encode_norm_ref(x, bias, alpha=alpha, eps=eps)
    n, c = x.shape[:2]
    for o, r, shape in zip(ours, ref, (x.shape, (n, 2 * c))):
        assert o.shape == shape and o.dtype == x.dtype
        torch.testing.assert_close(o, r, **FP32_OUT)
    picked = [i for i, name in enumerate(("y", "style")) if name in carry]
    upstream = [_randn(ours[i].shape, x.device, x.dtype, seed=5 + i) for i in picked]
    grads = torch.autograd.grad([ours[i] for i in picked], (x, bias), upstream)
    ref_grads = torch.autograd.grad([ref[i] for i in picked], (x, bias), upstream)
    for g, rg in zip(grads, ref_grads):
        assert g.shape == rg.shape and g.dtype == rg.dtype
        torch.testing.assert_close(g, rg, **FP32_GRAD)
    return ours, grads


@impl_device
@pytest.mark.parametrize("alpha,eps", [(0.2, 1e-5), (1.0, 1e-8)])
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_matches_reference_values_and_gradients(impl, device, shape, alpha, eps):
    require(impl, device)
    _check_parity(*_inputs(shape, device), impl, alpha=alpha, eps=eps)


@impl_device
@pytest.mark.parametrize("carry", ["y", "style"])
def test_gradient_from_one_output_alone(impl, device, carry):
    require(impl, device)
    _check_parity(*_inputs((5, 3, 4, 9), device), impl, carry=(carry,))


@impl_device
def test_known_values(impl, device):
    require(impl, device)
    # Row 0 is 3 + ramp(0..7) (all positive, bias 0.5): mean 3.5 + 3.5, population std of
    # a ramp of 8 = sqrt(63 / 12). Row 1 is -(1 + ramp) - 0.5, all negative: alpha scales it.
    ramp = torch.arange(8.0, device=device).view(2, 4)
    x = torch.stack((3.0 + ramp, -1.0 - ramp)).view(1, 2, 2, 4)
    bias = torch.tensor([0.5, -0.5], device=device)
    y, style = encode_norm(x, bias, alpha=0.25, eps=1e-5, impl=impl)
    std = math.sqrt(63 / 12)
    expected_style = torch.tensor([[7.0, -0.25 * 5.0, std, 0.25 * std]], device=device)
    torch.testing.assert_close(style, expected_style, **FP32_OUT)
    centred = ramp - 3.5
    expected_y = torch.stack(
        (centred / math.sqrt(std**2 + 1e-5), -0.25 * centred / math.sqrt((0.25 * std) ** 2 + 1e-5))
    )
    torch.testing.assert_close(y, expected_y.view(1, 2, 2, 4), **FP32_OUT)


@impl_device
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n", [1, 5])
def test_layouts(impl, device, n, layout):
    require(impl, device)
    x, bias = _inputs((n, 3, 9, 4), device, layout=layout)
    (y, style), _ = _check_parity(x, bias, impl)
    assert y.is_contiguous() and style.is_contiguous()


@impl_device
def test_non_contiguous_bias(impl, device):
    require(impl, device)
    x, _ = _inputs((5, 3, 4, 9), device)
    bias = _randn((3, 2), device, seed=1)[:, 0].requires_grad_()
    assert not bias.is_contiguous()
    _check_parity(x, bias, impl)


@impl_device
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_stats_output_of_the_registered_op(impl, device, dtype):
    require(impl, device)
    x, bias = (t.detach() for t in _inputs((5, 3, 4, 9), device, dtype))
    _, style, stats = OP(x, bias, 0.2, 1e-5, impl)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    assert stats.shape == (5, 9) and stats.dtype == acc
    # The style output is the first two thirds of the stats, rounded to x's dtype.
    assert torch.equal(style, stats[:, :6].to(dtype))
    a = F.leaky_relu(x.double() + bias.double().view(1, -1, 1, 1), 0.2)
    var, mean = torch.var_mean(a, dim=(2, 3), correction=0)
    # float16 inputs: the accumulation is float32, but allow for stats of the rounded t.
    tol = {
        torch.float16: dict(rtol=1e-3, atol=1e-3),
        torch.float32: FP32_OUT,
        torch.float64: dict(rtol=1e-12, atol=1e-12),
    }[dtype]
    expected = torch.cat((mean, var.sqrt(), (var + 1e-5).rsqrt()), 1).to(acc)
    torch.testing.assert_close(stats, expected, **tol)


@impl_device
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_within_twice_pytorch_error(impl, device, dtype):
    require(impl, device)
    assert_low_precision_op_close(
        lambda x, bias: encode_norm(x, bias, impl=impl),
        encode_norm_ref,
        _inputs((5, 17, 9, 4), device, dtype),
        (_randn((5, 17, 9, 4), device, dtype, seed=5), _randn((5, 34), device, dtype, seed=6)),
    )


def _fn(impl, outputs=(0, 1)):
    def fn(x, bias):
        result = encode_norm(x, bias, alpha=0.2, eps=1e-5, impl=impl)
        return tuple(result[i] for i in outputs)

    return fn


@impl_device
@pytest.mark.parametrize("outputs", [(0, 1), (0,), (1,)], ids=["both", "y", "style"])
def test_gradcheck_and_gradgradcheck_float64(impl, device, outputs):
    require(impl, device)
    x, bias = _inputs((2, 3, 5, 4), device, torch.float64)
    # 123 inputs: fast mode keeps the interpreted Triton kernels quick; the full Jacobians are
    # checked on the small case below.
    assert torch.autograd.gradcheck(_fn(impl, outputs), (x, bias), fast_mode=True)
    assert torch.autograd.gradgradcheck(_fn(impl, outputs), (x, bias), fast_mode=True)


@impl_device
def test_gradcheck_and_gradgradcheck_float64_full_jacobian(impl, device):
    require(impl, device)
    x, bias = _inputs((1, 1, 1, 3), device, torch.float64)
    assert torch.autograd.gradcheck(_fn(impl), (x, bias))
    assert torch.autograd.gradgradcheck(_fn(impl), (x, bias))


@impl_device
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_r1_chain_matches_reference(impl, device, layout):
    require(impl, device)
    n, c, h, w = 3, 3, 5, 4

    def critic(norm):
        # The encoder block: conv -> encode_norm; the critic reads both outputs.
        def d(x, conv, bias, v, u):
            y, style = norm(F.conv2d(x, conv, padding=1), bias)
            return (torch.tanh(y) * v).sum(dim=(1, 2, 3)) + torch.tanh(style) @ u

        return d

    assert_r1_chain_close(
        *r1_chain(
            (critic(lambda t, b: encode_norm(t, b, impl=impl)), critic(encode_norm_ref)),
            lambda: _image((n, c, h, w), layout, device),
            [(4, c, 3, 3), (4,), (4, h, w), (8,)],
            device,
        )
    )


@impl_device
@pytest.mark.parametrize("n,layout", OPCHECK_CASES)
def test_opcheck(impl, device, n, layout):
    require(impl, device)
    x, bias = _inputs((n, 3, 5, 4), device, layout=layout)
    torch.library.opcheck(OP, (x, bias, 0.2, 1e-5, impl))
    x, bias = x.detach(), bias.detach()
    _, _, stats = OP(x, bias, 0.2, 1e-5, impl)
    grad_y = _image((n, 3, 5, 4), layout, device, seed=2)
    grad_style = _randn((n, 6), device, seed=3)
    torch.library.opcheck(BACKWARD_OP, (grad_y, grad_style, x, bias, stats, 0.2, 1e-5, impl))


@impl_device
def test_opcheck_of_the_differentiable_backward(impl, device):
    require(impl, device)
    # Every input requiring grad: also checks the backward's own autograd (second order).
    # Slow (AOT tracing of the closed-form double backward), so one case.
    x, bias = _inputs((5, 3, 5, 4), device)
    _, _, stats = OP(x.detach(), bias.detach(), 0.2, 1e-5, impl)
    grad_y = _randn((5, 3, 5, 4), device, seed=2).requires_grad_()
    grad_style = _randn((5, 6), device, seed=3).requires_grad_()
    torch.library.opcheck(BACKWARD_OP, (grad_y, grad_style, x, bias, stats, 0.2, 1e-5, impl))


@impl_device
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_torch_compile_fullgraph(impl, device, layout):
    require(impl, device)
    x, bias = _inputs((5, 3, 4, 9), device, layout=layout)
    gy, gs = _randn((5, 3, 4, 9), device, seed=5), _randn((5, 6), device, seed=6)

    def weighted(op):
        def fn(x, bias):
            y, style = op(x, bias)
            return (y * gy).sum() + (style * gs).sum()

        return fn

    assert_compiled_matches_ref(
        weighted(lambda x, bias: encode_norm(x, bias, impl=impl)), weighted(encode_norm_ref), (x, bias)
    )


@impl_device
def test_constant_row_with_gradient_on_y_alone(impl, device):
    # std == 0 on channel 0 and no gradient on the style: no 0 / 0 from the std term.
    require(impl, device)
    x = torch.full((1, 2, 2, 2), 0.75, device=device)
    x[0, 1] = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    x.requires_grad_()
    bias = torch.zeros(2, device=device, requires_grad=True)
    y, _ = encode_norm(x, bias, impl=impl)
    yr, _ = encode_norm_ref(x, bias)
    upstream = _randn(y.shape, device, seed=1)
    (g,) = torch.autograd.grad(y, x, upstream)
    (rg,) = torch.autograd.grad(yr, x, upstream)
    torch.testing.assert_close(g, rg, **FP32_GRAD)


def test_bad_inputs_raise_clear_errors():
    # Every check runs before the impl is resolved, so one run covers all impls.
    x, bias = torch.zeros(2, 3, 4, 4), torch.zeros(3)

    def check(exc, match, *args, **kwargs):
        with pytest.raises(exc, match="encode_norm: " + match):
            encode_norm(*args, **kwargs)

    check(ValueError, r"x must be 4-D \[N, C, H, W\], got shape \(3, 4, 4\)", torch.zeros(3, 4, 4), bias)
    check(ValueError, r"bias must have shape \[C\] = \[3\], got \(4,\)", x, torch.zeros(4))
    check(ValueError, r"bias must be 1-D \[C\] = \[3\], got shape \(1, 3\)", x, torch.zeros(1, 3))
    check(TypeError, r"x is torch.float32 but bias is torch.float16", x, bias.half())
    check(TypeError, r"x must be a floating-point tensor.*torch.int64", x.long(), bias)
    check(ValueError, r"x is on cpu but bias is on meta", x, bias.to("meta"))
    check(ValueError, r"alpha and eps must be >= 0, got alpha=-0.2", x, bias, alpha=-0.2)
    check(ValueError, r"alpha and eps must be >= 0, .*eps=-1e-05", x, bias, eps=-1e-5)
    check(ValueError, r"eps must be finite, got inf", x, bias, eps=float("inf"))
    check(TypeError, r"alpha must be a Python float, got str", x, bias, alpha="0.2")
    check(TypeError, r"x must be a torch.Tensor, got list", [[0.0]], bias)
    check(TypeError, r"bias must be a torch.Tensor, got NoneType", x, None)


@impl_device
def test_third_order_raises_instead_of_wrong_numbers(impl, device):
    require(impl, device)
    x = _randn((2, 3, 4, 5), device, torch.float64).requires_grad_()
    bias = _randn((3,), device, torch.float64, seed=1).requires_grad_()
    y, style = encode_norm(x, bias, impl=impl)
    loss = y.pow(3).sum() + style.pow(2).sum()
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    # The second derivative itself works (R1); asking for it with a graph (to go on to a third
    # order) is refused.
    (gb,) = torch.autograd.grad(g.pow(2).sum(), bias, retain_graph=True)
    assert torch.isfinite(gb).all() and gb.abs().max() > 0
    with pytest.raises(RuntimeError, match="second-order"):
        torch.autograd.grad(g.pow(2).sum(), bias, create_graph=True)


@impl_device
@pytest.mark.parametrize("shape", constant_rows.SHAPES, ids=_ids)
def test_constant_rows_normalise_to_exactly_zero(impl, device, shape):
    require(impl, device)
    # A constant row has x - mean == 0 and var == 0 exactly: normalised output 0, style std 0
    # and style mean the row's value (a residue in the mean would come out times 1/sqrt(eps)).
    x, kwargs, rows = constant_rows.constant_row_inputs(shape, device, noise=False)
    bias = kwargs["bias"]
    c = shape[1]
    y, style = encode_norm(x, bias, alpha=0.2, eps=1e-5, impl=impl)
    for i, j in rows:
        a = constant_rows.activation(x, kwargs, 0.2, i, j)
        off = y[i, j].abs().max().item()
        assert torch.equal(y[i, j], torch.zeros_like(y[i, j])), f"row ({i}, {j}): y {off:.3g}"
        assert style[i, c + j].item() == 0.0, f"row ({i}, {j}): std {style[i, c + j].item()}"
        assert style[i, j].item() == a.item(), f"row ({i}, {j}): mean {style[i, j].item()}"
    ref_y, ref_style = encode_norm_ref(x.double(), bias.double(), alpha=0.2, eps=1e-5)
    other = constant_rows.other_rows_mask(shape, rows, device)
    torch.testing.assert_close(y[other].double(), ref_y[other], **FP32_OUT)
    other_style = torch.cat((other, other), dim=1)
    torch.testing.assert_close(style[other_style].double(), ref_style[other_style], **FP32_OUT)
