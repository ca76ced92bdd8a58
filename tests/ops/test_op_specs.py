"""The generic tests of every op, derived from its declaration in the registry
(:data:`alae_fast.ops._spec.REGISTRY`): opcheck of every registered op an example runs,
``torch.compile``, gradcheck/gradgradcheck as far as the op is differentiable, float16/bfloat16
against a float64 truth, and argument errors read from the schema. The per-op test files add
what a declaration cannot say: odd shapes, layouts, degenerate inputs, known values."""

from __future__ import annotations

import pytest
import torch
from support import FP32_GRAD
from support import FP32_OUT
from support import IMPL_DEVICES
from support import assert_low_precision_close
from support import example_leaves
from support import public_op
from support import record_op_calls
from support import require
from support import tensor_outputs

import alae_fast.ops
from alae_fast.ops._spec import REGISTRY
from alae_fast.ops._spec import STAGES

EXAMPLES = [(spec, ex) for spec in REGISTRY.values() for ex in spec.examples]
CASES = [(spec, ex, impl, device) for spec, ex in EXAMPLES for impl, device in IMPL_DEVICES if impl in spec.impls]
CASE_IDS = [f"{ex.name}-{impl}-{device}" for _, ex, impl, device in CASES]
case = pytest.mark.parametrize("spec,ex,impl,device", CASES, ids=CASE_IDS)


def _grads(spec, ex, t, out, rounded_to=torch.float64, seed=5):
    """Gradients of the example's ``grad`` inputs for a seeded upstream gradient (its values
    rounded to ``rounded_to`` first, so that a float64 truth sees the same upstream)."""
    if spec.grad_order == 0 or not ex.grad:
        return []
    outs = [o for o in tensor_outputs(out) if o.requires_grad]
    g = torch.Generator().manual_seed(seed)
    ups = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(rounded_to).to(o) for o in outs]
    return list(torch.autograd.grad(outs, [t[k] for k in ex.grad], ups, allow_unused=True))


@case
def test_opcheck_every_op_the_example_runs(spec, ex, impl, device):
    require(impl, device)
    t = example_leaves(ex.make(device), ex.grad)
    calls = record_op_calls(lambda: _grads(spec, ex, t, ex.run(public_op(spec, impl), t)), keep_requires_grad=True)
    expected = {spec.stage.name} if spec.stage is not None else set()
    assert expected <= {f.name().split("::")[1] for f in calls}
    assert calls, "the example ran no registered op"
    for func, args in calls.items():
        torch.library.opcheck(func, args)


@case
def test_torch_compile_matches_the_reference(spec, ex, impl, device):
    require(impl, device)
    torch._dynamo.reset()
    base = ex.make(device)
    t, rt = example_leaves(base, ex.grad), example_leaves(base, ex.grad)
    public = public_op(spec, impl)
    # A composition takes autograd.grad inside, which Dynamo does not trace: graph breaks.
    compiled = torch.compile(lambda inputs: ex.run(public, inputs), fullgraph=spec.compose is None)
    ours, ref = compiled(t), ex.run(spec.ref, rt)
    for o, r in zip(tensor_outputs(ours), tensor_outputs(ref), strict=True):
        torch.testing.assert_close(o, r, **FP32_OUT)
    if spec.compose is not None:
        return  # its backward is a double backward, which compiled autograd does not support
    for g, rg in zip(_grads(spec, ex, t, ours), _grads(spec, ex, rt, ref), strict=True):
        torch.testing.assert_close(g, rg, **FP32_GRAD)


GRAD_CASES = [c for c in CASES if c[0].grad_order > 0]


@pytest.mark.parametrize("spec,ex,impl,device", GRAD_CASES, ids=[f"{c[1].name}-{c[2]}-{c[3]}" for c in GRAD_CASES])
def test_gradcheck_float64_to_the_declared_order(spec, ex, impl, device):
    require(impl, device)
    t = example_leaves(ex.make(device, torch.float64), ex.grad)
    public = public_op(spec, impl)

    def fn(*xs):
        return tuple(tensor_outputs(ex.run(public, dict(t, **dict(zip(ex.grad, xs))))))

    xs = tuple(t[k] for k in ex.grad)
    # fast_mode: random projections of the Jacobian (still fails on a wrong gradient), cheap
    # enough for the interpreted Triton kernels.
    assert torch.autograd.gradcheck(fn, xs, fast_mode=True)
    backward = STAGES.get(f"{spec.name}_backward")
    if spec.grad_order >= 2:
        assert torch.autograd.gradgradcheck(fn, xs, fast_mode=True)
    elif backward is not None and not backward.differentiable:  # refuses, never wrong numbers
        out = fn(*xs)
        grads = torch.autograd.grad(out, xs, [torch.ones_like(o) for o in out], create_graph=True, allow_unused=True)
        with pytest.raises(RuntimeError, match="first-order gradients only"):
            torch.autograd.grad(sum(g.sum() for g in grads if g is not None), xs, allow_unused=True)


@case
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_within_twice_pytorch_error(spec, ex, impl, device, dtype):
    require(impl, device)
    base = ex.make(device)
    t, rt = example_leaves(base, ex.grad, dtype), example_leaves(base, ex.grad, dtype)
    truth_t = example_leaves(t, ex.grad, torch.float64)  # the truth of the rounded inputs
    ours, ref = ex.run(public_op(spec, impl), t), ex.run(spec.ref, rt)
    truth = ex.run(spec.ref, truth_t)
    for o, r, tr in zip(tensor_outputs(ours), tensor_outputs(ref), tensor_outputs(truth), strict=True):
        assert_low_precision_close(o, r, tr)
    for g, rg, tg in zip(
        _grads(spec, ex, t, ours, dtype),
        _grads(spec, ex, rt, ref, dtype),
        _grads(spec, ex, truth_t, truth, dtype),
        strict=True,
    ):
        assert_low_precision_close(g, rg, tg)


def _schema_arguments(spec, ex):
    """(name, schema type) of the example's arguments that the schema declares."""
    inputs = ex.make("cpu")
    return [(n, ty) for n, ty in zip(spec.stage.arg_names, spec.stage.arg_types) if n in inputs]


ARG_CASES = [(spec, ex) for spec, ex in EXAMPLES if spec.stage is not None]


@pytest.mark.parametrize("spec,ex", ARG_CASES, ids=[ex.name for _, ex in ARG_CASES])
def test_argument_errors_name_the_argument(spec, ex):
    # Once per op: the checks run before an implementation is chosen.
    public = getattr(alae_fast.ops, spec.name)
    bad_values = {
        "Tensor": [
            (TypeError, "must be a torch.Tensor, got list", lambda v: [1.0]),
            (TypeError, "must be a floating-point tensor", lambda v: v.long()),
            (ValueError, "must not be empty", lambda v: v[:0]),
        ],
        "float": [
            (ValueError, "must be finite, got nan", lambda v: float("nan")),
            (TypeError, "must be a Python float, got str", lambda v: "0.5"),
        ],
    }
    checked = 0
    for name, ty in _schema_arguments(spec, ex):
        for error, message, make_bad in bad_values.get(ty.rstrip("?"), []):
            inputs = ex.make("cpu")
            inputs[name] = make_bad(inputs[name])
            with pytest.raises(error, match=rf"alae_fast\.ops\.{spec.name}: .*{name}.*{message}"):
                ex.run(public, inputs)
            checked += 1
    assert checked >= 3
    with pytest.raises(ValueError, match="impl must be one of"):
        ex.run(lambda *a, **kw: public(*a, **kw, impl="fortran"), ex.make("cpu"))
