"""Walks the op registry: every registered op belongs to a declared op, and every declared op
has a reference twin with its signature, a fake, examples, a test file and a benchmark that
call it (CONTRIBUTING.md, "Adding an op")."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from torch._library import simple_registry

import alae_fast.ops
from alae_fast.ops._spec import LIB
from alae_fast.ops._spec import REGISTRY
from alae_fast.ops._spec import STAGES

ROOT = Path(__file__).resolve().parents[2]
SPECS = list(REGISTRY.values())
by_name = pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])


def test_every_op_in_the_namespace_is_declared_and_owned():
    registered = {name.split("::")[1].split(".")[0] for name in LIB._op_defs}
    assert registered == set(STAGES)
    owned = {s.stage.name for s in SPECS if s.stage is not None}
    for name in STAGES:
        assert name in owned or name.removesuffix("_backward") in owned, name


@by_name
def test_public_op_and_reference_twin_share_a_signature(spec):
    public = getattr(alae_fast.ops, spec.name)
    twin = spec.name.removesuffix("_") + "_ref"  # lreq_adam_step_ -> lreq_adam_step_ref
    assert getattr(alae_fast.ops, twin) is spec.ref
    params = list(inspect.signature(public).parameters.values())
    assert params[-1].name == "impl" and params[-1].kind is inspect.Parameter.KEYWORD_ONLY
    assert params[:-1] == list(inspect.signature(spec.ref).parameters.values())
    assert spec.name in alae_fast.ops.__all__ and twin in alae_fast.ops.__all__


@by_name
def test_registered_ops_have_fakes(spec):
    stages = [] if spec.stage is None else [spec.stage]
    stages += [STAGES[n] for n in (f"{spec.name}_backward",) if n in STAGES]
    for stage in stages:
        entry = simple_registry.singleton.find(f"alae_fast::{stage.name}")
        assert entry.fake_impl.kernel is not None, stage.name
        assert stage.op is getattr(torch.ops.alae_fast, stage.name).default


@by_name
def test_examples_cover_the_differentiable_inputs(spec):
    assert spec.examples, f"{spec.name} declares no example"
    for ex in spec.examples:
        inputs = ex.make("cpu")
        assert set(ex.grad) <= set(inputs), ex.name
        assert (spec.grad_order > 0) == bool(ex.grad), ex.name


@by_name
def test_op_has_a_test_file_and_a_benchmark_that_call_it(spec):
    test = ROOT / "tests" / "ops" / f"test_{spec.family}.py"
    bench = ROOT / "benchmarks" / f"test_{spec.family}.py"
    for path in (test, bench):
        assert path.is_file(), f"{spec.name}: {path.relative_to(ROOT)} is missing"
    test_text, bench_text = test.read_text(), bench.read_text()
    # The op's own tests compare it with its twin; its benchmark times it.
    twin = spec.name.removesuffix("_") + "_ref"
    assert f"{spec.name}(" in test_text and twin in test_text, test.name
    assert f"{spec.name}(" in bench_text or f"ops.{spec.name}" in bench_text, bench.name
