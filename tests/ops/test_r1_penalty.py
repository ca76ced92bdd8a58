import pytest
import torch
from support import CL
from support import FP32_GRAD
from support import FP32_OUT
from support import LAYOUTS
from support import assert_compiled_matches_ref
from support import assert_low_precision_op_close
from support import impl_device
from support import op_overloads
from support import randn as _randn
from support import require
from support import shape_id as _ids
from torch.nn import functional as F

from alae_fast.ops import r1_penalty
from alae_fast.ops import r1_penalty_ref

OP, BACKWARD_OP = op_overloads("r1_penalty")

SHAPES = [(1, 3, 17, 19), (7, 3, 17, 19), (1, 50), (7, 50), (2, 65537)]


def _grads(n, layout, device, dtype=torch.float32, shape=(3, 17, 19), seed=0):
    """[n, *shape] gradients in ``layout``; non-contiguous is a transposed [n, C, W, H]."""
    c, h, w = shape
    if layout == "non-contiguous":
        x = _randn((n, c, w, h), device, dtype, seed).transpose(2, 3)
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=CL)
        return x
    x = _randn((n, c, h, w), device, dtype, seed)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
        assert not x.is_contiguous() and x.is_contiguous(memory_format=CL)
    return x


def _check_parity(grads, gamma, impl, seed=1):
    """Values, and gradients for a per-sample upstream (checks the scaling by grad[n])."""
    grads.requires_grad_()
    ours, ref = r1_penalty(grads, gamma, impl=impl), r1_penalty_ref(grads, gamma)
    assert ours.shape == (grads.shape[0],) and ours.dtype == grads.dtype
    torch.testing.assert_close(ours, ref, **FP32_OUT)
    upstream = _randn(grads.shape[:1], grads.device, grads.dtype, seed)
    (g,) = torch.autograd.grad(ours, grads, upstream)
    (rg,) = torch.autograd.grad(ref, grads, upstream)
    torch.testing.assert_close(g, rg, **FP32_GRAD)
    return g


@impl_device
@pytest.mark.parametrize("gamma", [10.0, 0.5])
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_matches_reference_values_and_gradients(impl, device, shape, gamma):
    require(impl, device)
    _check_parity(_randn(shape, device), gamma, impl)


@impl_device
def test_known_values(impl, device):
    require(impl, device)
    grads = torch.ones(2, 3, 4, 5, device=device, requires_grad=True)
    out = r1_penalty(grads, 10.0, impl=impl)
    # gamma / 2 * (3 * 4 * 5 ones squared) = 5 * 60 = 300 per sample, exact in float32.
    assert out.tolist() == [300.0, 300.0]
    (g,) = torch.autograd.grad(out, grads, torch.tensor([1.0, -0.5], device=device))
    # d/dgrads = gamma * grad[n] * grads: 10 for sample 0, -5 for sample 1.
    assert (g[0] == 10.0).all() and (g[1] == -5.0).all()
    scaled = torch.arange(1.0, 7.0, device=device).view(2, 3)
    torch.testing.assert_close(
        r1_penalty(scaled, 0.5, impl=impl), torch.tensor([14 / 4, 77 / 4], device=device), **FP32_OUT
    )


@impl_device
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n", [1, 7])
def test_layouts(impl, device, n, layout):
    require(impl, device)
    grads = _grads(n, layout, device)
    g = _check_parity(grads, 10.0, impl)
    if layout == "channels_last":
        # The gradient comes back in the input's layout (what autograd.grad hands to R1).
        assert g.is_contiguous(memory_format=CL) and not g.is_contiguous()
    elif layout == "contiguous":
        assert g.is_contiguous()
    # Leaf .grad (through AccumulateGrad) too.
    r1_penalty(grads, 10.0, impl=impl).sum().backward()
    torch.testing.assert_close(grads.grad, 10.0 * grads.detach(), **FP32_GRAD)
    if layout == "channels_last":
        assert grads.grad.is_contiguous(memory_format=CL)


def _critic_loss(x, params, critic, gamma, penalty):
    """The R1 chain: D's logits, their gradient w.r.t. the reals (create_graph), penalty."""
    if critic == "linear":
        (w, v) = params
        d = (torch.tanh(x.flatten(1) @ w) @ v).squeeze(-1)
    else:
        (w, v) = params
        d = (torch.tanh(F.conv2d(x, w, padding=1)) * v).sum(dim=(1, 2, 3))
    (grads,) = torch.autograd.grad(d.sum(), x, create_graph=True)
    return penalty(grads, gamma).mean(), grads


@impl_device
@pytest.mark.parametrize(
    "critic,layout",
    [("linear", "contiguous"), ("conv", "contiguous"), ("conv", "channels_last"), ("linear", "channels_last")],
)
def test_double_backward_chain_matches_reference(impl, device, critic, layout):
    require(impl, device)
    n, c, h, w_ = 7, 3, 17, 19
    if critic == "linear":
        shapes = [(c * h * w_, 8), (8, 1)]
    else:
        shapes = [(4, c, 3, 3), (4, h, w_)]
    results = []
    for penalty in (lambda g, gm: r1_penalty(g, gm, impl=impl), r1_penalty_ref):
        x = _grads(n, layout, device).requires_grad_()
        params = [(_randn(s, device, seed=2 + i) * 0.3).requires_grad_() for i, s in enumerate(shapes)]
        loss, grads = _critic_loss(x, params, critic, 10.0, penalty)
        if critic == "conv" and layout == "channels_last":
            assert grads.is_contiguous(memory_format=CL) and not grads.is_contiguous()
        loss.backward()
        results.append((loss.detach(), x.grad, *[p.grad for p in params]))
    ours, ref = results
    torch.testing.assert_close(ours[0], ref[0], **FP32_OUT)
    for g, rg in zip(ours[1:], ref[1:]):
        assert g is not None and rg is not None
        assert g.abs().max() > 0
        torch.testing.assert_close(g, rg, **FP32_GRAD)


@impl_device
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_low_precision_within_twice_pytorch_error(impl, device, dtype, layout):
    require(impl, device)
    grads = _grads(7, layout, device, dtype).requires_grad_()
    assert_low_precision_op_close(
        lambda g: r1_penalty(g, 10.0, impl=impl), lambda g: r1_penalty_ref(g, 10.0), (grads,), _randn((7,), device)
    )


@impl_device
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gradcheck_and_gradgradcheck_float64(impl, device, layout):
    require(impl, device)
    grads = _grads(3, layout, device, torch.float64, shape=(2, 5, 4)).requires_grad_()
    fn = lambda g: r1_penalty(g, 10.0, impl=impl)  # noqa: E731
    # 120 inputs: fast mode (random projections of the Jacobians) keeps the interpreted Triton
    # kernels quick; the full Jacobians are checked on the 2-D case below.
    assert torch.autograd.gradcheck(fn, (grads,), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (grads,), fast_mode=True)


@impl_device
def test_gradcheck_and_gradgradcheck_float64_full_jacobian(impl, device):
    require(impl, device)
    grads = _randn((3, 4), device, torch.float64).requires_grad_()
    fn = lambda g: r1_penalty(g, 0.5, impl=impl)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (grads,))
    assert torch.autograd.gradgradcheck(fn, (grads,))


@impl_device
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n", [1, 7])
def test_opcheck(impl, device, n, layout):
    require(impl, device)
    grads = _grads(n, layout, device, shape=(3, 5, 4)).requires_grad_()
    upstream = _randn((n,), device, seed=1).requires_grad_()
    torch.library.opcheck(OP, (grads, 10.0, impl))
    torch.library.opcheck(BACKWARD_OP, (upstream, grads, 0.5, impl))


@impl_device
def test_opcheck_2d(impl, device):
    require(impl, device)
    grads = _randn((7, 50), device).requires_grad_()
    torch.library.opcheck(OP, (grads, 0.5, impl))
    torch.library.opcheck(BACKWARD_OP, (_randn((7,), device, seed=1), grads, 10.0, impl))


@impl_device
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_torch_compile_fullgraph(impl, device, layout):
    require(impl, device)
    grads = _grads(5, layout, device, shape=(3, 7, 6)).requires_grad_()
    upstream = _randn((5,), device, seed=1)
    assert_compiled_matches_ref(
        lambda g: r1_penalty(g, 10.0, impl=impl) * upstream, lambda g: r1_penalty_ref(g, 10.0) * upstream, (grads,)
    )


def test_bad_inputs_raise_clear_errors():
    # Every check runs before the impl is resolved, so one run covers all impls.
    ok = torch.zeros(2, 3)
    with pytest.raises(
        ValueError, match=r"r1_penalty: grads must have at least 2 dims \[N, \.\.\.\], got shape \(5,\)"
    ):
        r1_penalty(torch.zeros(5), 10.0)
    with pytest.raises(TypeError, match=r"grads must be a floating-point tensor.*torch.int64"):
        r1_penalty(torch.zeros(2, 3, dtype=torch.long), 10.0)
    with pytest.raises(ValueError, match=r"r1_penalty: grads must not be empty, got shape \(0, 3\)"):
        r1_penalty(torch.zeros(0, 3), 10.0)
    with pytest.raises(ValueError, match=r"r1_penalty: gamma must be finite, got nan"):
        r1_penalty(ok, float("nan"))
    with pytest.raises(ValueError, match=r"gamma must be finite, got inf"):
        r1_penalty(ok, float("inf"))
    with pytest.raises(TypeError, match=r"r1_penalty: gamma must be a Python float, got Tensor"):
        r1_penalty(ok, torch.tensor(1.0))
    with pytest.raises(TypeError, match=r"gamma must be a Python float, got str"):
        r1_penalty(ok, "10")
    with pytest.raises(TypeError, match=r"gamma must be a Python float, got bool"):
        r1_penalty(ok, True)
    with pytest.raises(TypeError, match=r"r1_penalty: grads must be a torch.Tensor, got list"):
        r1_penalty([[0.0, 1.0]], 10.0)
