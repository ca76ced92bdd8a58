"""Fused ops with interchangeable implementations (reference PyTorch, Triton, C++ CPU, CUDA).

Every op takes ``impl=None|"ref"|"triton"|"cuda"|"cpu"``; see :mod:`alae_fast.ops._dispatch`
for how ``None`` is resolved. Each op is registered in ``torch.ops.alae_fast`` with a fake
implementation and an autograd formula, so ``torch.library.opcheck`` and ``torch.compile``
work on it. Importing this package loads neither the extension nor Triton.
"""

from ._dispatch import (AUTO_ORDER, ENV_VAR, IMPLS, ImplUnavailableError, available_impls,
                        resolve_impl)
from .d_adv_loss import d_adv_loss, d_adv_loss_ref
from .d_loss_r1 import d_loss_r1, d_loss_r1_ref
from .g_adv_loss import g_adv_loss, g_adv_loss_ref
from .latent_l2 import latent_l2, latent_l2_ref
from .r1_penalty import r1_penalty, r1_penalty_ref

__all__ = ["IMPLS", "ENV_VAR", "AUTO_ORDER", "ImplUnavailableError", "available_impls",
           "resolve_impl", "d_adv_loss", "d_adv_loss_ref", "g_adv_loss", "g_adv_loss_ref",
           "r1_penalty", "r1_penalty_ref", "latent_l2", "latent_l2_ref", "d_loss_r1",
           "d_loss_r1_ref"]
