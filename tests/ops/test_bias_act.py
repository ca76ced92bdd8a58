import math

import pytest
import torch
from support import FP32_GRAD
from support import FP32_OUT
from support import LAYOUTS
from support import assert_compiled_matches_ref
from support import assert_in_layout
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

from alae_fast.ops import bias_act
from alae_fast.ops import bias_act_ref

OP, BACKWARD_OP = op_overloads("bias_act")

# Images of odd sizes, the mapping network's [N, C] and a 3-D and 5-D input (any rank >= 2).
SHAPES = [(1, 1, 1, 1), (5, 3, 4, 9), (1, 17, 33, 1), (5, 1, 9, 4), (1, 3), (5, 17), (5, 3, 9), (1, 3, 2, 1, 4)]
# (alpha, gain): the layers' lrelu, with the He gain, plain bias (identity) and ReLU.
ACTIVATIONS = [(0.2, 1.0), (0.2, math.sqrt(2.0)), (1.0, 1.0), (0.0, 2.0)]
# opcheck runs each op many times (and traces it): three (N, layout) samples.
OPCHECK_CASES = [(1, "contiguous"), (5, "non-contiguous"), (5, "channels_last")]


def _check_parity(x, b, alpha, gain, impl, seed=7):
    """Values and the gradients of x and b for a random upstream gradient; returns ours and
    the gradient of x."""
    x.requires_grad_()
    if b is not None:
        b.requires_grad_()
    ours = bias_act(x, b, alpha=alpha, gain=gain, impl=impl)
    ref = bias_act_ref(x, b, alpha=alpha, gain=gain)
    assert ours.shape == x.shape and ours.dtype == x.dtype
    torch.testing.assert_close(ours, ref, **FP32_OUT)
    # In x's layout, as the next layer's backward would hand it over.
    upstream = torch.empty_like(x).copy_(_randn(x.shape, x.device, x.dtype, seed))
    inputs = (x,) if b is None else (x, b)
    grads = torch.autograd.grad(ours, inputs, upstream)
    for g, rg in zip(grads, torch.autograd.grad(ref, inputs, upstream)):
        assert g.shape == rg.shape
        torch.testing.assert_close(g, rg, **FP32_GRAD)
    return ours, grads[0]


# Every shape with the layers' activation, every activation on an image and a 2-D input.
CASES = [(shape, ACTIVATIONS[1]) for shape in SHAPES] + [
    (shape, act) for shape in [(5, 3, 4, 9), (5, 17)] for act in ACTIVATIONS if act != ACTIVATIONS[1]
]


@impl_device
@pytest.mark.parametrize("shape,activation", CASES, ids=[f"{_ids(s)}-{a:g}-{g:.3g}" for s, (a, g) in CASES])
def test_matches_reference_values_and_gradients(impl, device, shape, activation):
    alpha, gain = activation
    require(impl, device)
    _check_parity(_randn(shape, device), _randn(shape[1:2], device, seed=1), alpha, gain, impl)


@impl_device
@pytest.mark.parametrize("shape", [(5, 3, 4, 9), (1, 17)], ids=_ids)
def test_without_bias(impl, device, shape):
    require(impl, device)
    _check_parity(_randn(shape, device), None, 0.2, math.sqrt(2.0), impl)


@impl_device
@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 1, 1), (5, 1), (1, 3, 1, 1)], ids=_ids)
def test_expanded_upstream_gradient(impl, device, shape):
    """loss = y.sum(): the upstream gradient is an expanded scalar, every stride 0 (and a
    tensor of one element counts as contiguous whatever its strides)."""
    require(impl, device)
    x = _randn(shape, device).requires_grad_()
    b = _randn(shape[1:2], device, seed=1).requires_grad_()
    grads = torch.autograd.grad(bias_act(x, b, impl=impl).sum(), (x, b))
    for g, rg in zip(grads, torch.autograd.grad(bias_act_ref(x, b).sum(), (x, b))):
        torch.testing.assert_close(g, rg, **FP32_GRAD)


@impl_device
def test_known_values(impl, device):
    require(impl, device)
    x = torch.tensor([[-2.0, -0.5, 3.0], [1.0, -4.0, 0.5]], device=device, requires_grad=True)
    b = torch.tensor([1.0, 0.5, -1.0], device=device, requires_grad=True)
    y = bias_act(x, b, alpha=0.25, gain=2.0, impl=impl)
    # x + b = [[-1, 0, 2], [2, -3.5, -0.5]]; negatives scaled by alpha * gain = 0.5, positives
    # by gain = 2: every product is exact in float32.
    assert y.tolist() == [[-0.5, 0.0, 4.0], [4.0, -1.75, -0.25]]
    gx, gb = torch.autograd.grad(y, (x, b), torch.ones_like(y))
    # The slope at x + b == 0 is alpha's, as in leaky_relu's backward.
    assert gx.tolist() == [[0.5, 0.5, 2.0], [2.0, 0.5, 0.5]]
    assert gb.tolist() == [2.5, 1.0, 2.5]


@impl_device
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n", [1, 5])
def test_layouts(impl, device, n, layout):
    require(impl, device)
    x = _image((n, 3, 9, 4), layout, device)
    y, g = _check_parity(x, _randn((3,), device, seed=1), 0.2, math.sqrt(2.0), impl)
    # The output and the gradient come in the layout the kernel read x in.
    assert_in_layout((y, g), layout)


@impl_device
def test_non_contiguous_bias_and_2d_input(impl, device):
    require(impl, device)
    x = _randn((17, 5), device).t()  # [5, 17] transposed view
    b = _randn((17, 2), device, seed=1)[:, 1]  # strided bias
    assert not x.is_contiguous() and not b.is_contiguous()
    _check_parity(x, b, 0.2, 1.0, impl)


@impl_device
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_low_precision_within_twice_pytorch_error(impl, device, dtype, layout):
    require(impl, device)
    x = _image((5, 17, 9, 4), layout, device, dtype).requires_grad_()
    b = _randn((17,), device, dtype, seed=1).requires_grad_()
    gain = math.sqrt(2.0)
    assert_low_precision_op_close(
        lambda x, b: bias_act(x, b, alpha=0.2, gain=gain, impl=impl),
        lambda x, b: bias_act_ref(x, b, alpha=0.2, gain=gain),
        (x, b),
        _image((5, 17, 9, 4), layout, device, dtype, seed=2),
    )


@impl_device
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gradcheck_and_gradgradcheck_float64(impl, device, layout):
    require(impl, device)
    x = _image((2, 3, 5, 4), layout, device, torch.float64).requires_grad_()
    b = _randn((3,), device, torch.float64, seed=1).requires_grad_()
    fn = lambda x, b: bias_act(x, b, alpha=0.2, gain=math.sqrt(2.0), impl=impl)  # noqa: E731
    # 123 inputs: fast mode (random projections of the Jacobians) keeps the interpreted Triton
    # kernels quick; the full Jacobians are checked on the small case below.
    assert torch.autograd.gradcheck(fn, (x, b), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x, b), fast_mode=True)


@impl_device
def test_gradcheck_and_gradgradcheck_float64_full_jacobian(impl, device):
    require(impl, device)
    x = _randn((2, 3), device, torch.float64).requires_grad_()
    b = _randn((3,), device, torch.float64, seed=1).requires_grad_()
    fn = lambda x, b: bias_act(x, b, alpha=0.2, gain=1.5, impl=impl)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def _critic(act):
    """A tiny critic around ``act``: conv (4-D reals) or matmul, act, tanh, weighted sum."""

    def d(x, w, b, v):
        if x.dim() == 4:
            return (torch.tanh(act(F.conv2d(x, w, padding=1), b)) * v).sum(dim=(1, 2, 3))
        return torch.tanh(act(x @ w, b)) @ v

    return d


@impl_device
@pytest.mark.parametrize("critic,layout", [("conv", "contiguous"), ("conv", "channels_last"), ("linear", "contiguous")])
def test_r1_chain_matches_reference(impl, device, critic, layout):
    require(impl, device)
    n, c, h, w = 3, 3, 5, 4
    if critic == "conv":
        shape, shapes = (n, c, h, w), [(4, c, 3, 3), (4,), (4, h, w)]
    else:
        shape, shapes = (n, 9), [(9, 6), (6,), (6,)]
    acts = (
        lambda t, b: bias_act(t, b, alpha=0.2, gain=math.sqrt(2.0), impl=impl),
        lambda t, b: bias_act_ref(t, b, alpha=0.2, gain=math.sqrt(2.0)),
    )
    make_x = lambda: _image(shape, layout, device) if critic == "conv" else _randn(shape, device)  # noqa: E731
    assert_r1_chain_close(*r1_chain([_critic(act) for act in acts], make_x, shapes, device), layout=layout)


@impl_device
@pytest.mark.parametrize("n,layout", OPCHECK_CASES)
def test_opcheck(impl, device, n, layout):
    require(impl, device)
    x = _image((n, 3, 5, 4), layout, device).requires_grad_()
    b = _randn((3,), device, seed=1).requires_grad_()
    torch.library.opcheck(OP, (x, b, 0.2, math.sqrt(2.0), impl))
    y = OP(x.detach(), b.detach(), 0.2, math.sqrt(2.0), impl)
    grad = _image((n, 3, 5, 4), layout, device, seed=2).requires_grad_()
    torch.library.opcheck(BACKWARD_OP, (grad, y, 0.2, math.sqrt(2.0), impl))


@impl_device
def test_opcheck_2d_and_no_bias(impl, device):
    require(impl, device)
    x = _randn((5, 17), device).requires_grad_()
    torch.library.opcheck(OP, (x, None, 0.2, 1.0, impl))
    torch.library.opcheck(OP, (x, _randn((17,), device, seed=1), 1.0, 2.0, impl))
    y = OP(x.detach(), None, 0.2, 1.0, impl)
    torch.library.opcheck(BACKWARD_OP, (_randn((5, 17), device, seed=2), y, 0.2, 1.0, impl))


@impl_device
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_torch_compile_fullgraph(impl, device, layout):
    require(impl, device)
    x = _image((5, 3, 4, 9), layout, device).requires_grad_()
    b = _randn((3,), device, seed=1).requires_grad_()
    upstream = _image((5, 3, 4, 9), layout, device, seed=2)
    assert_compiled_matches_ref(
        lambda x, b: bias_act(x, b, alpha=0.2, gain=math.sqrt(2.0), impl=impl) * upstream,
        lambda x, b: bias_act_ref(x, b, alpha=0.2, gain=math.sqrt(2.0)) * upstream,
        (x, b),
    )


def test_bad_inputs_raise_clear_errors():
    # Every check runs before the impl is resolved, so one run covers all impls.
    x, b = torch.zeros(2, 3, 4, 4), torch.zeros(3)
    with pytest.raises(ValueError, match=r"bias_act: x must have at least 2 dims \[N, C, \.\.\.\], got shape \(5,\)"):
        bias_act(torch.zeros(5), None)
    with pytest.raises(ValueError, match=r"bias_act: b must have shape \[C\] = \[3\] \(x's dim 1\), got \(4,\)"):
        bias_act(x, torch.zeros(4))
    with pytest.raises(ValueError, match=r"bias_act: b must be 1-D \[C\] = \[3\], got shape \(1, 3\)"):
        bias_act(x, torch.zeros(1, 3))
    with pytest.raises(TypeError, match=r"bias_act: x is torch.float32 but b is torch.float64"):
        bias_act(x, b.double())
    with pytest.raises(TypeError, match=r"bias_act: x must be a floating-point tensor.*int64"):
        bias_act(torch.zeros(2, 3, dtype=torch.long), None)
    with pytest.raises(TypeError, match=r"bias_act: b must be a floating-point tensor.*int32"):
        bias_act(x, torch.zeros(3, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"bias_act: x is on cpu but b is on meta"):
        bias_act(x, torch.zeros(3, device="meta"))
    with pytest.raises(ValueError, match=r"bias_act: alpha must be >= 0.*got -0.2"):
        bias_act(x, b, alpha=-0.2)
    with pytest.raises(ValueError, match=r"bias_act: gain must be > 0, got 0.0"):
        bias_act(x, b, gain=0.0)
    with pytest.raises(ValueError, match=r"bias_act: gain must be > 0, got -1.0"):
        bias_act(x, b, gain=-1.0)
    with pytest.raises(ValueError, match=r"bias_act: alpha must be finite, got nan"):
        bias_act(x, b, alpha=float("nan"))
    with pytest.raises(TypeError, match=r"bias_act: gain must be a Python float, got Tensor"):
        bias_act(x, b, gain=torch.tensor(1.0))
    with pytest.raises(TypeError, match=r"bias_act: x must be a torch.Tensor, got list"):
        bias_act([[0.0, 1.0]], None)
    with pytest.raises(TypeError, match=r"bias_act: b must be a torch.Tensor, got list"):
        bias_act(x, [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"bias_act: x must not be empty"):
        bias_act(torch.zeros(0, 3), None)
