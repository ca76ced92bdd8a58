"""The fast ALAE optimizer: :class:`LREQAdam` whose step is one fused multi-tensor op call per
device and dtype (:func:`alae_fast.ops.lreq_adam_step_`) instead of ~6 PyTorch calls per
parameter. Same hyper-parameters, same state (``step``, ``exp_avg_sq``), same numbers: state_dicts
move freely between this and :class:`alae_fast.reference.LREQAdam`.
"""

from __future__ import annotations

from . import ops
from .reference.optim import LREQAdam as _ReferenceLREQAdam

__all__ = ["LREQAdam"]


class LREQAdam(_ReferenceLREQAdam):
    """Adam (betas (0, beta2)) with per-parameter learning-rate equalization, fused.

    Args: as :class:`alae_fast.reference.LREQAdam`, plus
        impl: implementation of the update op (``None``: automatic choice).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.0, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        impl: str | None = None,
    ):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self.impl = impl

    def _step_group(self, group):
        beta2, eps, weight_decay = group["betas"][1], group["eps"], group["weight_decay"]
        batches: dict[tuple, tuple[list, list, list, list]] = {}
        for p, grad, v, step_size in self._updates(group):
            if not (p.is_contiguous() and grad.is_contiguous() and v.is_contiguous()):
                ops.lreq_adam_step_ref([p], [grad], [v], [step_size], beta2=beta2, eps=eps, weight_decay=weight_decay)
                continue
            batch = batches.setdefault((p.device, p.dtype), ([], [], [], []))
            for lst, item in zip(batch, (p, grad, v, step_size)):
                lst.append(item)
        for params, grads, moments, steps in batches.values():
            ops.lreq_adam_step_(
                params, grads, moments, steps, beta2=beta2, eps=eps, weight_decay=weight_decay, impl=self.impl
            )
