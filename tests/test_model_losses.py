"""Which loss functions the models run: the reference model its plain-PyTorch losses, the fast
model (built directly or by ``optimize``) the fused loss ops with its ``loss_impl``."""

import pytest
import torch

import alae_fast
from alae_fast import models
from alae_fast import ops
from alae_fast import reference
from alae_fast.reference import losses as ref_losses

LOSS_OPS = ("d_loss_r1", "g_adv_loss", "latent_l2")
REF_LOSSES = ("discriminator_logistic_r1", "generator_logistic_ns", "latent_l2")


def small(cls):
    torch.manual_seed(0)
    return cls(startf=4, maxf=8, layer_count=2, latent_size=8, mapping_layers=2, channels=1)


def record(monkeypatch, module, names):
    """Wrap ``module.<name>`` for each name; return the list the wrappers append to."""
    calls = []
    for name in names:
        fn = getattr(module, name)

        def wrapper(*args, _fn=fn, _name=name, **kwargs):
            calls.append((_name, kwargs.get("impl", "-")))
            return _fn(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)
    return calls


def three_losses(model):
    torch.manual_seed(1)
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    return [model.d_loss(x, 1, 1.0), model.g_loss(2, 1, 1.0), model.ae_loss(2, 1, 1.0)]


def test_reference_model_runs_reference_losses(monkeypatch):
    op_calls = record(monkeypatch, ops, LOSS_OPS)
    ref_calls = record(monkeypatch, ref_losses, REF_LOSSES)
    three_losses(small(reference.StyleALAE))
    assert [name for name, _ in ref_calls] == list(REF_LOSSES)
    assert op_calls == []


@pytest.mark.parametrize("impl", [None, "ref", "cpu"])
def test_fast_model_runs_loss_ops(monkeypatch, impl):
    model = small(models.StyleALAE)
    alae_fast.optimize(model, impl)
    ref_calls = record(monkeypatch, ref_losses, REF_LOSSES)
    op_calls = record(monkeypatch, ops, LOSS_OPS)
    three_losses(model)
    assert op_calls == [(name, impl) for name in LOSS_OPS]
    assert ref_calls == []


def test_optimize_gives_a_reference_model_the_loss_ops(monkeypatch):
    model = small(reference.StyleALAE)
    expected = three_losses(model)
    model = small(reference.StyleALAE)  # same seed: the same parameters
    assert alae_fast.optimize(model, "ref") is model
    assert type(model) is models.StyleALAE and model.loss_impl == "ref"
    op_calls = record(monkeypatch, ops, LOSS_OPS)
    got = three_losses(model)
    assert [name for name, _ in op_calls] == list(LOSS_OPS)
    # The fast blocks and loss ops in impl "ref" are the reference formulas reordered at most:
    # float32 rounding of sums over at most a few hundred terms, a few ulp of the loss (~1).
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
