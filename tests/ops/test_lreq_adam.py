import copy
import math

import pytest
import torch
from support import impl_device
from support import require
from torch import nn

from alae_fast import optim
from alae_fast import reference
from alae_fast.ops import lreq_adam_step_
from alae_fast.ops import lreq_adam_step_ref
from alae_fast.reference import layers

OP = torch.ops.alae_fast.lreq_adam_step_.default

# 20 parameters of mixed odd sizes, one spanning several kernel chunks. The first few hold the
# special cases (zeros, a wide dynamic range, several chunks): the slower tests take those.
SHAPES = [
    (1,),
    (17, 5),
    (8197,),
    (4, 3, 3, 3),
    (3,),
    (1000,),
    (2, 3, 5, 7),
    (33,),
    (17,),
    (3, 3),
    (1, 1),
    (513,),
    (4097,),
    (7, 11),
    (65,),
    (129, 3),
    (31,),
    (2,),
    (9, 9),
    (5, 1, 3),
]
FEW = 4
BETA2 = 0.99
# The update must reproduce PyTorch's own rounded ops on the device bit for bit. One pair cannot:
# the Triton interpreter computes with NumPy, whose sqrt is correctly rounded, while PyTorch's
# CPU sqrt (MKL) is not (float32: 1 ulp off for ~20% of inputs on this CPU), and PyTorch's CPU
# addcmul_ is one FMA. There the result is held to the reference within what that causes: v
# to 1 ulp, the update -step * g / denom to two roundings (2 ulps of |old p| + |new p|).
NOT_BIT_EXACT = {("triton", "cpu")}


def _ulps(impl, device):
    return 2 if (impl, device) in NOT_BIT_EXACT else 0


def _randn(shape, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(device, dtype)


def _grads(dtype, device, seed, count=None):
    """Gradients with exact zeros, and one tensor of a wide dynamic range (tiny squares,
    subnormal for float32, and huge ones)."""
    grads = [_randn(s, dtype, device, seed * 100 + i) for i, s in enumerate(SHAPES[:count])]
    grads[1].view(-1)[::3] = 0.0
    if dtype in (torch.float32, torch.float64):
        g = torch.Generator().manual_seed(seed)
        scale = 10.0 ** (torch.rand(SHAPES[2], generator=g, dtype=torch.float64) * 36 - 18)
        grads[2] = (grads[2].double() * scale).to(dtype)
    return grads


def _state(dtype, device, count=None):
    params = [_randn(s, dtype, device, 1000 + i) for i, s in enumerate(SHAPES[:count])]
    return params, [torch.zeros_like(p) for p in params]


def _step_sizes(step, lr=0.01, count=None):
    # lr * sqrt(1 - beta2^t) * a per-parameter equalization coefficient, as the optimizer does.
    return [lr * math.sqrt(1.0 - BETA2**step) / math.sqrt(1 + i) for i in range(len(SHAPES[:count]))]


def _ulp(t):
    """The spacing of the floating-point numbers at |t| (t's dtype), as float64."""
    mantissa_bits = {torch.float16: 10, torch.bfloat16: 7, torch.float32: 23, torch.float64: 52}[t.dtype]
    _, exponent = torch.frexp(t.double().abs())
    tiny = torch.finfo(t.dtype).tiny
    return torch.maximum(
        torch.ldexp(torch.ones_like(t, dtype=torch.float64), exponent - 1 - mantissa_bits),
        torch.full_like(t, tiny * 2.0**-mantissa_bits, dtype=torch.float64),
    )


def _assert_within_ulps(ours, ref, scale, ulps, what):
    """|ours - ref| <= ulps ulps of |scale| (elementwise; ulps=0 asks for equality)."""
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    if ulps == 0:
        diff = ours != ref
        assert not diff.any(), (
            f"{what}: {int(diff.sum())} of {ours.numel()} elements differ, "
            f"by up to {(ours.double() - ref.double()).abs().max():.3g}"
        )
        return
    err = (ours.double() - ref.double()).abs() / _ulp(scale)
    assert (err <= ulps).all(), f"{what}: {err.max():.3g} ulps off (allowed {ulps})"


def _assert_step_matches(params, vs, ref_params, ref_vs, before, ulps, what):
    """The updated state against the reference's: v to ``ulps`` ulps, p to ``ulps`` ulps of
    |old p| + |new p| (which bounds the update's size: p + update may cancel)."""
    for i, (p, v, rp, rv, old) in enumerate(zip(params, vs, ref_params, ref_vs, before)):
        _assert_within_ulps(v, rv, rv, ulps, f"{what}: exp_avg_sqs[{i}]")
        _assert_within_ulps(p, rp, rp.abs() + old.abs(), ulps, f"{what}: params[{i}]")


@impl_device
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bit_exact_against_reference_over_several_steps(impl, device, dtype):
    require(impl, device)
    ulps = _ulps(impl, device)
    ref_p, ref_v = _state(dtype, device)
    for step in range(1, 4):
        grads = _grads(dtype, device, step)
        kept = [g.clone() for g in grads]
        sizes = _step_sizes(step, lr=[0.01, 1.0, 0.002][step - 1])
        # Each step from the reference's state, so that (allowed) differences cannot compound.
        ours_p, ours_v = copy.deepcopy((ref_p, ref_v))
        before = [p.clone() for p in ref_p]
        lreq_adam_step_(ours_p, grads, ours_v, sizes, beta2=BETA2, eps=1e-8, impl=impl)
        lreq_adam_step_ref(ref_p, grads, ref_v, sizes, beta2=BETA2, eps=1e-8)
        _assert_step_matches(ours_p, ours_v, ref_p, ref_v, before, ulps, f"step {step}")
        for g, k in zip(grads, kept):
            assert torch.equal(g, k), "the gradients must not be modified"


@impl_device
@pytest.mark.parametrize("beta2,eps", [(0.0, 1e-3), (0.5, 1.0), (0.999, 1e-8)])
def test_bit_exact_for_other_hyper_parameters(impl, device, beta2, eps):
    require(impl, device)
    ours_p, _ = _state(torch.float32, device, FEW)
    ours_v = [_randn(p.shape, torch.float32, device, 7).abs() for p in ours_p]
    ref_p, ref_v = copy.deepcopy((ours_p, ours_v))
    before = [p.clone() for p in ours_p]
    grads, sizes = _grads(torch.float32, device, 3, FEW), _step_sizes(3, count=FEW)
    lreq_adam_step_(ours_p, grads, ours_v, sizes, beta2=beta2, eps=eps, impl=impl)
    lreq_adam_step_ref(ref_p, grads, ref_v, sizes, beta2=beta2, eps=eps)
    _assert_step_matches(ours_p, ours_v, ref_p, ref_v, before, _ulps(impl, device), f"beta2={beta2}")


def _same_sign_grads(params, dtype, device, step):
    """Gradients of p's sign: grad + wd * p without cancellation, which would magnify the one
    rounding by which PyTorch's grad.add(p, alpha=wd) (an FMA on some devices) and the kernels
    may differ."""
    return [torch.where(p >= 0, g.abs(), -g.abs()) for p, g in zip(params, _grads(dtype, device, step, len(params)))]


def _check_two_decayed_steps(impl, dtype, device, eps, weight_decay, ulps):
    """Two steps on same-sign gradients, each from the reference's state, against it."""
    ref_p, ref_v = _state(dtype, device, FEW)
    for step in range(1, 3):
        grads = _same_sign_grads(ref_p, dtype, device, step)
        sizes = _step_sizes(step, count=FEW)
        ours_p, ours_v = copy.deepcopy((ref_p, ref_v))
        before = [p.clone() for p in ref_p]
        lreq_adam_step_(ours_p, grads, ours_v, sizes, beta2=BETA2, eps=eps, weight_decay=weight_decay, impl=impl)
        lreq_adam_step_ref(ref_p, grads, ref_v, sizes, beta2=BETA2, eps=eps, weight_decay=weight_decay)
        _assert_step_matches(ours_p, ours_v, ref_p, ref_v, before, ulps, f"step {step}")


@impl_device
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weight_decay_matches_reference_closely(impl, device, dtype):
    require(impl, device)
    # g may differ by one rounding, which v squares: two relative roundings, 4 ulps.
    _check_two_decayed_steps(impl, dtype, device, 1e-8, 0.01, 4)


@impl_device
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_within_one_ulp(impl, device, dtype, weight_decay):
    require(impl, device)
    # PyTorch computes each float16/bfloat16 op in float32 and rounds the result; its float32
    # arithmetic (FMA or not, which sqrt) varies by device, so one final rounding may differ:
    # one ulp. With weight decay g = grad + wd * p may differ by one rounding, which v squares
    # (two relative roundings: up to 4 ulps).
    _check_two_decayed_steps(impl, dtype, device, 1e-4, weight_decay, 1 if weight_decay == 0 else 4)


@impl_device
def test_empty_list_and_single_tensor(impl, device):
    require(impl, device)
    lreq_adam_step_([], [], [], [], beta2=BETA2, eps=1e-8, impl=impl)
    p, v = torch.tensor([1.0, -2.0], device=device), torch.zeros(2, device=device)
    lreq_adam_step_([p], [torch.tensor([0.5, 0.0], device=device)], [v], [0.25], beta2=0.75, eps=0.5, impl=impl)
    # v = 0.25 * g^2 = [0.0625, 0]; denom = [0.75, 0.5]; p -= 0.25 * g / denom.
    assert v.tolist() == [0.0625, 0.0]
    torch.testing.assert_close(p, torch.tensor([1.0 - 0.125 / 0.75, -2.0], device=device))


def _model(device):
    torch.manual_seed(0)
    model = nn.Sequential(layers.Linear(9, 17), nn.LeakyReLU(0.2), layers.Linear(17, 3, lrmul=0.1), nn.Conv1d(3, 5, 1))
    # A float64 parameter (its own batch) and a non-contiguous one (stepped by the reference).
    model.register_parameter("scale", nn.Parameter(torch.ones(3, dtype=torch.float64)))
    model.register_parameter("mix", nn.Parameter(torch.randn(3, 3).t()))
    return model.to(device)


def _loss(model, step, device):
    g = torch.Generator().manual_seed(step)
    x = torch.randn(4, 9, generator=g).to(device)
    h = model[2](model[1](model[0](x))) * model.scale.float() @ model.mix
    return model[3](h.unsqueeze(-1)).square().mean()


def _train(model, opt, steps, device, first=1):
    for step in range(first, first + steps):
        opt.zero_grad()
        _loss(model, step, device).backward()
        opt.step()


def _assert_same_parameters(a, b, exact):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        if exact:
            assert torch.equal(p, q), name
        else:
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)


@impl_device
def test_fused_optimizer_matches_reference_and_shares_state_dicts(impl, device):
    require(impl, device)
    kwargs = dict(lr=0.003, betas=(0.0, 0.99), eps=1e-8)
    exact = (impl, device) not in NOT_BIT_EXACT
    fused_model, ref_model = _model(device), _model(device)
    assert not fused_model.mix.is_contiguous()
    fused = optim.LREQAdam(fused_model.parameters(), impl=impl, **kwargs)
    ref = reference.LREQAdam(ref_model.parameters(), **kwargs)
    for step in range(1, 6):
        _train(fused_model, fused, 1, device, first=step)
        _train(ref_model, ref, 1, device, first=step)
        _assert_same_parameters(fused_model, ref_model, exact)
    # Each optimizer's state_dict continues the other's run.
    for src_opt, cls in ((ref, optim.LREQAdam), (fused, reference.LREQAdam)):
        model_a, model_b = copy.deepcopy(fused_model), copy.deepcopy(ref_model)
        opt_a = cls(model_a.parameters(), **kwargs, **(dict(impl=impl) if cls is optim.LREQAdam else {}))
        opt_a.load_state_dict(copy.deepcopy(src_opt.state_dict()))
        opt_b = type(src_opt)(model_b.parameters(), **kwargs, **(dict(impl=impl) if src_opt is fused else {}))
        opt_b.load_state_dict(src_opt.state_dict())
        _train(model_a, opt_a, 2, device, first=6)
        _train(model_b, opt_b, 2, device, first=6)
        _assert_same_parameters(model_a, model_b, exact)
        assert opt_a.state_dict()["state"][0]["step"] == 7


@impl_device
def test_fused_optimizer_with_weight_decay_close_to_reference(impl, device):
    require(impl, device)
    kwargs = dict(lr=0.003, betas=(0.0, 0.9), eps=1e-8, weight_decay=0.1)
    fused_model, ref_model = _model(device), _model(device)
    _train(fused_model, optim.LREQAdam(fused_model.parameters(), impl=impl, **kwargs), 5, device)
    _train(ref_model, reference.LREQAdam(ref_model.parameters(), **kwargs), 5, device)
    for p, q in zip(fused_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


@impl_device
def test_opcheck(impl, device):
    require(impl, device)
    params, vs = _state(torch.float32, device, 4)
    vs = [v + 0.5 for v in vs]
    grads = _grads(torch.float32, device, 1, 4)
    torch.library.opcheck(OP, (params, grads, vs, _step_sizes(1, count=4), BETA2, 1e-4, 0.0, impl))
    torch.library.opcheck(OP, (params, grads, vs, _step_sizes(2, count=4), 0.5, 1e-3, 0.01, impl))


@impl_device
def test_torch_compile_fullgraph(impl, device):
    require(impl, device)
    params, vs = _state(torch.float32, device, 5)
    grads, sizes = _grads(torch.float32, device, 1, 5), _step_sizes(1, count=5)
    ref_p, ref_v = copy.deepcopy((params, vs))
    before = [p.clone() for p in params]

    def step(params, grads, vs):
        lreq_adam_step_(params, grads, vs, sizes, beta2=BETA2, eps=1e-8, impl=impl)

    torch.compile(step, fullgraph=True)(params, grads, vs)
    lreq_adam_step_ref(ref_p, grads, ref_v, sizes, beta2=BETA2, eps=1e-8)
    _assert_step_matches(params, vs, ref_p, ref_v, before, _ulps(impl, device), "compiled")


def test_bad_inputs_raise_clear_errors():
    # Every check runs before the impl is resolved, so one run covers all impls.
    p, g, v = (
        [torch.zeros(3), torch.zeros(2, 2)],
        [torch.ones(3), torch.ones(2, 2)],
        [torch.zeros(3), torch.zeros(2, 2)],
    )
    kw = dict(beta2=0.99, eps=1e-8)
    with pytest.raises(
        ValueError,
        match=r"lreq_adam_step_: params, grads, exp_avg_sqs and "
        r"step_sizes must have one length, got 2, 1, 2 and 2",
    ):
        lreq_adam_step_(p, g[:1], v, [0.1, 0.1], **kw)
    with pytest.raises(ValueError, match=r"must have one length, got 2, 2, 2 and 3"):
        lreq_adam_step_(p, g, v, [0.1, 0.1, 0.1], **kw)
    with pytest.raises(
        TypeError,
        match=r"lreq_adam_step_: params\[0\] is torch.float32 but "
        r"grads\[1\] is torch.float64",
    ):
        lreq_adam_step_(p, [g[0], g[1].double()], v, [0.1, 0.1], **kw)
    with pytest.raises(TypeError, match=r"params\[0\] is torch.float32 but params\[1\] is torch.float16"):
        lreq_adam_step_([p[0], p[1].half()], g, v, [0.1, 0.1], **kw)
    with pytest.raises(ValueError, match=r"lreq_adam_step_: grads\[1\] must be contiguous"):
        lreq_adam_step_(p, [g[0], torch.ones(2, 2).t()], v, [0.1, 0.1], **kw)
    with pytest.raises(ValueError, match=r"lreq_adam_step_: params\[0\] must be contiguous"):
        lreq_adam_step_([torch.zeros(6)[::2], p[1]], g, v, [0.1, 0.1], **kw)
    with pytest.raises(
        ValueError,
        match=r"lreq_adam_step_: params\[1\] and exp_avg_sqs\[1\] must "
        r"have the same shape, got \(2, 2\) and \(4,\)",
    ):
        lreq_adam_step_(p, g, [v[0], torch.zeros(4)], [0.1, 0.1], **kw)
    with pytest.raises(ValueError, match=r"lreq_adam_step_: params\[0\] is on cpu but exp_avg_sqs\[0\] is on meta"):
        lreq_adam_step_(p, g, [v[0].to("meta"), v[1]], [0.1, 0.1], **kw)
    with pytest.raises(TypeError, match=r"lreq_adam_step_: params\[0\] must be a floating-point tensor.*torch.int64"):
        lreq_adam_step_([t.long() for t in p], g, v, [0.1, 0.1], **kw)
    with pytest.raises(TypeError, match=r"lreq_adam_step_: grads\[0\] must be a torch.Tensor, got list"):
        lreq_adam_step_(p, [[1.0, 1.0, 1.0], g[1]], v, [0.1, 0.1], **kw)
    for beta2 in (1.0, -0.1, 1.5):
        with pytest.raises(
            ValueError,
            match=rf"lreq_adam_step_: beta2 must be in \[0, 1\), got "
            rf"{beta2}",
        ):
            lreq_adam_step_(p, g, v, [0.1, 0.1], beta2=beta2, eps=1e-8)
    with pytest.raises(ValueError, match=r"lreq_adam_step_: step_sizes\[1\] must be finite, got nan"):
        lreq_adam_step_(p, g, v, [0.1, float("nan")], **kw)
    with pytest.raises(ValueError, match=r"lreq_adam_step_: eps must be finite, got inf"):
        lreq_adam_step_(p, g, v, [0.1, 0.1], beta2=0.99, eps=float("inf"))
    with pytest.raises(TypeError, match=r"lreq_adam_step_: weight_decay must be a Python float, got Tensor"):
        lreq_adam_step_(p, g, v, [0.1, 0.1], weight_decay=torch.tensor(0.1), **kw)
    # Nothing was touched by the refused calls.
    assert all((t == 0).all() for t in p + v)


# ---- The CUDA rounding sequence (fused multiply-adds) and the cached device tables.


def _round_exact(value, dtype):
    """The exact rational ``value`` rounded to nearest even in numpy ``dtype`` (float32 or
    float64): float() of a Fraction is correctly rounded to float64; a float32 result is
    then picked among the float32 neighbours by exact distance (no double rounding)."""
    from fractions import Fraction

    import numpy as np

    x = np.float64(float(value))
    if dtype == np.float64:
        return x
    r = np.float32(x)
    best = None
    for c in (r, np.nextafter(r, np.float32(np.inf)), np.nextafter(r, np.float32(-np.inf))):
        d = abs(Fraction(float(c)) - value)
        even = int(c.view(np.uint32)) % 2 == 0
        if best is None or d < best[0] or (d == best[0] and even):
            best = (d, c)
    return best[1]


def _adam_emulated(p, g, v, neg_step, beta2, one_minus_beta2, eps, weight_decay, fused):
    """One element's update, every operation exactly rounded in p's numpy dtype: PyTorch
    CUDA's sequence (fused: fma(wd, p, g), fma(1 - b2, g * g, v), fma(-s, g / d, p)) or its
    CPU one (each multiply and add rounded apart)."""
    from fractions import Fraction

    import numpy as np

    def F(x):  # noqa: N802 - the exact value of a numpy float (or an exact rational)
        return x if isinstance(x, Fraction) else Fraction(float(x))

    dt = type(p)
    r = lambda value: _round_exact(value, dt)  # noqa: E731
    if weight_decay != 0:
        g = r(F(weight_decay) * F(p) + F(g)) if fused else r(F(g) + F(r(F(weight_decay) * F(p))))
    v = r(F(v) * F(beta2))
    gg = F(r(F(g) * F(g))) if fused else None
    v = r(F(one_minus_beta2) * gg + F(v)) if fused else r(F(v) + F(r(F(r(F(one_minus_beta2) * F(g))) * F(g))))
    denom = r(F(dt(np.sqrt(v))) + F(eps))  # numpy's sqrt is correctly rounded
    if fused:
        p = r(F(neg_step) * F(r(F(g) / F(denom))) + F(p))
    else:
        p = r(F(p) + F(r(F(r(F(neg_step) * F(g))) / F(denom))))
    return p, v


@pytest.mark.triton_interpreted
@pytest.mark.parametrize("impl", ["triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_cuda_rounding_sequence_is_exact_fma(impl, dtype, weight_decay):
    # fused=True is the sequence taken on CUDA tensors; the interpreter's tl.fma rounds once
    # (numpy emulation of fma), so the kernel must equal the exact emulation bit for bit.
    require(impl, "cpu")
    import numpy as np

    from alae_fast.ops._triton import lreq_adam as kernel

    shapes = [(257,), (3, 41)]
    params = [_randn(s, dtype, "cpu", 10 + i) for i, s in enumerate(shapes)]
    grads = [_randn(s, dtype, "cpu", 20 + i) * 0.1 for i, s in enumerate(shapes)]
    sqs = [_randn(s, dtype, "cpu", 30 + i).square() * 0.01 for i, s in enumerate(shapes)]
    steps = [1e-3, 3.7e-3]
    eps = 1e-8
    expected, unfused = [], []
    nd = np.float32 if dtype == torch.float32 else np.float64
    scal = [nd(s) for s in (BETA2, 1.0 - BETA2, eps, weight_decay)]
    for p, g, v, s in zip(params, grads, sqs, steps):
        args = [
            (nd(a), nd(b), nd(c)) for a, b, c in zip(p.flatten().tolist(), g.flatten().tolist(), v.flatten().tolist())
        ]
        for fused, out in ((True, expected), (False, unfused)):
            out.append([_adam_emulated(a, b, c, nd(-s), *scal, fused) for a, b, c in args])
    kernel.lreq_adam_step_(params, grads, sqs, steps, BETA2, eps, weight_decay, fused=True)
    differs = 0
    for p, v, exp, sep in zip(params, sqs, expected, unfused):
        exp_p = torch.tensor([float(e[0]) for e in exp], dtype=dtype).view(p.shape)
        exp_v = torch.tensor([float(e[1]) for e in exp], dtype=dtype).view(p.shape)
        assert torch.equal(p, exp_p)
        assert torch.equal(v, exp_v)
        differs += sum(a[0] != b[0] for a, b in zip(exp, sep))
    # The two sequences differ on some elements, so this test tells them apart.
    assert differs > 0


@pytest.mark.triton_interpreted
@pytest.mark.parametrize("impl", ["triton"])
def test_device_tables_are_cached_and_rebuilt_when_a_tensor_moves(impl):
    require(impl, "cpu")
    from alae_fast.ops._triton import lreq_adam as kernel

    kernel._table_cache.clear()
    shapes = [(300,), (5, 7)]
    params = [_randn(s, torch.float32, "cpu", i) for i, s in enumerate(shapes)]
    grads = [_randn(s, torch.float32, "cpu", 5 + i) for i, s in enumerate(shapes)]
    sqs = [torch.zeros(s) for s in shapes]
    kernel.lreq_adam_step_(params, grads, sqs, [1e-3, 1e-3], BETA2, 1e-8, 0.0)
    assert len(kernel._table_cache) == 1
    first = next(iter(kernel._table_cache.values()))
    kernel.lreq_adam_step_(params, grads, sqs, [1e-3, 1e-3], BETA2, 1e-8, 0.0)
    assert len(kernel._table_cache) == 1 and next(iter(kernel._table_cache.values())) is first
    # A new gradient tensor (another address) must be read, not the cached old one: the same
    # step on copies with freshly built tables gives the expected values.
    new_grads = [grads[0], _randn(shapes[1], torch.float32, "cpu", 99)]
    copies = [[t.clone() for t in ts] for ts in (params, sqs)]
    kernel.lreq_adam_step_(params, new_grads, sqs, [1e-3, 1e-3], BETA2, 1e-8, 0.0)
    assert len(kernel._table_cache) == 2
    kernel._table_cache.clear()
    kernel.lreq_adam_step_(copies[0], new_grads, copies[1], [1e-3, 1e-3], BETA2, 1e-8, 0.0)
    for ours, expected in zip(params + sqs, copies[0] + copies[1]):
        assert torch.equal(ours, expected)
