"""The ops under ``torch.autocast``: each op's declared policy (``define(..., autocast=...)``)
routes the registered op (its AutocastCPU/AutocastCUDA kernel) and the ``"ref"`` twin alike, so
that mixed-precision training can swap one for the other; the fast StyleALAE trains under it."""

from __future__ import annotations

import math

import pytest
import torch
from support import FP32_GRAD
from support import FP32_OUT
from support import IMPL_DEVICES
from support import example_leaves
from support import public_op
from support import record_op_calls
from support import require
from support import tensor_outputs

import alae_fast.ops
from alae_fast.ops._spec import REGISTRY
from alae_fast.ops._spec import STAGES

# The policy of every registered op, written out here so that a changed declaration fails:
# (policy, main input). "input": the op runs in the main input's dtype (a "stats" argument in
# float32); "lower": in the autocast dtype; "float32": in float32; None: no autocast handling.
POLICIES = {
    "bias_act": ("input", "x"),
    "bias_act_backward": ("input", "y"),
    "blur": ("input", "x"),
    "adain": ("input", "x"),
    "adain_backward": ("input", "x"),
    "encode_norm": ("input", "x"),
    "encode_norm_backward": ("input", "x"),
    "adain_stats": ("input", "x"),
    "adain_conv2d": ("lower", None),
    "adain_conv2d_backward": ("lower", None),
    "linear_act": ("lower", None),
    "d_adv_loss": ("float32", None),
    "d_adv_loss_backward": ("float32", None),
    "g_adv_loss": ("float32", None),
    "g_adv_loss_backward": ("float32", None),
    "latent_l2": ("float32", None),
    "latent_l2_backward": ("float32", None),
    "r1_penalty": ("float32", None),
    "r1_penalty_backward": ("float32", None),
    "lreq_adam_step_": (None, None),  # the optimizer runs outside autocast
}
COMPOSITIONS = {"d_loss_r1": "float32"}


def test_every_op_declares_the_expected_policy():
    assert {n: s.autocast for n, s in STAGES.items()} == {n: p for n, (p, _) in POLICIES.items()}
    for name, spec in REGISTRY.items():
        expected = COMPOSITIONS[name] if spec.stage is None else spec.stage.autocast
        assert spec.autocast == expected, name
    for name, (policy, _) in POLICIES.items():  # registered for both device types
        for key in ("AutocastCPU", "AutocastCUDA"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"alae_fast::{name}", key) == (policy is not None)


def _by_hand(policy, main, named, low):
    """The arguments ``named`` ({name: value}) as the policy casts them, written independently
    of the package: only floating tensors; float64 kept by "lower" and "float32"."""
    main_dtype = None if main is None else named[main].dtype

    def cast(name, v):
        if isinstance(v, list):
            return [cast(name, e) for e in v]
        if not (torch.is_tensor(v) and v.is_floating_point()):
            return v
        if policy == "input":
            return v.to(torch.float32 if name == "stats" else main_dtype)
        if v.dtype == torch.float64:
            return v
        return v.to(low if policy == "lower" else torch.float32)

    return {k: cast(k, v) for k, v in named.items()}


def _grads(ex, t, out, seed=5):
    """Gradients of the example's ``grad`` inputs (backward outside autocast, as a trainer
    calls it) for a seeded upstream in each output's dtype."""
    outs = [o for o in tensor_outputs(out) if o.requires_grad]
    g = torch.Generator().manual_seed(seed)
    ups = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o) for o in outs]
    return list(torch.autograd.grad(outs, [t[k] for k in ex.grad], ups, allow_unused=True))


def _close_to_truth(ours, ref, truth, computed_in, fp32=FP32_OUT):
    """Ours within twice the reference twin's error against the float64 truth of the same
    rounded inputs, with half an ulp of ``computed_in`` (the dtype the policy ran the op in) of
    the largest value as the floor: both round their results to that dtype at least once.
    Computed in float32: the project's float32 tolerances ``fp32``."""
    if computed_in == torch.float32:
        torch.testing.assert_close(ours, ref, **fp32)
        return 0.0
    truth = truth.double()
    ours_err = (ours.double() - truth).abs().max().item()
    ref_err = (ref.double() - truth).abs().max().item()
    floor = 0.5 * torch.finfo(computed_in).eps * truth.abs().max().item()
    assert ours_err <= 2 * max(ref_err, floor), f"error {ours_err:.3g} vs the twin's {ref_err:.3g} (floor {floor:.3g})"
    return ours_err


def _example_cases():
    cases = []
    for spec in REGISTRY.values():
        if spec.autocast is None:
            continue
        for ex in spec.examples:
            for impl, device in IMPL_DEVICES:
                if impl not in spec.impls:
                    continue
                # Interpreted Triton is slow: one dtype, mixed inputs only.
                variants = [(torch.bfloat16, True)] if impl == "triton" else []
                variants = variants or [(d, m) for d in (torch.bfloat16, torch.float16) for m in (False, True)]
                for dtype, mixed in variants:
                    name = f"{ex.name}-{impl}-{device}-{str(dtype)[6:]}-{'mixed' if mixed else 'float32'}"
                    cases.append(pytest.param(spec, ex, impl, device, dtype, mixed, id=name))
    return cases


@pytest.mark.parametrize("spec,ex,impl,device,dtype,mixed", _example_cases())
def test_examples_under_autocast_follow_the_policy(spec, ex, impl, device, dtype, mixed):
    require(impl, device)
    policy = spec.autocast
    base = ex.make(device)
    main = next(k for k, v in ex.inputs.items() if not isinstance(v, (list, str, int, float)))
    if policy == "input":
        assert main == POLICIES[spec.name][1]
    if mixed:  # the main input already in the low dtype, the rest (parameters) float32
        base[main] = base[main].to(dtype)
    t, rt = example_leaves(base, ex.grad), example_leaves(base, ex.grad)
    with torch.autocast(device, dtype):
        ours, ref = ex.run(public_op(spec, impl), t), ex.run(public_op(spec, "ref"), rt)
    # The same op outside autocast on the inputs cast by hand: the same numbers, bit for bit.
    hand = _by_hand(policy, main, base, dtype)
    hand_t, hand_rt = example_leaves(hand, ex.grad), example_leaves(hand, ex.grad)
    hand_ours, hand_ref = ex.run(public_op(spec, impl), hand_t), ex.run(public_op(spec, "ref"), hand_rt)
    truth_t = example_leaves(hand, ex.grad, torch.float64)
    truth = ex.run(spec.ref, truth_t)
    computed_in = {"input": hand[main].dtype, "lower": dtype, "float32": torch.float32}[policy]
    for o, r, ho, hr, tr in zip(*map(tensor_outputs, (ours, ref, hand_ours, hand_ref, truth)), strict=True):
        assert o.dtype == r.dtype == ho.dtype == hr.dtype, (o.dtype, r.dtype, ho.dtype, hr.dtype)
        torch.testing.assert_close(o, ho, rtol=0, atol=0)
        torch.testing.assert_close(r, hr, rtol=0, atol=0)
        _close_to_truth(o, r, tr, computed_in)
    if not ex.grad:
        return
    grads, ref_grads = _grads(ex, t, ours), _grads(ex, rt, ref)
    truth_grads = _grads(ex, truth_t, truth)
    for k, g, rg, tg in zip(ex.grad, grads, ref_grads, truth_grads, strict=True):
        assert g.dtype == rg.dtype == base[k].dtype  # autograd returns each leaf's dtype
        _close_to_truth(g, rg, tg, computed_in, FP32_GRAD)


def _recorded_calls():
    """(stage name, args) of every registered op with a policy that an example runs (float32,
    forward and backward, on the CPU kernels)."""
    calls = {}
    for spec in REGISTRY.values():
        for ex in spec.examples:
            t = example_leaves(ex.make("cpu"), ex.grad)

            def run(ex=ex, t=t, spec=spec):
                out = ex.run(public_op(spec, "cpu"), t)
                if ex.grad:
                    _grads(ex, t, out)

            for func, args in record_op_calls(run).items():
                calls.setdefault(func.name().split("::")[1], args)
    return sorted((n, a) for n, a in calls.items() if STAGES[n].autocast is not None)


RECORDED = _recorded_calls()


@pytest.mark.parametrize("name,args", RECORDED, ids=[n for n, _ in RECORDED])
def test_the_registered_autocast_kernel_routes_a_direct_call(name, args):
    stage = STAGES[name]
    policy, main = POLICIES[name]
    named = dict(zip(stage.arg_names + ("impl",), args))
    # A bfloat16 argument among float32 ones: the main input, or the first tensor. Without the
    # autocast kernel the op would raise (one dtype) or return another dtype than the policy's.
    low = main or next(k for k, v in named.items() if torch.is_tensor(v) and v.dtype == torch.float32)
    mixed = dict(named, **{low: named[low].to(torch.bfloat16)})
    with torch.autocast("cpu", torch.bfloat16):
        out = stage.op(*mixed.values())
    expected = stage.op(*_by_hand(policy, main, mixed, torch.bfloat16).values())
    for o, e in zip(tensor_outputs(out), tensor_outputs(expected), strict=True):
        assert o.dtype == e.dtype
        torch.testing.assert_close(o, e, rtol=0, atol=0)


def test_public_checks_outside_autocast_are_unchanged():
    x, b = torch.randn(2, 3, 4, 4, dtype=torch.bfloat16), torch.randn(3)
    with pytest.raises(TypeError, match=r"alae_fast\.ops\.bias_act: x is torch.bfloat16 but b is torch.float32"):
        alae_fast.ops.bias_act(x, b)
    with torch.autocast("cpu", torch.bfloat16):
        assert alae_fast.ops.bias_act(x, b).dtype == torch.bfloat16
    # Autocast on for another device type: the CPU tensors are taken as given.
    with torch.autocast("cuda", torch.bfloat16, enabled=torch.cuda.is_available()):
        with pytest.raises(TypeError, match="all inputs must have one dtype"):
            alae_fast.ops.bias_act(x, b)


def test_float64_is_not_lowered():
    # As PyTorch's autocast: "lower" and "float32" leave float64 alone, so float64 mixed with
    # float32 stays an error that names the arguments.
    x, w = torch.randn(3, 7, dtype=torch.float64), torch.randn(5, 7)
    with torch.autocast("cpu", torch.bfloat16):
        with pytest.raises(TypeError, match=r"linear_act: x is torch.float64 but weight is torch.float32"):
            alae_fast.ops.linear_act(x, w)
        assert alae_fast.ops.linear_act(x, w.double()).dtype == torch.float64


def test_torch_compile_under_autocast():
    torch._dynamo.reset()
    x, b = torch.randn(2, 3, 5, 5, dtype=torch.bfloat16), torch.randn(3)
    w = torch.randn(4, 75)

    def fn(x, b, w):
        with torch.autocast("cpu", torch.bfloat16):
            y = alae_fast.ops.bias_act(x, b, alpha=0.2, gain=2.0, impl="cpu")
            return alae_fast.ops.linear_act(y.flatten(1), w, None, alpha=0.2, impl="cpu")

    out = torch.compile(fn, fullgraph=True)(x, b, w)
    expected = fn(x, b, w)
    assert out.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def _losses(model_cls, dtype, seed=0):
    """d_loss (R1 on reals that require grad), g_loss and ae_loss of a tiny StyleALAE with the
    same seeds, each under ``torch.autocast("cpu", dtype)`` (None: float32, no autocast), and
    whether every parameter gradient of their backward (outside autocast) is finite."""
    torch.manual_seed(seed)
    model = model_cls(startf=8, maxf=16, layer_count=2, latent_size=16, mapping_layers=2, channels=1)
    reals = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(seed + 1)).requires_grad_()
    lod = 1  # the full 8x8 resolution
    calls = {
        "d": lambda: model.d_loss(reals, lod, 1.0, r1_gamma=10.0),
        "g": lambda: model.g_loss(4, lod, 1.0),
        "ae": lambda: model.ae_loss(4, lod, 1.0),
    }
    losses, finite = {}, True
    for i, (name, call) in enumerate(calls.items()):
        torch.manual_seed(seed + 10 + i)
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype or torch.bfloat16, enabled=dtype is not None):
            loss = call()
        loss.backward()
        losses[name] = loss.item()
        finite &= all(p.grad is None or bool(p.grad.isfinite().all()) for p in model.parameters())
    return losses, finite


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("model", ["fast", "reference"])
def test_tiny_style_alae_trains_under_autocast(model, dtype):
    import alae_fast.models
    import alae_fast.reference

    cls = alae_fast.models.StyleALAE if model == "fast" else alae_fast.reference.StyleALAE
    full, full_finite = _losses(cls, None)
    low, low_finite = _losses(cls, dtype)
    assert full_finite and low_finite
    for name in full:
        # bf16 rounds each op's result by up to 2^-9 relative (fp16: 2^-12); the losses pass
        # through ~20 rounded ops of the tiny model, so a bound of 20 * 2^-9 < 4% holds for
        # bf16 without cancellation; 10% allows for the softplus/R1 amplification.
        assert math.isfinite(low[name])
        assert abs(low[name] - full[name]) <= 0.1 * abs(full[name]), (name, low[name], full[name])
