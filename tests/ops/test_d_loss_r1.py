import pytest
import torch
from support import FP32_GRAD
from support import FP32_OUT
from support import impl_device
from support import require
from torch.nn import functional as F

from alae_fast.ops import d_loss_r1
from alae_fast.ops import d_loss_r1_ref


class _Critic(torch.nn.Module):
    """A small conv + MLP critic: nonlinear, so R1's double backward has real second-order
    terms (a linear critic would make them vanish)."""

    def __init__(self, channels=3):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 1)

    def forward(self, x):
        h = F.leaky_relu(self.conv(x), 0.2)
        return self.fc(F.softplus(h).mean(dim=(2, 3))).squeeze(1)


def _setup(device, dtype=torch.float32, n=7, shape=(3, 17, 19), channels_last=False, seed=0):
    torch.manual_seed(seed)
    critic = _Critic(shape[0]).to(device, dtype)
    reals = torch.randn(n, *shape, device=device, dtype=dtype)
    fakes = torch.randn(n, *shape, device=device, dtype=dtype)
    if channels_last:
        reals = reals.to(memory_format=torch.channels_last)
    return critic, reals.requires_grad_(), fakes


def _loss_and_grads(fn, critic, reals, fakes, gamma, **kw):
    critic.zero_grad(set_to_none=True)
    loss = fn(critic(fakes), critic(reals), reals, gamma, **kw)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in critic.parameters()]


@impl_device
@pytest.mark.parametrize("n,gamma,channels_last", [(1, 10.0, False), (7, 10.0, False), (7, 0.5, True), (7, 0.0, False)])
def test_matches_reference_loss_and_every_parameter_gradient(impl, device, n, gamma, channels_last):
    require(impl, device)
    critic, reals, fakes = _setup(device, n=n, channels_last=channels_last)
    ours, ours_grads = _loss_and_grads(d_loss_r1, critic, reals, fakes, gamma, impl=impl)
    ref, ref_grads = _loss_and_grads(d_loss_r1_ref, critic, reals, fakes, gamma)
    torch.testing.assert_close(ours, ref, **FP32_OUT)
    for g, rg in zip(ours_grads, ref_grads):
        torch.testing.assert_close(g, rg, **FP32_GRAD)


@impl_device
def test_r1_term_is_the_known_penalty_of_a_linear_critic(impl, device):
    # d(x) = <v, x>: grad = v for every sample, so R1 = gamma/2 |v|^2 and the adversarial terms
    # are softplus of known logits.
    require(impl, device)
    v = torch.randn(2 * 3 * 4, device=device)
    reals = torch.randn(5, 2, 3, 4, device=device, requires_grad=True)
    d_real = reals.flatten(1) @ v
    d_fake = torch.zeros(5, device=device)
    loss = d_loss_r1(d_fake, d_real, reals, 10.0, impl=impl)
    expected = (F.softplus(d_fake) + F.softplus(-d_real)).mean() + 5.0 * v.pow(2).sum()
    torch.testing.assert_close(loss, expected, **FP32_OUT)


@impl_device
def test_gradcheck_and_gradgradcheck_float64_through_r1(impl, device):
    require(impl, device)
    reals = torch.randn(2, 2, 3, 3, device=device, dtype=torch.float64, requires_grad=True)
    fakes = torch.randn(2, 2, 3, 3, device=device, dtype=torch.float64)

    def loss_of(w, d_fake_bias):
        # A nonlinear critic with weights w [18]: the loss's gradient w.r.t. w goes through
        # the R1 double backward.
        d = lambda x: torch.tanh(x.flatten(1) * w).sum(dim=1)  # noqa: E731
        return d_loss_r1(d(fakes) + d_fake_bias, d(reals), reals, 10.0, impl=impl)

    w = torch.randn(18, device=device, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, device=device, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(loss_of, (w, b))
    assert torch.autograd.gradgradcheck(loss_of, (w, b))


@impl_device
def test_grad_scale_is_undone_before_the_gradient_is_squared(impl, device):
    """float16 training scales the R1 gradient's backward pass; a power of two scales and
    unscales every float exactly, so loss and gradients are bit-identical to no scaling."""
    require(impl, device)
    critic, reals, fakes = _setup(device, n=4)
    plain, plain_grads = _loss_and_grads(d_loss_r1, critic, reals, fakes, 10.0, impl=impl)
    scaled, scaled_grads = _loss_and_grads(d_loss_r1, critic, reals, fakes, 10.0, grad_scale=1024.0, impl=impl)
    assert torch.equal(scaled, plain)
    assert all(torch.equal(a, b) for a, b in zip(scaled_grads, plain_grads))
    # Not unscaling would multiply R1 by 1024^2: the loss would move.
    assert not torch.equal(d_loss_r1_ref(critic(fakes), critic(reals), reals, 10.0 * 1024**2), plain)


def test_bad_inputs_raise_clear_errors():
    # Every check runs before the impl is resolved, so one run covers all impls.
    critic, reals, fakes = _setup("cpu", n=4)
    d_real, d_fake = critic(reals), critic(fakes)
    with pytest.raises(ValueError, match=r"reals must have requires_grad=True"):
        d_loss_r1(d_fake, d_real.detach(), reals.detach(), 10.0)
    with pytest.raises(ValueError, match=r"reals has batch 3 but d_real has 4 logits"):
        d_loss_r1(d_fake, d_real, reals[:3], 10.0)
    with pytest.raises(ValueError, match=r"d_fake must be 1-D \[N\]"):
        d_loss_r1(d_fake[:, None], d_real, reals, 10.0)
    with pytest.raises(TypeError, match=r"reals must be a floating-point tensor"):
        d_loss_r1(d_fake, d_real, torch.zeros(4, 3, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"gamma must be finite"):
        d_loss_r1(d_fake, d_real, reals, float("inf"))
    with pytest.raises(ValueError, match=r"grad_scale must be > 0, got 0.0"):
        d_loss_r1(d_fake, d_real, reals, 10.0, 0.0)
    with pytest.raises(ValueError, match=r"d_fake must not be empty"):
        d_loss_r1(d_fake[:0], d_real[:0], reals[:0])


def test_compiles_with_a_graph_break_at_the_r1_gradient():
    critic, reals, fakes = _setup("cpu", n=4)

    def step(reals):
        return d_loss_r1(critic(fakes), critic(reals), reals, 10.0, impl="cpu")

    ours = torch.compile(step)(reals)
    torch.testing.assert_close(ours, d_loss_r1_ref(critic(fakes), critic(reals), reals, 10.0), **FP32_OUT)
