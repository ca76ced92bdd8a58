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

from alae_fast.ops import d_adv_loss
from alae_fast.ops import d_adv_loss_ref

OP, BACKWARD_OP = op_overloads("d_adv_loss")


@impl_device
@pytest.mark.parametrize("n", [1, 7, 1025, 65537])
def test_matches_reference_values_and_gradients(impl, device, n):
    require(impl, device)
    f, r = logits(n, device).requires_grad_(), logits(n, device, seed=1).requires_grad_()
    assert_matches_ref(lambda f, r: d_adv_loss(f, r, impl=impl), d_adv_loss_ref, (f, r))


@impl_device
def test_non_contiguouslogits(impl, device):
    require(impl, device)
    f = logits(2 * 513, device)[::2].requires_grad_()
    r = logits(3 * 513, device, seed=1)[1::3].requires_grad_()
    assert not f.is_contiguous() and not r.is_contiguous()
    assert_matches_ref(lambda f, r: d_adv_loss(f, r, impl=impl), d_adv_loss_ref, (f, r))


@impl_device
def test_extreme_logits_stay_exact_and_finite(impl, device):
    require(impl, device)
    f = torch.tensor([1e4, -1e4, 88.0, -88.0, 0.0, 30.0], device=device, requires_grad=True)
    r = torch.tensor([-1e4, 1e4, -88.0, 88.0, 0.0, -30.0], device=device, requires_grad=True)
    loss = d_adv_loss(f, r, impl=impl)
    # Known values: softplus(1e4) = 1e4, softplus(-1e4) = 0 (float64 reference is exact here).
    expected = d_adv_loss_ref(f.detach().double(), r.detach().double()).item()
    assert abs(expected - (2e4 + 2 * 88.0 + 2 * 0.6931471805599453 + 60.0) / 6) < 1e-6
    assert torch.isfinite(loss)
    assert abs(loss.item() - expected) <= 1e-5 * expected
    gf, gr = torch.autograd.grad(loss, (f, r))
    assert torch.isfinite(gf).all() and torch.isfinite(gr).all()
    torch.testing.assert_close(gf, torch.sigmoid(f.detach()) / 6, **FP32_GRAD)
    torch.testing.assert_close(gr, -torch.sigmoid(-r.detach()) / 6, **FP32_GRAD)


@impl_device
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_within_twice_pytorch_error(impl, device, dtype):
    require(impl, device)
    f = logits(1025, device, dtype).requires_grad_()
    r = logits(1025, device, dtype, seed=1).requires_grad_()
    assert_low_precision_op_close(lambda f, r: d_adv_loss(f, r, impl=impl), d_adv_loss_ref, (f, r))


@impl_device
def test_gradcheck_and_gradgradcheck_float64(impl, device):
    require(impl, device)
    f = logits(7, device, torch.float64).requires_grad_()
    r = logits(7, device, torch.float64, seed=1).requires_grad_()
    fn = lambda a, b: d_adv_loss(a, b, impl=impl)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (f, r))
    assert torch.autograd.gradgradcheck(fn, (f, r))


@impl_device
@pytest.mark.parametrize("n", [1, 7, 1025])
def test_opcheck(impl, device, n):
    require(impl, device)
    f = logits(n, device).requires_grad_()
    r = logits(n, device, seed=1).requires_grad_()
    torch.library.opcheck(OP, (f, r, impl))
    torch.library.opcheck(BACKWARD_OP, (torch.tensor(0.7, device=device), f, r, impl))


@impl_device
def test_torch_compile_fullgraph(impl, device):
    require(impl, device)
    f = logits(33, device).requires_grad_()
    r = logits(33, device, seed=1).requires_grad_()
    assert_compiled_matches_ref(
        lambda a, b: d_adv_loss(a, b, impl=impl) * 2.0, lambda a, b: d_adv_loss_ref(a, b) * 2.0, (f, r)
    )


def test_bad_inputs_raise_clear_errors():
    # Every check runs before the impl is resolved, so one run covers all impls.
    ok = torch.zeros(4)
    with pytest.raises(ValueError, match=r"d_fake must be 1-D \[N\], got shape \(4, 1\)"):
        d_adv_loss(ok[:, None], ok)
    with pytest.raises(ValueError, match=r"same shape, got \(4,\) and \(3,\)"):
        d_adv_loss(ok, torch.zeros(3))
    with pytest.raises(TypeError, match=r"d_real must be a floating-point tensor.*torch.int64"):
        d_adv_loss(ok, torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match=r"d_fake is torch.float32 but d_real is torch.float64"):
        d_adv_loss(ok, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"d_fake is on cpu but d_real is on meta"):
        d_adv_loss(ok, torch.zeros(4, device="meta"))
    with pytest.raises(ValueError, match=r"d_fake must not be empty"):
        d_adv_loss(torch.zeros(0), torch.zeros(0))
    with pytest.raises(TypeError, match=r"d_fake must be a torch.Tensor, got list"):
        d_adv_loss([1.0], ok)
