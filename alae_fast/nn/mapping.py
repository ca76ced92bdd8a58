"""Drop-in fast versions of the fully connected networks of :mod:`alae_fast.reference.networks`:
F (``MappingF``), D (``MappingD``, ``MappingDFC``) and the MLP E and G of the MNIST model, on the
``linear_act`` op (GEMM with the bias + leaky ReLU epilogue fused). Same constructor arguments
and state_dict keys as the reference classes they subclass.
"""

from __future__ import annotations

from typing import cast

import torch

from .. import ops
from ..reference import networks as ref
from ..reference.layers import pixel_norm

__all__ = ["MappingF", "MappingD", "MappingDFC", "EncoderFC", "GeneratorFC"]

LRELU_SLOPE = ref.LRELU_SLOPE


class MappingF(ref.MappingF):
    """Fast :class:`alae_fast.reference.MappingF`: pixel norm, then one ``linear_act`` per block."""

    impl: str | None = None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_size:
            raise ValueError(f"z must have shape [N, {self.latent_size}], got {list(z.shape)}")
        if self.identity:
            return z.unsqueeze(1).expand(-1, self.num_layers, -1)
        x = pixel_norm(z)
        for block in self.map_blocks:
            fc = cast(ref.Linear, block.fc)
            x = ops.linear_act(x, fc.weight, fc.bias, alpha=LRELU_SLOPE, impl=self.impl)
        return x.unsqueeze(1).expand(-1, self.num_layers, -1)


class MappingD(ref.MappingD):
    """Fast :class:`alae_fast.reference.MappingD`: its linear layers (no activation) as
    ``linear_act`` with the identity epilogue."""

    impl: str | None = None

    def _run(self, w: torch.Tensor) -> torch.Tensor:
        for block in self.map_blocks:
            fc = cast(ref.Linear, block)
            w = ops.linear_act(w, fc.weight, fc.bias, alpha=1.0, impl=self.impl)
        return w


class MappingDFC(ref.MappingDFC, MappingD):
    """Fast :class:`alae_fast.reference.MappingDFC` (the MLP model's D)."""


class EncoderFC(ref.EncoderFC):
    """Fast :class:`alae_fast.reference.EncoderFC`: three ``linear_act`` layers with its slopes."""

    impl: str | None = None

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a1, a2, a3 = self.slopes
        x = ops.linear_act(self._flat_input(x), self.fc_1.weight, self.fc_1.bias, alpha=a1, impl=self.impl)
        h = ops.linear_act(x, self.fc_2.weight, self.fc_2.bias, alpha=a2, impl=self.impl)
        return ops.linear_act(h, self.fc_3.weight, self.fc_3.bias, alpha=a3, impl=self.impl), h


class GeneratorFC(ref.GeneratorFC):
    """Fast :class:`alae_fast.reference.GeneratorFC`: ``linear_act`` layers (the last one
    without activation)."""

    impl: str | None = None

    def forward(self, styles: torch.Tensor, lod: int, blend: float = 1.0, noise=True) -> torch.Tensor:
        x = self._latent(styles)
        x = ops.linear_act(x, self.fc_1.weight, self.fc_1.bias, alpha=self.slopes[0], impl=self.impl)
        x = ops.linear_act(x, self.fc_2.weight, self.fc_2.bias, alpha=self.slopes[1], impl=self.impl)
        x = ops.linear_act(x, self.fc_3.weight, self.fc_3.bias, alpha=1.0, impl=self.impl)
        return self._image(x, lod)
