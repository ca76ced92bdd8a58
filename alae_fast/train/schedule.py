"""Progressive-growing schedule: which level of detail (lod) each epoch trains, and the blend
factor that fades a new level in.

Follows the official ALAE ``LODDriver``: ``lod = min(layer_count - 1, epoch // epochs_per_lod)``;
during the first half of the epochs of every level above 0 the new level is blended in with
``blend = 0.5 - 0.5 cos(pi * t)`` where ``t`` runs from 0 to 1 over that half (counted in
images); otherwise ``blend = 1``. ``epochs_per_lod = 0`` trains at the final lod throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LodSchedule", "EpochPlan"]


@dataclass(frozen=True)
class EpochPlan:
    """What one epoch trains: level of detail, whether it fades in, batch size, learning rate."""

    lod: int
    in_transition: bool
    batch_size: int
    learning_rate: float


class LodSchedule:
    """Args:
    layer_count: number of levels of the model.
    epochs_per_lod: epochs spent at each level (0: final level only).
    batch_sizes, learning_rates: per lod; the last entry is reused for higher lods.
    dataset_size: images per epoch (for the blend factor).
    """

    def __init__(self, layer_count: int, epochs_per_lod: int, batch_sizes, learning_rates, dataset_size: int):
        self.layer_count = layer_count
        self.epochs_per_lod = epochs_per_lod
        self.batch_sizes = list(batch_sizes)
        self.learning_rates = list(learning_rates)
        self.dataset_size = dataset_size

    def lod(self, epoch: int) -> int:
        if self.epochs_per_lod == 0:
            return self.layer_count - 1
        return min(self.layer_count - 1, epoch // self.epochs_per_lod)

    def plan(self, epoch: int) -> EpochPlan:
        lod = self.lod(epoch)
        in_transition = (
            self.epochs_per_lod > 0
            and lod > 0
            and epoch // self.epochs_per_lod == lod
            and epoch % self.epochs_per_lod < self.epochs_per_lod // 2
        )
        pick = lambda values: values[min(lod, len(values) - 1)]  # noqa: E731
        return EpochPlan(lod, in_transition, pick(self.batch_sizes), pick(self.learning_rates))

    def blend(self, epoch: int, images_in_epoch: int) -> float:
        """Blend factor after ``images_in_epoch`` images of ``epoch`` (1.0 outside transitions)."""
        if not self.plan(epoch).in_transition:
            return 1.0
        seen = (epoch % self.epochs_per_lod) * self.dataset_size + images_in_epoch
        t = seen / float(self.epochs_per_lod // 2 * self.dataset_size)
        return math.sin(t * math.pi - 0.5 * math.pi) * 0.5 + 0.5
