import pytest
import torch
from support import CL
from support import FP32_GRAD
from support import FP32_OUT
from support import LAYOUTS
from support import assert_compiled_matches_ref
from support import assert_in_layout
from support import assert_low_precision_op_close
from support import assert_r1_chain_close
from support import image as _image
from support import impl_device
from support import r1_chain
from support import randn as _randn
from support import require
from support import shape_id as _ids
from torch.nn import functional as F

from alae_fast.ops import blur
from alae_fast.ops import blur_ref

OP = torch.ops.alae_fast.blur.default

SHAPES = [(1, 1, 1, 1), (5, 3, 4, 9), (1, 17, 33, 1), (5, 1, 1, 4), (1, 3, 9, 33)]
# opcheck runs each op many times (and traces it): three (N, layout) samples.
OPCHECK_CASES = [(1, "contiguous"), (5, "non-contiguous"), (5, "channels_last")]
# The filter: outer([1, 2, 1], [1, 2, 1]) / 16, every entry a power of two.
FILTER = [[0.0625, 0.125, 0.0625], [0.125, 0.25, 0.125], [0.0625, 0.125, 0.0625]]


def _check_parity(x, impl, seed=7):
    """Values and the gradient for a random upstream gradient; returns ours and the gradient."""
    x.requires_grad_()
    ours, ref = blur(x, impl=impl), blur_ref(x)
    assert ours.shape == x.shape and ours.dtype == x.dtype
    torch.testing.assert_close(ours, ref, **FP32_OUT)
    # In x's layout, as the next layer's backward would hand it over.
    upstream = torch.empty_like(x).copy_(_randn(x.shape, x.device, x.dtype, seed))
    (g,) = torch.autograd.grad(ours, x, upstream)
    (rg,) = torch.autograd.grad(ref, x, upstream)
    torch.testing.assert_close(g, rg, **FP32_GRAD)
    return ours, g


@impl_device
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_matches_reference_values_and_gradients(impl, device, shape):
    require(impl, device)
    _check_parity(_randn(shape, device), impl)


@impl_device
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 3, 1, 1), (2, 3, 1, 4)], ids=_ids)
def test_expanded_upstream_gradient(impl, device, shape):
    """loss = y.sum(): the upstream gradient is an expanded scalar, every stride 0."""
    require(impl, device)
    x = _randn(shape, device).requires_grad_()
    (g,) = torch.autograd.grad(blur(x, impl=impl).sum(), x)
    torch.testing.assert_close(g, torch.autograd.grad(blur_ref(x).sum(), x)[0], **FP32_GRAD)


@impl_device
def test_known_values(impl, device):
    require(impl, device)
    # A delta in the middle of a 5x5 image gives the filter; one in a corner its clipped
    # quarter (zero padding); ones give the filter's partial sums. All exact in float32.
    x = torch.zeros(2, 2, 5, 5, device=device)
    x[0, 0, 2, 2] = 1.0
    x[0, 1, 0, 0] = 1.0
    x[1] = 1.0
    y = blur(x, impl=impl)
    expected = torch.zeros(2, 2, 5, 5)
    expected[0, 0, 1:4, 1:4] = torch.tensor(FILTER)
    expected[0, 1, :2, :2] = torch.tensor(FILTER)[1:, 1:]
    edge = torch.tensor([0.75, 1.0, 1.0, 1.0, 0.75])
    expected[1] = torch.outer(edge, edge)
    assert torch.equal(y.cpu(), expected)
    # 1-pixel images keep the centre weight; a 1-pixel-wide column its vertical profile.
    one = torch.full((1, 3, 1, 1), 2.0, device=device)
    assert blur(one, impl=impl).flatten().tolist() == [0.5, 0.5, 0.5]
    column = torch.tensor([0.0, 4.0, 0.0], device=device).view(1, 1, 3, 1)
    assert blur(column, impl=impl).flatten().tolist() == [0.5, 1.0, 0.5]


@impl_device
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n", [1, 5])
def test_layouts(impl, device, n, layout):
    require(impl, device)
    y, g = _check_parity(_image((n, 3, 9, 4), layout, device), impl)
    # The output and the gradient come in the layout the kernel read x in.
    assert_in_layout((y, g), layout)


@impl_device
def test_channels_last_odd_sizes(impl, device):
    require(impl, device)
    x = _image((1, 17, 9, 33), "channels_last", device)
    y, _ = _check_parity(x, impl)
    assert y.is_contiguous(memory_format=CL)


@impl_device
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_low_precision_within_twice_pytorch_error(impl, device, dtype, layout):
    require(impl, device)
    x = _image((2, 17, 9, 4), layout, device, dtype).requires_grad_()
    assert_low_precision_op_close(
        lambda x: blur(x, impl=impl), blur_ref, (x,), _image((2, 17, 9, 4), layout, device, dtype, seed=2)
    )


@impl_device
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gradcheck_and_gradgradcheck_float64(impl, device, layout):
    require(impl, device)
    x = _image((2, 3, 5, 4), layout, device, torch.float64).requires_grad_()
    fn = lambda x: blur(x, impl=impl)  # noqa: E731
    # 120 inputs: fast mode keeps the interpreted Triton kernels quick; the full Jacobians are
    # checked on the small case below.
    assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


@impl_device
def test_gradcheck_and_gradgradcheck_float64_full_jacobian(impl, device):
    require(impl, device)
    x = _randn((1, 1, 2, 3), device, torch.float64).requires_grad_()
    fn = lambda x: blur(x, impl=impl)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def _critic(blur_fn):
    """conv -> blur -> tanh: the penalty's gradient runs through blur's double backward."""
    return lambda x, conv, v: (torch.tanh(blur_fn(F.conv2d(blur_fn(x), conv, padding=1))) * v).sum(dim=(1, 2, 3))


@impl_device
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_r1_chain_matches_reference(impl, device, layout):
    require(impl, device)
    n, c, h, w = 3, 3, 5, 4
    results = r1_chain(
        (_critic(lambda t: blur(t, impl=impl)), _critic(blur_ref)),
        lambda: _image((n, c, h, w), layout, device),
        [(4, c, 3, 3), (4, h, w)],
        device,
    )
    assert_r1_chain_close(*results, layout=layout)


@impl_device
@pytest.mark.parametrize("n,layout", OPCHECK_CASES)
def test_opcheck(impl, device, n, layout):
    require(impl, device)
    torch.library.opcheck(OP, (_image((n, 3, 5, 4), layout, device).requires_grad_(), impl))


@impl_device
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_torch_compile_fullgraph(impl, device, layout):
    require(impl, device)
    x = _image((5, 3, 4, 9), layout, device).requires_grad_()
    upstream = _image((5, 3, 4, 9), layout, device, seed=2)
    assert_compiled_matches_ref(lambda x: blur(x, impl=impl) * upstream, lambda x: blur_ref(x) * upstream, (x,))


def test_bad_inputs_raise_clear_errors():
    # Every check runs before the impl is resolved, so one run covers all impls.
    with pytest.raises(ValueError, match=r"blur: x must be 4-D \[N, C, H, W\], got shape \(3, 4, 4\)"):
        blur(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match=r"blur: x must be 4-D .* got shape \(1, 1, 1, 3, 3\)"):
        blur(torch.zeros(1, 1, 1, 3, 3))
    with pytest.raises(TypeError, match=r"blur: x must be a floating-point tensor.*torch.int64"):
        blur(torch.zeros(1, 1, 3, 3, dtype=torch.long))
    with pytest.raises(TypeError, match=r"blur: x must be a torch.Tensor, got ndarray"):
        blur(torch.zeros(1, 1, 3, 3).numpy())
    with pytest.raises(ValueError, match=r"blur: x must not be empty, got shape \(0, 1, 3, 3\)"):
        blur(torch.zeros(0, 1, 3, 3))
