"""ALAE losses against hand-computed values."""

import math

import pytest
import torch

from alae_fast.reference import losses


def softplus(v):
    return math.log1p(math.exp(v))


def test_r1_penalty_hand_computed():
    grads = torch.tensor([[[[1.0, 2.0]]], [[[0.0, -3.0]]]])
    torch.testing.assert_close(losses.r1_penalty(grads, 10.0), torch.tensor([5 * 5.0, 5 * 9.0]))


def test_discriminator_loss_with_r1_on_linear_critic():
    # D(x) = sum(a * x): grad_x D = a, so R1 = gamma/2 * sum(a^2) per sample.
    a = torch.tensor([[[[0.5, -1.0], [2.0, 0.0]]]], requires_grad=True)
    reals = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]]], [[[0.0, 0.0], [1.0, 1.0]]]], requires_grad=True)
    d_real = (reals * a).sum(dim=(1, 2, 3))  # [-1.5, 2.0]
    d_fake = torch.tensor([0.3, -0.7])
    loss = losses.discriminator_logistic_r1(d_fake, d_real, reals, r1_gamma=10.0)
    r1 = 5.0 * (0.25 + 1.0 + 4.0)
    expected = ((softplus(0.3) + softplus(1.5) + r1) + (softplus(-0.7) + softplus(-2.0) + r1)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # second order: d(mean R1)/da = gamma * a (the R1 gradient is itself differentiated)
    (g,) = torch.autograd.grad(loss, a)
    sig = torch.sigmoid
    d_softplus = -(sig(torch.tensor(1.5)) * reals[0] + sig(torch.tensor(-2.0)) * reals[1]).detach() / 2
    torch.testing.assert_close(g, 10.0 * a.detach() + d_softplus.unsqueeze(0))


def test_discriminator_loss_without_r1():
    reals = torch.zeros(2, 1, 1, 1, requires_grad=True)
    loss = losses.discriminator_logistic_r1(torch.tensor([0.0, 1.0]), torch.tensor([0.0, -1.0]), reals, 0.0)
    assert loss.item() == pytest.approx((softplus(0) + softplus(0) + softplus(1) + softplus(1)) / 2)


def test_generator_and_latent_losses():
    assert losses.generator_logistic_ns(torch.tensor([2.0, -1.0])).item() == pytest.approx(
        (softplus(-2.0) + softplus(1.0)) / 2
    )
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    assert losses.latent_l2(a, b).item() == pytest.approx((0 + 4 + 9 + 0) / 4)
