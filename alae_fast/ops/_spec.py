"""One declaration per op: registration, dispatch and the public function's tail.

An op is declared in two steps (see CONTRIBUTING.md, "Adding an op"):

* :func:`define` registers each ``torch.ops.alae_fast`` op (the forward, and a backward op
  where there is one) from its schema, a kernel function, a fake and an autograd formula.
  The schema is written without the ``impl`` argument; ``define`` appends ``str impl``, which
  picks the kernels at run time and is a constant of a ``torch.compile`` graph.
* :class:`OpSpec` ties the public op to its reference twin, its forward op, the
  implementations it has, how far it can be differentiated and example inputs. Constructing
  one adds it to :data:`REGISTRY`, which the generic tests, ``alae-fast doctor`` and the
  trainer's op summary read. :meth:`OpSpec.__call__` is the public function's tail: it
  resolves ``impl`` and handles ``"ref"``, the only place that does.

A kernel function receives the implementation's kernel namespace first: the loaded extension
(``torch.ops.alae_fast_C``) for ``cpu`` and ``cuda``, the op's Triton module for ``triton``,
so one function serves all three (the C++ and Triton kernels share names and signatures).

Each op declares how ``torch.autocast`` treats it (``define(..., autocast=...)``, see
:data:`AUTOCAST_POLICIES`); ``define`` registers the policy at the dispatcher's AutocastCPU and
AutocastCUDA keys, and :meth:`OpSpec.__call__` applies the same policy to the reference twin.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from types import SimpleNamespace
from typing import Any

import torch

from . import _extension
from ._dispatch import IMPLS
from ._dispatch import ImplUnavailableError
from ._dispatch import resolve_impl

__all__ = ["LIB", "REGISTRY", "Stage", "Example", "OpSpec", "define", "native", "first_order_only", "Rand"]
__all__ += ["AUTOCAST_POLICIES", "autocast_cast", "autocast_dtypes"]

LIB = torch.library.Library("alae_fast", "DEF")

# Every public op by name, in declaration order.
REGISTRY: dict[str, OpSpec] = {}
# Every registered torch.ops.alae_fast op by name, with its declaration.
STAGES: dict[str, Stage] = {}

_SCHEMA = re.compile(r"^(\w+)\((.*)\) -> (.+)$")

#: How ``torch.autocast`` runs an op, inside a region autocast is enabled for (outside it the
#: inputs are taken as given). Each casts the op's floating tensor inputs on the region's
#: device type, then runs the op with autocast off:
#:
#: * ``"lower"``: to the autocast dtype, as PyTorch does for conv2d and linear (GEMM-like ops);
#: * ``"float32"``: to float32, as PyTorch does for its losses;
#: * ``"input"``: to the dtype of the main input, the first tensor argument that is not an
#:   incoming gradient (``grad``, ``grad_*``); a ``stats`` argument (the float32 statistics a
#:   forward op saves) to that dtype's accumulation dtype. For elementwise and normalisation
#:   ops, whose kernels accumulate in float32 already.
#:
#: float64 tensors keep their dtype under "lower" and "float32" (as in PyTorch); integer and
#: bool tensors are never cast.
AUTOCAST_POLICIES = ("lower", "float32", "input")
# The device types whose Autocast dispatch keys get the policy.
_AUTOCAST_DEVICES = ("cpu", "cuda")
_INCOMING_GRAD = re.compile(r"^grad(_|$)")


def native() -> Any:
    """The extension's kernel namespace ``torch.ops.alae_fast_C``, loaded on first use."""
    if not _extension.load():
        raise ImplUnavailableError(_extension.error())
    return torch.ops.alae_fast_C


@dataclass(eq=False)
class Stage:
    """One registered op: its schema (without ``impl``), argument names and kernels.

    ``kernel(namespace, *args)`` runs it; ``triton()`` returns the Triton module that holds its
    kernels (None: no Triton kernel); ``differentiable``: it has an autograd formula that works;
    ``autocast``: its policy under ``torch.autocast`` (:data:`AUTOCAST_POLICIES`, None: none).
    Attributes are looked up per call, so a test can swap ``kernel`` to plant a wrong one.
    """

    name: str
    schema: str
    arg_names: tuple[str, ...]
    arg_types: tuple[str, ...]
    kernel: Callable[..., Any]
    triton: Callable[[], Any] | None
    differentiable: bool = True
    autocast: str | None = None
    op: Any = None

    def namespace(self, impl: str) -> Any:
        if impl in ("cpu", "cuda"):
            return native()
        if impl == "triton" and self.triton is not None:
            return self.triton()
        raise ImplUnavailableError(f"alae_fast::{self.name} has no {impl!r} kernel")


def define(
    schema: str,
    *,
    kernel: Callable[..., Any],
    fake: Callable[..., Any],
    triton: Callable[[], Any] | None = None,
    save: Sequence[str] = (),
    save_outputs: Mapping[str, int] | None = None,
    backward: Callable[..., Mapping[str, Any]] | None = None,
    autocast: str | None = None,
) -> Any:
    """Register ``alae_fast::<name>`` and return its default overload.

    Args:
        schema: ``"name(Tensor x, float alpha) -> Tensor"``, without the ``impl`` argument.
        kernel: ``kernel(namespace, *args)``: the implementation, see the module docstring.
        fake: ``fake(*args)``: empty outputs of the right shape, dtype and layout.
        triton: returns the Triton module with this op's kernels (imported on first use).
        save: names of the inputs the autograd formula needs.
        save_outputs: ``{name: index}`` of the outputs it needs.
        backward: ``backward(saved, *grads) -> {input name: gradient}``; ``saved`` holds the
            saved tensors and every non-tensor argument (``impl`` included) by name. Inputs it
            leaves out, and inputs passed as None, get no gradient.
        autocast: how ``torch.autocast`` runs it, one of :data:`AUTOCAST_POLICIES`; None
            registers nothing (the op then sees its inputs as given, e.g. the optimizer step,
            which runs outside autocast).
    """
    if autocast is not None and autocast not in AUTOCAST_POLICIES:
        raise ValueError(f"autocast must be one of {AUTOCAST_POLICIES} or None, got {autocast!r}")
    match = _SCHEMA.match(schema)
    if match is None:
        raise ValueError(f"schema must read 'name(args) -> returns', got {schema!r}")
    name, args, returns = match.groups()
    typed = [a.split() for a in args.split(",")] if args else []
    arg_names = tuple(t[-1] for t in typed)
    stage = Stage(
        name,
        schema,
        arg_names,
        tuple(t[0] for t in typed),
        kernel,
        triton,
        backward is not None and not getattr(backward, "refuses", False),
        autocast,
    )
    full_schema = f"{name}({args}{', ' if args else ''}str impl) -> {returns}"

    def run(*inputs):
        return stage.kernel(stage.namespace(inputs[-1]), *inputs[:-1])

    LIB.define(full_schema)
    LIB.impl(name, run, "CompositeExplicitAutograd")
    torch.library.register_fake(f"alae_fast::{name}", lambda *a: fake(*a[:-1]), lib=LIB)
    if backward is not None:
        _register_autograd(name, arg_names + ("impl",), tuple(save), dict(save_outputs or {}), backward)
    stage.op = getattr(torch.ops.alae_fast, name).default
    if autocast is not None:
        _register_autocast(stage)
    STAGES[name] = stage
    return stage.op


def _register_autocast(stage: Stage) -> None:
    """The stage's policy at the AutocastCPU and AutocastCUDA keys (above Autograd: the casts
    are recorded, so gradients come back in the caller's dtypes)."""
    for device_type in _AUTOCAST_DEVICES:
        if stage.autocast == "float32":  # PyTorch's own rule: floating tensors but float64
            torch.library.register_autocast(f"alae_fast::{stage.name}", device_type, torch.float32, lib=LIB)
            continue
        key = f"Autocast{torch._C._dispatch_key_for_device(device_type)}"
        LIB.impl(stage.name, _autocast_kernel(stage, device_type, key), key)


def _autocast_kernel(stage: Stage, device_type: str, key: str) -> Callable[..., Any]:
    names = stage.arg_names + ("impl",)
    off = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey, key))

    def run(*args):
        cast = autocast_cast(stage.autocast, names, args, device_type)
        with torch._C._ExcludeDispatchKeyGuard(off):  # as torch.library.register_autocast does
            return stage.op(*cast)

    return run


def _castable(v: Any, device_type: str) -> bool:
    """A floating tensor on ``device_type``: what autocast casts."""
    return isinstance(v, torch.Tensor) and v.is_floating_point() and v.device.type == device_type


def _autocast_rule(policy: str, names: Sequence[str], values: Sequence[Any], device_type: str):
    """``rule(name, dtype)``: the dtype a floating tensor argument gets under ``policy``."""
    if policy == "input":
        main = next(
            (
                t.dtype
                for n, v in zip(names, values)
                if not _INCOMING_GRAD.match(n)
                for t in (v if isinstance(v, (list, tuple)) else (v,))
                if _castable(t, device_type)
            ),
            None,
        )
        if main is None:  # no main input on this device type: nothing to follow
            return lambda name, dtype: dtype
        acc = torch.float64 if main == torch.float64 else torch.float32
        return lambda name, dtype: acc if name == "stats" else main
    to = torch.float32 if policy == "float32" else torch.get_autocast_dtype(device_type)
    return lambda name, dtype: dtype if dtype == torch.float64 else to


def autocast_cast(policy: str, names: Sequence[str], values: Sequence[Any], device_type: str) -> list[Any]:
    """``values`` (arguments named ``names``; tensor lists, None and non-tensors allowed) with
    every floating tensor on ``device_type`` cast as ``policy`` says."""
    rule = _autocast_rule(policy, names, values, device_type)

    def cast(name, v):
        if isinstance(v, (list, tuple)):
            return type(v)(cast(name, e) for e in v)
        return v.to(rule(name, v.dtype)) if _castable(v, device_type) else v

    return [cast(n, v) for n, v in zip(names, values)]


def autocast_dtypes(op: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.dtype] | None:
    """The dtypes the public op ``op``'s autocast policy gives ``tensors`` (named arguments, the
    main input first), or None where no policy applies: autocast is off for their device type,
    or ``op`` declares none."""
    spec = REGISTRY.get(op)
    device_type = next(iter(tensors.values())).device.type
    if spec is None or spec.autocast is None or not torch.is_autocast_enabled(device_type):
        return None
    rule = _autocast_rule(spec.autocast, list(tensors), list(tensors.values()), device_type)
    return {n: rule(n, t.dtype) if _castable(t, device_type) else t.dtype for n, t in tensors.items()}


def _register_autograd(
    name: str,
    names: tuple[str, ...],
    save: tuple[str, ...],
    save_outputs: dict[str, int],
    backward: Callable[..., Mapping[str, Any]],
) -> None:
    def setup_context(ctx, inputs, output):
        args = dict(zip(names, inputs))
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        ctx.save_for_backward(*[args[n] for n in save], *[outputs[i] for i in save_outputs.values()])
        ctx.constants = {n: v for n, v in args.items() if n not in save and not isinstance(v, torch.Tensor)}
        ctx.given = [args[n] is not None for n in names]

    def grad_fn(ctx, *grads):
        saved = SimpleNamespace(**dict(zip(save + tuple(save_outputs), ctx.saved_tensors)), **ctx.constants)
        by_name = backward(saved, *grads)
        return tuple(by_name.get(n) if given else None for n, given in zip(names, ctx.given))

    torch.library.register_autograd(f"alae_fast::{name}", grad_fn, setup_context=setup_context, lib=LIB)


def first_order_only(op: str, why: str) -> Callable[..., Mapping[str, Any]]:
    """An autograd formula for a backward op that must not be differentiated again."""

    def refuse(saved, *grads):
        raise RuntimeError(
            f"alae_fast.ops.{op} supports first-order gradients only ({why}); for higher-order gradients use impl='ref'"
        )

    refuse.refuses = True  # type: ignore[attr-defined]
    return refuse


@dataclass(frozen=True)
class Rand:
    """A tensor input of an :class:`Example`: ``shift + scale * N(0, 1)`` (``abs``: its magnitude),
    drawn in float64 on the CPU from ``seed``, so the same numbers on every device and dtype."""

    shape: tuple[int, ...]
    seed: int
    scale: float = 1.0
    shift: float = 0.0
    abs: bool = False

    def make(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)
        t = self.shift + self.scale * torch.randn(self.shape, generator=g, dtype=torch.float64)
        return (t.abs() if self.abs else t).to(device, dtype)


@dataclass(frozen=True)
class Example:
    """Example inputs of an op, for the generic tests and ``alae-fast doctor``.

    ``inputs`` are the public function's keyword arguments, :class:`Rand` (or lists of them) for
    tensors; ``grad`` names the inputs to differentiate; ``call(fn, inputs)`` runs the op or its
    twin (default ``fn(**inputs)``) and returns the tensors to compare.
    """

    name: str
    inputs: dict[str, Any]
    grad: tuple[str, ...] = ()
    call: Callable[[Callable[..., Any], dict[str, Any]], Any] | None = None

    def make(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
        dev = torch.device(device)

        def value(v):
            return v.make(dev, dtype) if isinstance(v, Rand) else [value(e) for e in v] if isinstance(v, list) else v

        return {k: value(v) for k, v in self.inputs.items()}

    def run(self, fn: Callable[..., Any], inputs: dict[str, Any]) -> Any:
        return fn(**inputs) if self.call is None else self.call(fn, inputs)


def _identity(out: Any) -> Any:
    return out


@dataclass(eq=False)
class OpSpec:
    """A public op: the registry entry and the tail of its public function.

    Args:
        name: the public function's name in :mod:`alae_fast.ops`.
        ref: the reference twin: the public signature without ``impl``.
        op: the forward op returned by :func:`define` (None for a composition of ops).
        impls: the implementations it has.
        grad_order: how often it can be differentiated (0, 1, or 2 for any order).
        examples: inputs for the generic tests and the doctor.
        outputs: maps the forward op's outputs to the public result.
        compose: for a composition (``op`` None): ``compose(*args, impl=...)``.
        family: the stem of its test and benchmark files (default: ``name``).
        autocast: a composition's policy under ``torch.autocast`` (:data:`AUTOCAST_POLICIES`),
            applied to its reference twin (the ops inside apply their own); an op's is its
            forward op's, declared in :func:`define`.
    """

    name: str
    ref: Callable[..., Any]
    op: Any
    impls: tuple[str, ...] = IMPLS
    grad_order: int = 2
    examples: tuple[Example, ...] = ()
    outputs: Callable[[Any], Any] = _identity
    compose: Callable[..., Any] | None = None
    family: str = ""
    autocast: str | None = None
    stage: Stage | None = field(init=False)

    def __post_init__(self) -> None:
        if (self.op is None) == (self.compose is None):
            raise ValueError(f"{self.name}: give exactly one of op and compose")
        self.family = self.family or self.name
        self.stage = next((s for s in STAGES.values() if s.op is self.op), None)
        if self.stage is not None:
            if self.autocast is not None:
                raise ValueError(f"{self.name}: an op's autocast policy is declared in define()")
            self.autocast = self.stage.autocast
        elif self.autocast is not None and self.autocast not in AUTOCAST_POLICIES:
            raise ValueError(f"{self.name}: autocast must be one of {AUTOCAST_POLICIES} or None")
        REGISTRY[self.name] = self

    def resolve(self, impl: str | None, device: torch.device) -> str:
        return resolve_impl(self.name, impl, device.type, self.impls)

    def __call__(self, impl: str | None, *args: Any, **kwargs: Any) -> Any:
        """Run the op on checked arguments (the forward op's, in schema order)."""
        device = _device_of(args)
        chosen = self.resolve(impl, device)
        if chosen == "ref":
            # The schema's names are the twin's parameter names (a composition's: its own).
            names = self.stage.arg_names if self.stage is not None else tuple(inspect.signature(self.ref).parameters)
            if self.autocast is not None and torch.is_autocast_enabled(device.type):
                # The twin sees what the registered op's Autocast kernel would pass on.
                args = tuple(autocast_cast(self.autocast, names, args, device.type))
                with torch.autocast(device.type, enabled=False):
                    return self._run_ref(names, args, kwargs)
            return self._run_ref(names, args, kwargs)
        if self.compose is not None:
            return self.compose(*args, impl=impl, **kwargs)  # each op inside chooses again
        return self.outputs(self.op(*args, chosen))

    def _run_ref(self, names: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.stage is not None:
            return self.ref(**dict(zip(names, args)))
        return self.ref(*args, **kwargs)


def _device_of(args: Sequence[Any]) -> torch.device:
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.device
        if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor):
            return a[0].device
    raise ValueError("an op needs at least one tensor argument")
