"""Fused ops with interchangeable implementations (reference PyTorch, Triton, C++ CPU, CUDA).

Every op takes ``impl=None|"ref"|"triton"|"cuda"|"cpu"``; see :mod:`alae_fast.ops._dispatch`
for how ``None`` is resolved. Each op is registered in ``torch.ops.alae_fast`` with a fake
implementation and an autograd formula, so ``torch.library.opcheck`` and ``torch.compile``
work on it. Importing this package loads neither the extension nor Triton.
"""

from ._dispatch import AUTO_ORDER
from ._dispatch import ENV_VAR
from ._dispatch import IMPLS
from ._dispatch import ImplUnavailableError
from ._dispatch import available_impls
from ._dispatch import resolve_impl
from .adain import adain
from .adain import adain_ref
from .adain_conv2d import adain_center_scale_shift
from .adain_conv2d import adain_conv2d
from .adain_conv2d import adain_conv2d_ref
from .adain_conv2d import adain_scale_shift
from .adain_conv2d import adain_stats
from .adain_conv2d import adain_stats_ref
from .adain_conv2d import transposed_to_conv_weight
from .bias_act import bias_act
from .bias_act import bias_act_ref
from .blur import blur
from .blur import blur_ref
from .d_adv_loss import d_adv_loss
from .d_adv_loss import d_adv_loss_ref
from .d_loss_r1 import d_loss_r1
from .d_loss_r1 import d_loss_r1_ref
from .encode_norm import encode_norm
from .encode_norm import encode_norm_ref
from .g_adv_loss import g_adv_loss
from .g_adv_loss import g_adv_loss_ref
from .latent_l2 import latent_l2
from .latent_l2 import latent_l2_ref
from .linear_act import linear_act
from .linear_act import linear_act_ref
from .lreq_adam import lreq_adam_step_
from .lreq_adam import lreq_adam_step_ref
from .r1_penalty import r1_penalty
from .r1_penalty import r1_penalty_ref

__all__ = ["IMPLS", "ENV_VAR", "AUTO_ORDER", "ImplUnavailableError", "available_impls", "resolve_impl"]
__all__ += ["d_adv_loss", "d_adv_loss_ref", "g_adv_loss", "g_adv_loss_ref", "r1_penalty", "r1_penalty_ref"]
__all__ += ["latent_l2", "latent_l2_ref", "d_loss_r1", "d_loss_r1_ref", "bias_act", "bias_act_ref", "blur", "blur_ref"]
__all__ += ["encode_norm", "encode_norm_ref", "adain", "adain_ref", "adain_conv2d", "adain_conv2d_ref"]
__all__ += ["adain_stats", "adain_stats_ref", "adain_scale_shift", "adain_center_scale_shift"]
__all__ += ["transposed_to_conv_weight", "linear_act", "linear_act_ref", "lreq_adam_step_", "lreq_adam_step_ref"]
