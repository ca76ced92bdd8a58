"""Checkpoint files: atomic writing, alae_fast training checkpoints, and official ALAE checkpoints.

A training checkpoint is a ``torch.save`` dict (``format`` = ``"alae_fast.checkpoint.v1"``) with the
config, the model and EMA state_dicts, both optimizers, the RNG states and the position in the
schedule. It is always written to a temporary file in the target directory and renamed over
the old one, so a crash while saving never leaves a truncated or missing checkpoint.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .reference.model import MLPALAE
from .reference.model import ALAEBase
from .reference.model import StyleALAE

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "atomic_save",
    "load_checkpoint",
    "build_model",
    "load_official",
    "OFFICIAL_MODULES",
]

CHECKPOINT_FORMAT = "alae_fast.checkpoint.v1"

#: Official checkpoint module names -> attribute of our model.
OFFICIAL_MODULES = {
    "generator": "decoder",
    "discriminator": "encoder",
    "mapping_fl": "mapping_f",
    "mapping_tl": "mapping_d",
    "dlatent_avg": "dlatent_avg",
}


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not of the expected kind."""


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _torch_load(path: str | os.PathLike, map_location) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        # Training checkpoints hold RNG states (numpy arrays, python tuples): not weights-only.
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read an alae_fast training checkpoint written by the trainer.

    Raises:
        CheckpointError: missing, unreadable, or not an alae_fast checkpoint.
    """
    ckpt = _torch_load(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        hint = (
            " (it looks like an official ALAE checkpoint: use load_official)"
            if isinstance(ckpt, dict) and "models" in ckpt
            else ""
        )
        raise CheckpointError(f"{path} is not an alae_fast checkpoint{hint}")
    return ckpt


def build_model(model_cfg, *, truncation: bool = True) -> ALAEBase:
    """A reference model from a :class:`alae_fast.train.config.ModelConfig`.

    ``truncation=False`` leaves the truncation trick off whatever the config says: the model
    being trained never truncates (official training builds it without ``truncation_psi``);
    the config's truncation is for sampling.
    """
    common = dict(
        latent_size=model_cfg.latent_size,
        mapping_layers=model_cfg.mapping_layers,
        channels=model_cfg.channels,
        dlatent_avg_beta=model_cfg.dlatent_avg_beta,
        truncation_psi=model_cfg.truncation_psi if truncation else None,
        truncation_cutoff=model_cfg.truncation_cutoff if truncation else None,
        style_mixing_prob=model_cfg.style_mixing_prob,
    )
    if model_cfg.kind == "mlp":
        return MLPALAE(layer_count=model_cfg.layer_count, **common)
    return StyleALAE(
        startf=model_cfg.startf,
        maxf=model_cfg.maxf,
        layer_count=model_cfg.layer_count,
        style_injection=model_cfg.style_injection,
        **common,
    )


def _count(prefix: str, keys) -> int:
    idx = {int(k[len(prefix) :].split(".")[0]) for k in keys if k.startswith(prefix)}
    return max(idx) + 1 if idx else 0


def _official_model(models: dict, options: dict) -> ALAEBase:
    """Build an empty model whose architecture matches the official state_dicts."""
    gen, enc, mf = models["generator"], models["discriminator"], models["mapping_fl"]
    mapping_layers = _count("map_blocks.", mf.keys())
    latent_size = mf["map_blocks.0.fc.weight"].shape[1]
    if "fc_1.weight" in gen:  # the MLP (mnist_fc) networks
        channels = gen["fc_3.weight"].shape[0] // (28 * 28)
        layer_count = models["dlatent_avg"]["buff"].shape[0] // 2
        return MLPALAE(
            latent_size=latent_size,
            mapping_layers=mapping_layers,
            channels=channels,
            layer_count=layer_count,
            **options,
        )
    layer_count = _count("decode_block.", gen.keys())
    channels = gen["to_rgb.0.to_rgb.weight"].shape[0]
    startf = enc["from_rgb.0.from_rgb.weight"].shape[0]
    widths = [v.shape[0] for k, v in enc.items() if k.endswith("conv_2.weight")]
    # Every width is min(maxf, startf * 2**k): the largest one seen is an equivalent cap.
    maxf = max(widths + [startf])
    return StyleALAE(
        startf=startf,
        maxf=maxf,
        layer_count=layer_count,
        latent_size=latent_size,
        mapping_layers=mapping_layers,
        channels=channels,
        **options,
    )


def load_official(path: str | os.PathLike, *, ema: bool = False, map_location="cpu", **options) -> ALAEBase:
    """Load an official ALAE checkpoint (podgorskiy/ALAE ``Checkpointer`` format).

    The file holds ``{"models": {"generator", "discriminator", "mapping_fl", "mapping_tl",
    "dlatent_avg", and optionally the EMA copies with an ``_s`` suffix}, "auxiliary": ...}``.
    The architecture (layer count, widths, latent size, mapping depth, channels) is read off
    the tensor shapes, then every module is loaded with ``strict=True``.

    Args:
        path: the ``.pth`` file.
        ema: load the EMA weights (``*_s``; the official code samples with those).
        map_location: passed to ``torch.load``.
        **options: model options not stored in checkpoints (``dlatent_avg_beta``,
            ``truncation_psi``, ``truncation_cutoff``, ``style_mixing_prob``). Official
            generators are AdaIN generators: a ``style_injection`` other than "adain" is refused.

    Returns: a :class:`StyleALAE` or :class:`MLPALAE` in eval mode.
    """
    if options.get("style_injection", "adain") != "adain":
        raise CheckpointError(
            f"official checkpoints hold AdaIN generators; "
            f"style_injection={options['style_injection']!r} cannot load them"
        )
    ckpt = _torch_load(path, map_location)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("models"), dict):
        raise CheckpointError(f"{path} is not an official ALAE checkpoint (no 'models' dict)")
    suffix = "_s" if ema else ""
    models = {}
    for official in OFFICIAL_MODULES:
        key = official + suffix if official != "dlatent_avg" else official
        if key not in ckpt["models"] or ckpt["models"][key] is None:
            raise CheckpointError(f"{path} has no '{key}' module; it holds {sorted(ckpt['models'])}")
        models[official] = ckpt["models"][key]
    model = _official_model(models, options)
    for official, attr in OFFICIAL_MODULES.items():
        getattr(model, attr).load_state_dict(models[official], strict=True)
    return model.eval()
