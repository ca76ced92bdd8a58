"""``lreq_adam_step_``: the optimizer step of ALAE (Adam with beta1 = 0 and a per-parameter
learning-rate equalization factor) as one fused multi-tensor update.

The reference optimizer makes about six PyTorch calls per parameter; this makes one call for all
parameters of one device and dtype. The update reproduces the reference's sequence of rounded
operations, so results are identical (tested with ``torch.equal``).
"""

from __future__ import annotations

import torch

from . import _checks
from . import _triton
from ._spec import Example
from ._spec import OpSpec
from ._spec import Rand
from ._spec import define

__all__ = ["lreq_adam_step_", "lreq_adam_step_ref"]


def lreq_adam_step_ref(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    step_sizes: list[float],
    *,
    beta2: float,
    eps: float,
    weight_decay: float = 0.0,
) -> None:
    """Reference twin of :func:`lreq_adam_step_`: the reference ``LREQAdam`` update, in place."""
    for p, grad, v, step_size in zip(params, grads, exp_avg_sqs, step_sizes):
        if weight_decay != 0:
            grad = grad.add(p, alpha=weight_decay)
        v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        denom = v.sqrt().add_(eps)
        p.addcdiv_(grad, denom, value=-step_size)


# No autocast policy: the optimizer runs outside autocast, on the float32 parameters as given.
_op = define(
    "lreq_adam_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avg_sqs, "
    "float[] step_sizes, float beta2, float eps, float weight_decay) -> ()",
    kernel=lambda k, *args: k.lreq_adam_step_(*args),
    triton=lambda: _triton.lreq_adam,
    fake=lambda *args: None,
)


_SHAPES = [(4, 5), (5,), (3, 5, 7, 7)]
_INPUTS = dict(step_sizes=[1e-3, 2e-3, 5e-4], beta2=0.99, eps=1e-8, weight_decay=0.01)
_INPUTS.update(
    params=[Rand(s, 20 + i) for i, s in enumerate(_SHAPES)], grads=[Rand(s, 30 + i) for i, s in enumerate(_SHAPES)]
)
_INPUTS.update(exp_avg_sqs=[Rand(s, 40 + i, abs=True) for i, s in enumerate(_SHAPES)])  # second moments are >= 0


def _example_call(fn, t):
    """The changes the step made to the parameters and second moments (the update is small
    against the parameter: comparing the changes keeps a relative tolerance meaningful)."""
    params = [p.detach().clone() for p in t["params"]]
    moments = [v.detach().clone() for v in t["exp_avg_sqs"]]
    fn(
        params,
        [g.detach() for g in t["grads"]],
        moments,
        t["step_sizes"],
        beta2=t["beta2"],
        eps=t["eps"],
        weight_decay=t["weight_decay"],
    )
    return tuple([p - p0 for p, p0 in zip(params, t["params"])] + [v - v0 for v, v0 in zip(moments, t["exp_avg_sqs"])])


_EXAMPLE = Example("lreq_adam_step_", _INPUTS, call=_example_call)
SPEC = OpSpec("lreq_adam_step_", lreq_adam_step_ref, _op, grad_order=0, family="lreq_adam", examples=(_EXAMPLE,))


def lreq_adam_step_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    step_sizes: list[float],
    *,
    beta2: float,
    eps: float,
    weight_decay: float = 0.0,
    impl: str | None = None,
) -> None:
    """In-place LREQAdam update of every parameter in ``params``.

    Per element: ``g = grad (+ weight_decay * p)``, ``v = v * beta2 + (1 - beta2) * g * g``,
    ``p -= step_size * g / (sqrt(v) + eps)``, each operation rounded as PyTorch rounds it.

    Args:
        params, grads, exp_avg_sqs: lists of equal length; entry i of each has one shape. All
            tensors contiguous, on one device, of one floating dtype. params and exp_avg_sqs
            are updated in place.
        step_sizes: per parameter ``lr * sqrt(1 - beta2 ** step) * lr_equalization_coef``.
        beta2: second-moment decay in [0, 1).
        eps: added to ``sqrt(v)``.
        weight_decay: L2 coefficient added to the gradient.
        impl: ``None`` (automatic), ``"ref"``, ``"triton"``, ``"cuda"`` or ``"cpu"``.
    """
    op = "lreq_adam_step_"
    if not (len(params) == len(grads) == len(exp_avg_sqs) == len(step_sizes)):
        raise ValueError(
            f"alae_fast.ops.{op}: params, grads, exp_avg_sqs and step_sizes must "
            f"have one length, got {len(params)}, {len(grads)}, {len(exp_avg_sqs)} "
            f"and {len(step_sizes)}"
        )
    if not params:
        return
    first = _checks.tensor(op, "params[0]", params[0])
    device, dtype = first.device, first.dtype
    for i, (p, g, v) in enumerate(zip(params, grads, exp_avg_sqs)):
        for name, t in ((f"params[{i}]", p), (f"grads[{i}]", g), (f"exp_avg_sqs[{i}]", v)):
            # One cheap test per tensor (this runs for every parameter at every step); the
            # detailed checks below only run to word the error.
            if not (
                isinstance(t, torch.Tensor)
                and t.device == device
                and t.dtype == dtype
                and t.shape == p.shape
                and t.is_contiguous()
            ):
                _checks.tensor(op, name, t)
                _checks.same_device_dtype(op, **{"params[0]": first, name: t})
                _checks.same_shape(op, **{f"params[{i}]": p, name: t})
                raise ValueError(f"alae_fast.ops.{op}: {name} must be contiguous")
    step_sizes = [_checks.finite_float(op, f"step_sizes[{i}]", float(s)) for i, s in enumerate(step_sizes)]
    beta2 = _checks.finite_float(op, "beta2", beta2)
    eps = _checks.finite_float(op, "eps", eps)
    weight_decay = _checks.finite_float(op, "weight_decay", weight_decay)
    if not 0.0 <= beta2 < 1.0:
        raise ValueError(f"alae_fast.ops.{op}: beta2 must be in [0, 1), got {beta2}")
    SPEC(impl, params, grads, exp_avg_sqs, step_sizes, beta2, eps, weight_decay)
