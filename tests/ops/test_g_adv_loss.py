import math

import pytest
import torch
from support import FP32_GRAD
from support import assert_compiled_matches_ref
from support import assert_low_precision_op_close
from support import assert_matches_ref
from support import impl_device
from support import logits
from support import op_overloads
from support import require

from alae_fast.ops import g_adv_loss
from alae_fast.ops import g_adv_loss_ref

OP, BACKWARD_OP = op_overloads("g_adv_loss")


@impl_device
@pytest.mark.parametrize("n", [1, 7, 1025, 65537])
def test_matches_reference_values_and_gradients(impl, device, n):
    require(impl, device)
    f = logits(n, device).requires_grad_()
    ours = assert_matches_ref(lambda f: g_adv_loss(f, impl=impl), g_adv_loss_ref, (f,))
    assert ours.shape == () and ours.dtype == torch.float32


@impl_device
def test_upstream_gradient_is_applied(impl, device):
    require(impl, device)
    f = logits(1025, device).requires_grad_()
    upstream = torch.tensor(-2.5, device=device)
    (g,) = torch.autograd.grad(g_adv_loss(f, impl=impl), f, upstream)
    (rg,) = torch.autograd.grad(g_adv_loss_ref(f), f, upstream)
    torch.testing.assert_close(g, rg, **FP32_GRAD)


@impl_device
def test_non_contiguouslogits(impl, device):
    require(impl, device)
    f = logits(3 * 513, device)[1::3].requires_grad_()
    assert not f.is_contiguous()
    assert_matches_ref(lambda f: g_adv_loss(f, impl=impl), g_adv_loss_ref, (f,))


@impl_device
def test_extreme_logits_stay_exact_and_finite(impl, device):
    require(impl, device)
    f = torch.tensor([1e4, -1e4, 88.0, -88.0, 0.0, 30.0], device=device, requires_grad=True)
    loss = g_adv_loss(f, impl=impl)
    # Known values: softplus(-1e4) = 0, softplus(1e4) = 1e4 (float64 reference is exact here).
    expected = g_adv_loss_ref(f.detach().double()).item()
    assert abs(expected - (1e4 + 88.0 + math.log(2.0)) / 6) < 1e-6
    assert torch.isfinite(loss)
    assert abs(loss.item() - expected) <= 1e-5 * expected
    (gf,) = torch.autograd.grad(loss, f)
    assert torch.isfinite(gf).all()
    torch.testing.assert_close(gf, -torch.sigmoid(-f.detach()) / 6, **FP32_GRAD)
    # The saturated ends: d/df softplus(-f) is -1 at f = -1e4 and 0 at f = 1e4.
    assert abs(gf[0].item()) < 1e-30
    assert abs(gf[1].item() + 1 / 6) < 1e-7


@impl_device
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_within_twice_pytorch_error(impl, device, dtype):
    require(impl, device)
    f = logits(1025, device, dtype).requires_grad_()
    assert_low_precision_op_close(lambda f: g_adv_loss(f, impl=impl), g_adv_loss_ref, (f,))


@impl_device
def test_gradcheck_and_gradgradcheck_float64(impl, device):
    require(impl, device)
    f = logits(7, device, torch.float64).requires_grad_()
    fn = lambda a: g_adv_loss(a, impl=impl)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (f,))
    assert torch.autograd.gradgradcheck(fn, (f,))


@impl_device
@pytest.mark.parametrize("n", [1, 7, 1025])
def test_opcheck(impl, device, n):
    require(impl, device)
    f = logits(n, device).requires_grad_()
    torch.library.opcheck(OP, (f, impl))
    torch.library.opcheck(BACKWARD_OP, (torch.tensor(0.7, device=device), f, impl))


@impl_device
def test_torch_compile_fullgraph(impl, device):
    require(impl, device)
    f = logits(33, device).requires_grad_()
    assert_compiled_matches_ref(lambda a: g_adv_loss(a, impl=impl) * 2.0, lambda a: g_adv_loss_ref(a) * 2.0, (f,))


def test_bad_inputs_raise_clear_errors():
    # Every check runs before the impl is resolved, so one run covers all impls.
    ok = torch.zeros(4)
    with pytest.raises(ValueError, match=r"g_adv_loss: d_fake must be 1-D \[N\], got shape \(4, 1\)"):
        g_adv_loss(ok[:, None])
    with pytest.raises(ValueError, match=r"d_fake must be 1-D \[N\], got shape \(\)"):
        g_adv_loss(torch.tensor(1.0))
    with pytest.raises(TypeError, match=r"d_fake must be a floating-point tensor.*torch.int64"):
        g_adv_loss(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"g_adv_loss: d_fake must not be empty, got shape \(0,\)"):
        g_adv_loss(torch.zeros(0))
    with pytest.raises(TypeError, match=r"g_adv_loss: d_fake must be a torch.Tensor, got list"):
        g_adv_loss([1.0])
    with pytest.raises(ValueError, match=r"impl must be one of"):
        g_adv_loss(ok, impl="fast")
