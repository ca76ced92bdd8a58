"""The drop-in modules of alae_fast.nn against their reference twins: same constructor, same
state, same numbers (forward and gradients), and optimize() swapping them in place."""

import copy
import inspect

import pytest
import torch
from support import impl_device
from support import require

import alae_fast
from alae_fast import models
from alae_fast import nn as fast_nn
from alae_fast import reference
from alae_fast.reference import networks as ref_nn

TOL = dict(rtol=1e-4, atol=1e-5)


def _perturbed(module, seed=0):
    """Random non-zero biases (zero at init) so the bias paths are exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "bias" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return module


def _assert_grads_close(fast, ref):
    for (name, p), (rname, rp) in zip(fast.named_parameters(), ref.named_parameters()):
        assert name == rname
        if rp.grad is None:
            assert p.grad is None or not p.grad.any(), name
            continue
        assert p.grad is not None, name
        scale = rp.grad.abs().max().item()
        torch.testing.assert_close(
            p.grad, rp.grad, rtol=1e-4, atol=1e-4 * scale + 1e-7, msg=lambda m, name=name: f"{name}: {m}"
        )


CASES = {
    "EncodeBlock": (lambda: ref_nn.EncodeBlock(5, 9, 8, fused_scale=False), (3, 5, 8, 8)),
    "EncodeBlock-fused": (lambda: ref_nn.EncodeBlock(5, 9, 8, fused_scale=True), (3, 5, 8, 8)),
    "EncodeBlock-last": (lambda: ref_nn.EncodeBlock(5, 9, 8, last=True), (3, 5, 4, 4)),
    "FromRGB": (lambda: ref_nn.FromRGB(3, 7), (2, 3, 9, 9)),
    "ToRGB": (lambda: ref_nn.ToRGB(7, 3), (2, 7, 9, 9)),
    "Blur": (lambda: reference.Blur(6), (2, 6, 9, 7)),
    "MappingF": (lambda: ref_nn.MappingF(6, 3, 16, 16, 16), (5, 16)),
    "MappingD": (lambda: ref_nn.MappingD(3, 16, 16, 16), (5, 1, 16)),
    "MappingDFC": (lambda: ref_nn.MappingDFC(3, 10, 10, 10), (5, 10)),
    "EncoderFC": (lambda: ref_nn.EncoderFC(latent_size=12, channels=1), (3, 1, 32, 32)),
}


def _outputs(out):
    return out if isinstance(out, tuple) else (out,)


@impl_device
@pytest.mark.parametrize("case", list(CASES))
def test_module_matches_reference(impl, device, case):
    require(impl, device)
    make, shape = CASES[case]
    ref = _perturbed(make()).to(device)
    fast = alae_fast.optimize(copy.deepcopy(ref), impl)
    assert type(fast) is fast_nn.FAST_MODULES[type(ref)]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g).to(device)
    outs = []
    for m in (fast, ref):
        xi = x.clone().requires_grad_()
        out = _outputs(m(xi))
        ups = [
            torch.randn(o.shape, generator=torch.Generator().manual_seed(2 + i)).to(device) for i, o in enumerate(out)
        ]
        torch.autograd.backward(out, ups)
        outs.append((out, xi.grad))
    for o, ro in zip(outs[0][0], outs[1][0]):
        torch.testing.assert_close(o, ro, **TOL)
    torch.testing.assert_close(outs[0][1], outs[1][1], **TOL)
    _assert_grads_close(fast, ref)


@impl_device
@pytest.mark.parametrize("has_first_conv,fused_scale", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("noise", [True, "batch_constant", False])
def test_decode_block_matches_reference(impl, device, has_first_conv, fused_scale, noise):
    require(impl, device)
    inputs = 6 if has_first_conv else 5  # without the first conv the channels stay
    ref = _perturbed(
        ref_nn.DecodeBlock(inputs, 5, 8, has_first_conv=has_first_conv, fused_scale=fused_scale, layer=1)
    ).to(device)
    with torch.no_grad():  # non-zero noise strength: the noise path must match too
        ref.noise_weight_1.normal_(0, 0.5)
        ref.noise_weight_2.normal_(0, 0.5)
    fast = alae_fast.optimize(copy.deepcopy(ref), impl)
    g = torch.Generator().manual_seed(3)
    # The first block starts from the learned constant, batch 1.
    x = torch.randn((1 if not has_first_conv else 3, inputs, 4, 4), generator=g).to(device)
    s1, s2 = (torch.randn((3, 8), generator=g).to(device) for _ in range(2))
    results = []
    for m in (fast, ref):
        inputs = [t.clone().requires_grad_() for t in (x, s1, s2)]
        torch.manual_seed(7)  # same noise images for both
        out = m(*inputs, noise)
        up = torch.randn(out.shape, generator=torch.Generator().manual_seed(4)).to(device)
        out.backward(up)
        results.append((out, [t.grad for t in inputs]))
    torch.testing.assert_close(results[0][0], results[1][0], **TOL)
    for gr, rgr in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(gr, rgr, **TOL)
    _assert_grads_close(fast, ref)


@pytest.mark.parametrize("ref_cls", list(fast_nn.FAST_MODULES))
def test_same_constructor_and_state_dict_keys(ref_cls):
    fast_cls = fast_nn.FAST_MODULES[ref_cls]
    assert issubclass(fast_cls, ref_cls)
    assert inspect.signature(fast_cls.__init__) == inspect.signature(ref_cls.__init__)


@pytest.mark.parametrize("model_cls", ["StyleALAE", "MLPALAE"])
def test_models_have_reference_signature_and_state(model_cls):
    ref_cls, fast_cls = getattr(reference, model_cls), getattr(models, model_cls)
    assert inspect.signature(fast_cls.__init__) == inspect.signature(ref_cls.__init__)
    kwargs = dict(layer_count=3, latent_size=16, mapping_layers=2)
    if model_cls == "StyleALAE":
        kwargs.update(startf=8, maxf=16)
    torch.manual_seed(0)
    ref = ref_cls(**kwargs)
    fast = fast_cls(**kwargs)
    assert list(fast.state_dict()) == list(ref.state_dict())
    fast.load_state_dict(ref.state_dict(), strict=True)
    swapped = [m for m in fast.modules() if type(m) in fast_nn.FAST_MODULES.values()]
    assert swapped and all(m.impl is None for m in swapped)
    assert fast.loss_impl == "fast"


def test_optimize_swaps_in_place_and_retargets():
    model = reference.StyleALAE(startf=8, maxf=16, layer_count=3, latent_size=16, mapping_layers=2)
    keys = list(model.state_dict())
    params = list(model.parameters())
    assert alae_fast.optimize(model, "ref") is model
    assert list(model.state_dict()) == keys
    assert all(p is q for p, q in zip(model.parameters(), params))
    kinds = {type(m) for m in model.modules()}
    assert not kinds & set(fast_nn.FAST_MODULES), "a reference block was left in place"
    assert {
        fast_nn.EncodeBlock,
        fast_nn.DecodeBlock,
        fast_nn.FromRGB,
        fast_nn.ToRGB,
        fast_nn.Blur,
        fast_nn.MappingF,
        fast_nn.MappingD,
    } <= kinds
    assert model.loss_impl == "ref" and model.encoder.encode_block[0].impl == "ref"
    alae_fast.optimize(model, "cpu")
    assert model.loss_impl == "cpu" and model.decoder.decode_block[1].blur.impl == "cpu"
    with pytest.raises(ValueError, match="impl"):
        alae_fast.optimize(model, "gpu")
