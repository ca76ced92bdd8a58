"""Tests for alae_fast.reference.optim (LREQAdam) and the learning-rate equalization of the
equalized layers in alae_fast.reference.layers (init statistics and coefficients)."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from alae_fast.reference.layers import Conv2d
from alae_fast.reference.layers import ConvTranspose2d
from alae_fast.reference.layers import Linear
from alae_fast.reference.layers import lr_equalization_coef
from alae_fast.reference.optim import LREQAdam

SQRT2 = math.sqrt(2.0)


# -- helpers --------------------------------------------------------------------------------


def make_grads(shapes, steps, seed=0):
    """A list (per step) of lists (per parameter) of gradients of varying magnitude/sign."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in range(steps):
        scale = [1.0, 0.05, 3.0, 0.5, 10.0, 0.2, 1.5][t % 7]
        out.append([torch.randn(s, generator=g, dtype=torch.float64) * scale for s in shapes])
    return out


def reference_run(p0, grads, coef, lr, beta2, eps, weight_decay=0.0, start_step=0, v0=None):
    """The documented update written as a plain float64 loop over scalars of the tensors."""
    p = p0.double().clone()
    v = torch.zeros_like(p) if v0 is None else v0.double().clone()
    for t, g in enumerate(grads, start=start_step + 1):
        g = g.double()
        if weight_decay:
            g = g + weight_decay * p
        v = beta2 * v + (1.0 - beta2) * g * g
        step = lr * coef * math.sqrt(1.0 - beta2**t)
        p = p - step * g / (torch.sqrt(v) + eps)
    return p, v


def set_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.to(p.dtype).clone()


# -- coefficients and init of the equalized layers ------------------------------------------


def test_lr_equalization_coef_default_is_one():
    assert lr_equalization_coef(nn.Parameter(torch.zeros(3))) == 1.0
    assert lr_equalization_coef(nn.Linear(3, 2).weight) == 1.0
    p = nn.Parameter(torch.zeros(2))
    p.lr_equalization_coef = 0.25
    assert lr_equalization_coef(p) == 0.25


def test_linear_coefficients_exact():
    lin = Linear(4, 3, lrmul=0.1)
    assert lr_equalization_coef(lin.weight) == pytest.approx(SQRT2 / 2.0 * 0.1, rel=1e-12)
    assert lr_equalization_coef(lin.bias) == pytest.approx(0.1, rel=1e-12)
    lin = Linear(100, 7, gain=1.0)
    assert lr_equalization_coef(lin.weight) == pytest.approx(0.1, rel=1e-12)
    assert lr_equalization_coef(lin.bias) == 1.0
    assert Linear(5, 2, bias=False).bias is None


@pytest.mark.parametrize("lrmul", [1.0, 0.1])
def test_linear_init_std(lrmul):
    torch.manual_seed(0)
    lin = Linear(512, 512, lrmul=lrmul)
    # The stored weight has the He std whatever lrmul (lrmul only scales the step).
    expected = SQRT2 / math.sqrt(512)
    assert lin.weight.std().item() == pytest.approx(expected, rel=0.03)
    assert abs(lin.weight.mean().item()) < 0.1 * expected
    assert torch.count_nonzero(lin.bias) == 0
    assert lin.weight.shape == (512, 512)


@pytest.mark.parametrize(
    "kwargs, wshape, fan_in",
    [
        (dict(in_channels=64, out_channels=32, kernel_size=3), (32, 64, 3, 3), 9 * 64),
        (dict(in_channels=64, out_channels=32, kernel_size=3, transpose=True), (64, 32, 3, 3), 9 * 64),
        (dict(in_channels=64, out_channels=32, kernel_size=3, groups=4), (32, 16, 3, 3), 9 * 16),
        (dict(in_channels=64, out_channels=32, kernel_size=3, groups=4, transpose=True), (64, 8, 3, 3), 9 * 16),
        (dict(in_channels=48, out_channels=40, kernel_size=(1, 5)), (40, 48, 1, 5), 5 * 48),
    ],
)
def test_conv_init_and_fan_in(kwargs, wshape, fan_in):
    torch.manual_seed(1)
    conv = Conv2d(**kwargs, lrmul=0.5)
    assert conv.fan_in == fan_in
    assert tuple(conv.weight.shape) == wshape
    he = SQRT2 / math.sqrt(fan_in)
    assert lr_equalization_coef(conv.weight) == pytest.approx(he * 0.5, rel=1e-12)
    assert lr_equalization_coef(conv.bias) == pytest.approx(0.5, rel=1e-12)
    assert conv.weight.std().item() == pytest.approx(he, rel=0.03)
    assert torch.count_nonzero(conv.bias) == 0


def test_conv_transpose_class_fan_in_uses_in_channels():
    conv = ConvTranspose2d(16, 64, 4, gain=1.0)
    assert conv.transpose
    assert conv.fan_in == 4 * 4 * 16
    assert lr_equalization_coef(conv.weight) == pytest.approx(1.0 / 16.0, rel=1e-12)


# -- the update -----------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [1e-8, 0.1])
def test_lreq_adam_matches_hand_loop(eps):
    torch.manual_seed(0)
    lin = Linear(4, 3, lrmul=0.1)
    plain = nn.Parameter(torch.randn(5))
    params = [lin.weight, lin.bias, plain]
    coefs = [SQRT2 / 2.0 * 0.1, 0.1, 1.0]
    lr, beta2, steps = 0.01, 0.9, 7
    p0 = [p.detach().clone() for p in params]
    grads = make_grads([p.shape for p in params], steps)
    opt = LREQAdam(params, lr=lr, betas=(0.0, beta2), eps=eps)
    for t in range(steps):
        set_grads(params, grads[t])
        opt.step()
    for p, start, c, i in zip(params, p0, coefs, range(3)):
        exp_p, exp_v = reference_run(start, [g[i] for g in grads], c, lr, beta2, eps)
        torch.testing.assert_close(p.detach().double(), exp_p, rtol=0, atol=2e-6)
        torch.testing.assert_close(opt.state[p]["exp_avg_sq"].double(), exp_v, rtol=1e-5, atol=1e-8)
        assert opt.state[p]["step"] == steps
        # the parameter really moved (the comparison is not vacuous)
        assert (p.detach().double() - start.double()).abs().max() > 1e-3 * c


def test_first_step_size_hand_computed():
    # One step with g = 2 (scalar): v = (1 - 0.99) * 4 = 0.04, sqrt(v) = 0.2,
    # step = lr * coef * sqrt(1 - 0.99) * g / (sqrt(v) + eps) = 0.5 * 0.25 * 0.1 * 2 / 0.3
    p = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    p.lr_equalization_coef = 0.25
    opt = LREQAdam([p], lr=0.5, betas=(0.0, 0.99), eps=0.1)
    p.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()
    assert p.item() == pytest.approx(1.0 - 0.5 * 0.25 * 0.1 * 2.0 / 0.3, rel=1e-12)


def test_weight_decay_added_to_gradient():
    p = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    p0 = p.detach().clone()
    grads = [torch.tensor([0.3, -0.1, 0.0], dtype=torch.float64), torch.tensor([-0.2, 0.4, 1.0], dtype=torch.float64)]
    opt = LREQAdam([p], lr=0.1, betas=(0.0, 0.95), eps=1e-3, weight_decay=0.5)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    exp_p, _ = reference_run(p0, grads, 1.0, 0.1, 0.95, 1e-3, weight_decay=0.5)
    torch.testing.assert_close(p.detach(), exp_p, rtol=0, atol=1e-12)


def test_param_groups_use_their_own_lr():
    a = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    b = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = LREQAdam([{"params": [a], "lr": 0.1}, {"params": [b]}], lr=0.001, betas=(0.0, 0.99))
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    a.grad, b.grad = g.clone(), g.clone()
    opt.step()
    # after one step: sqrt(v) = sqrt(0.01) |g| and the bias correction is sqrt(0.01), so
    # delta = -lr * sqrt(0.01) * g / (sqrt(0.01) |g|) = -lr * sign(g) (eps ~ 0)
    torch.testing.assert_close(a.detach(), -0.1 * g.sign(), rtol=1e-6, atol=0)
    torch.testing.assert_close(b.detach(), -0.001 * g.sign(), rtol=1e-6, atol=0)


def test_closure_loss_returned():
    p = nn.Parameter(torch.tensor([3.0]))
    opt = LREQAdam([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(9.0)
    assert p.grad.item() == pytest.approx(6.0)
    assert p.item() < 3.0


def test_none_grad_skipped_then_starts_at_step_one():
    a = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    b = nn.Parameter(torch.tensor([5.0, -1.0], dtype=torch.float64))
    b0 = b.detach().clone()
    opt = LREQAdam([a, b], lr=0.1, betas=(0.0, 0.9), eps=1e-2)
    for _ in range(3):
        a.grad = torch.tensor([0.5, -0.5], dtype=torch.float64)
        b.grad = None
        opt.step()
    assert len(opt.state[b]) == 0
    torch.testing.assert_close(b.detach(), b0, rtol=0, atol=0)
    assert opt.state[a]["step"] == 3
    # b's first gradient: bias correction with t = 1, not 4
    g = torch.tensor([0.4, 2.0], dtype=torch.float64)
    b.grad = g.clone()
    a.grad = None
    opt.step()
    exp_b, _ = reference_run(b0, [g], 1.0, 0.1, 0.9, 1e-2)
    torch.testing.assert_close(b.detach(), exp_b, rtol=0, atol=1e-12)
    assert opt.state[b]["step"] == 1
    assert opt.state[a]["step"] == 3


def test_zero_grad_advances_step_and_decays_v():
    p = nn.Parameter(torch.tensor([1.0, -1.0], dtype=torch.float64))
    opt = LREQAdam([p], lr=0.1, betas=(0.0, 0.9), eps=1e-3)
    g1 = torch.tensor([2.0, 0.5], dtype=torch.float64)
    p.grad = g1.clone()
    opt.step()
    p_after1 = p.detach().clone()
    p.grad = torch.zeros(2, dtype=torch.float64)
    opt.step()
    assert opt.state[p]["step"] == 2
    torch.testing.assert_close(opt.state[p]["exp_avg_sq"], 0.9 * 0.1 * g1 * g1, rtol=1e-12, atol=0)
    torch.testing.assert_close(p.detach(), p_after1, rtol=0, atol=0)
    # third step sees t = 3 and the decayed v
    g3 = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    p.grad = g3.clone()
    opt.step()
    exp_p, exp_v = reference_run(torch.tensor([1.0, -1.0]), [g1, torch.zeros(2), g3], 1.0, 0.1, 0.9, 1e-3)
    torch.testing.assert_close(p.detach(), exp_p, rtol=0, atol=1e-12)
    torch.testing.assert_close(opt.state[p]["exp_avg_sq"], exp_v, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(betas=(0.9, 0.99)), "betas[0]"),
        (dict(betas=(0.0, 1.0)), "betas[1]"),
        (dict(betas=(0.0, 1.5)), "betas[1]"),
        (dict(betas=(0.0, -0.1)), "betas[1]"),
        (dict(lr=-1e-3), "lr"),
        (dict(eps=-1.0), "eps"),
    ],
)
def test_bad_arguments(kwargs, word):
    p = nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError) as exc:
        LREQAdam([p], **kwargs)
    assert word in str(exc.value)


def test_beta2_zero_and_lr_zero_allowed():
    p = nn.Parameter(torch.tensor([1.0, -3.0], dtype=torch.float64))
    opt = LREQAdam([p], lr=0.1, betas=(0.0, 0.0), eps=0.0)
    p.grad = torch.tensor([4.0, -0.25], dtype=torch.float64)
    opt.step()
    # beta2 = 0: v = g^2, bias correction sqrt(1 - 0) = 1 -> p -= lr * sign(g)
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, -2.9], dtype=torch.float64), rtol=0, atol=1e-12)
    q = nn.Parameter(torch.tensor([1.0]))
    opt = LREQAdam([q], lr=0.0)
    q.grad = torch.tensor([1.0])
    opt.step()
    assert q.item() == 1.0


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(3)
    lin1 = Linear(6, 4, lrmul=0.1)
    extra1 = nn.Parameter(torch.randn(3))
    p_start = [p.detach().clone() for p in (lin1.weight, lin1.bias, extra1)]
    grads = make_grads([(4, 6), (4,), (3,)], 6, seed=5)
    kw = dict(lr=0.02, betas=(0.0, 0.9), eps=1e-4)
    opt1 = LREQAdam([*lin1.parameters(), extra1], **kw)
    params1 = [lin1.weight, lin1.bias, extra1]
    for t in range(3):
        set_grads(params1, grads[t])
        opt1.step()

    # save through bytes, as a checkpoint would
    buf = io.BytesIO()
    torch.save({"model": lin1.state_dict(), "extra": extra1.detach().clone(), "opt": opt1.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf)
    lin2 = Linear(6, 4, lrmul=0.1)
    lin2.load_state_dict(ck["model"])
    extra2 = nn.Parameter(ck["extra"])
    opt2 = LREQAdam([*lin2.parameters(), extra2], lr=0.5, betas=(0.0, 0.5), eps=1.0)
    opt2.load_state_dict(ck["opt"])
    params2 = [lin2.weight, lin2.bias, extra2]
    assert [opt2.state[p]["step"] for p in params2] == [3, 3, 3]
    assert opt2.param_groups[0]["lr"] == 0.02

    for t in range(3, 6):
        set_grads(params1, grads[t])
        opt1.step()
        set_grads(params2, grads[t])
        opt2.step()
    for p1, p2 in zip(params1, params2):
        assert torch.equal(p1.detach(), p2.detach())

    # and both agree with six uninterrupted steps of the documented update
    coefs = [SQRT2 / math.sqrt(6) * 0.1, 0.1, 1.0]
    for i, (p2, start, c) in enumerate(zip(params2, p_start, coefs)):
        exp_p, _ = reference_run(start, [g[i] for g in grads], c, 0.02, 0.9, 1e-4)
        torch.testing.assert_close(p2.detach().double(), exp_p, rtol=0, atol=2e-6)
