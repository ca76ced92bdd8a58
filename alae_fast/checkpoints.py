"""Checkpoint files: atomic writing, alae_fast training checkpoints, and official ALAE checkpoints.

A training checkpoint is a ``torch.save`` dict (``format`` = ``"alae_fast.checkpoint.v1"``) with the
config, the model and EMA state_dicts, both optimizers, the RNG states and the position in the
schedule. It is always written to a temporary file in the target directory and renamed over
the old one, so a crash while saving never leaves a truncated or missing checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .reference.model import MLPALAE
from .reference.model import ALAEBase
from .reference.model import StyleALAE
from .utils.files import atomic_write

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "atomic_save",
    "load_checkpoint",
    "build_model",
    "load_official",
    "is_official",
    "load",
    "convert_official",
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
    with atomic_write(path, fsync=True) as f:
        torch.save(obj, f)
    return path


def _torch_load(path: str | os.PathLike, map_location) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        # Training checkpoints hold RNG states (numpy arrays, python tuples): not weights-only.
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path} (not a file written by torch.save?): {first}") from exc


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
        return MLPALAE(
            layer_count=model_cfg.layer_count,
            images=model_cfg.mlp_images,
            encoder_slopes=tuple(model_cfg.mlp_encoder_slopes),
            generator_slopes=tuple(model_cfg.mlp_generator_slopes),
            mapping_f=model_cfg.mapping_f,
            **common,
        )
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


def _official_models(ckpt: Any, path, ema: bool) -> dict:
    """The five state_dicts of an official checkpoint, the EMA (``*_s``) copies when ``ema``."""
    if not is_official(ckpt):
        raise CheckpointError(f"{path} is not an official ALAE checkpoint (no 'models' dict)")
    suffix = "_s" if ema else ""
    models = {}
    for official in OFFICIAL_MODULES:
        key = official + suffix if official != "dlatent_avg" else official
        if key not in ckpt["models"] or ckpt["models"][key] is None:
            other = "--weights model (ema=False)" if ema else "--weights ema (ema=True)"
            raise CheckpointError(f"{path} has no '{key}' module; it holds {sorted(ckpt['models'])} (try {other})")
        models[official] = ckpt["models"][key]
    return models


def _official_state(models: dict, model: ALAEBase, path) -> ALAEBase:
    for official, attr in OFFICIAL_MODULES.items():
        try:
            getattr(model, attr).load_state_dict(models[official], strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: module '{official}' does not fit the inferred architecture: {exc}") from exc
    return model


def is_official(ckpt: Any) -> bool:
    """Whether a loaded file has the official ``Checkpointer`` layout (a ``models`` dict)."""
    return isinstance(ckpt, dict) and isinstance(ckpt.get("models"), dict) and "format" not in ckpt


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
    models = _official_models(_torch_load(path, map_location), path, ema)
    return _official_state(models, _official_model(models, options), path).eval()


def _official_config(model: ALAEBase, name: str):
    """A :class:`~alae_fast.train.config.Config` describing an official model's architecture
    (training fields at their defaults, one entry per level), so that a converted checkpoint
    reads like one of ours."""
    from .train.config import Config
    from .train.config import DataConfig
    from .train.config import ModelConfig
    from .train.config import TrainConfig
    from .train.config import validate_config

    levels = model.layer_count
    arch: dict[str, Any] = dict(
        latent_size=model.latent_size,
        mapping_layers=model.mapping_f.mapping_layers,
        channels=model.channels,
        layer_count=levels,
        truncation_psi=None,
        truncation_cutoff=None,
    )
    if isinstance(model, StyleALAE):
        arch.update(kind="style", startf=model.encoder.startf, maxf=model.encoder.maxf)
        data = DataConfig(dataset="image_folder", resolution=4 * 2 ** (levels - 1))
    else:
        arch.update(kind="mlp")
        data = DataConfig(dataset="mnist", resolution=4 * 2 ** (levels - 1))
    train = TrainConfig(lod_batch_sizes=[32] * levels, learning_rates=[0.0015] * levels)
    return validate_config(Config(name=name, model=ModelConfig(**arch), data=data, train=train))


def _for_inference(model: ALAEBase, lod: int, config, source: str, device, impl: str | None) -> ALAEBase:
    """Freeze a loaded model for use: eval mode, no gradients, no running-average update and no
    style mixing while sampling; record the level it runs at, its config and where it came from."""
    model.dlatent_avg_beta = None
    model.style_mixing_prob = None
    model.trained_lod = lod
    model.config = config
    model.source = source
    if impl != "ref":
        from .nn.optimize import optimize

        optimize(model, impl)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval().requires_grad_(False)


def load(
    path: str | os.PathLike, *, ema: bool = True, device: str | torch.device | None = None, impl: str | None = None
) -> ALAEBase:
    """Load a trained model for use, from one of our checkpoints or an official ALAE file.

    Our training checkpoints (``alae-fast train``, ``convert-official``) rebuild the model from
    the config they hold; official ``Checkpointer`` files (``{"models": {"generator", ...}}``)
    have their architecture inferred from the tensor shapes (:func:`load_official`).

    Args:
        path: the checkpoint file.
        ema: the exponential-moving-average weights (the ones samples, figures and metrics use);
            ``False``: the weights being trained.
        device: where to put the model (default: CUDA when available, else the CPU).
        impl: op implementation, as :func:`alae_fast.optimize` (``None``: the automatic choice;
            ``"ref"``: the plain-PyTorch reference model).

    Returns:
        a :class:`~alae_fast.reference.model.StyleALAE` or ``MLPALAE`` (the fast class unless
        ``impl="ref"``) in eval mode without gradients, with three extra attributes:
        ``trained_lod`` (the level of detail it was trained up to, at which the inference
        functions run it: resolution ``4 * 2**trained_lod``), ``config`` (its
        :class:`~alae_fast.train.config.Config`) and ``source`` (``"alae_fast"``/``"official"``).

    Raises:
        CheckpointError: a missing or unreadable file, or one of another kind.
    """
    ckpt = _torch_load(path, "cpu")
    if isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT:
        from .train.config import config_from_dict

        config = config_from_dict(ckpt["config"])
        model = build_model(config.model)
        model.load_state_dict(ckpt["ema" if ema else "model"])
        lod = ckpt["progress"]["lod"]
        lod = model.layer_count - 1 if lod is None else lod
        return _for_inference(model, lod, config, "alae_fast", device, impl)
    if is_official(ckpt):
        models = _official_models(ckpt, path, ema)
        model = _official_state(models, _official_model(models, {}), path)
        config = _official_config(model, f"official:{Path(path).stem}")
        return _for_inference(model, model.layer_count - 1, config, "official", device, impl)
    kind = f"a {type(ckpt).__name__}" if not isinstance(ckpt, dict) else f"a dict with keys {sorted(ckpt)[:8]}"
    raise CheckpointError(f"{path} is neither an alae_fast checkpoint nor an official ALAE checkpoint: it holds {kind}")


def convert_official(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write an official ALAE file as one of our checkpoints, which every command reads.

    ``model`` gets the trained weights and ``ema`` the averaged ones (``*_s``); a file that
    holds only one set gets it in both. The tensors are copied unchanged. The checkpoint has no
    optimizer state: it is for inference, not for resuming training.

    Returns: ``dst``.
    """
    ckpt = _torch_load(src, "cpu")
    if not is_official(ckpt):
        raise CheckpointError(f"{src} is not an official ALAE checkpoint (no 'models' dict)")
    present = set(ckpt["models"])
    has_ema = all(k + "_s" in present for k in OFFICIAL_MODULES if k != "dlatent_avg")
    has_live = all(k in present for k in OFFICIAL_MODULES if k != "dlatent_avg")
    if not (has_ema or has_live):
        raise CheckpointError(f"{src} holds neither the trained nor the EMA modules; it holds {sorted(present)}")
    states = {}
    for name, ema in (("model", not has_live), ("ema", has_ema)):
        models = _official_models(ckpt, src, ema)
        model = _official_state(models, _official_model(models, {}), src)
        states[name] = model.state_dict()
    from .train.config import config_to_dict

    config = _official_config(model, f"official:{Path(src).stem}")
    return atomic_save(
        {
            "format": CHECKPOINT_FORMAT,
            "config": config_to_dict(config),
            "model": states["model"],
            "ema": states["ema"],
            "progress": {"step": 0, "epoch": 0, "batch_in_epoch": 0, "lod": model.layer_count - 1},
            "converted_from": {"path": str(src), "ema": has_ema, "trained": has_live},
            "versions": {"torch": torch.__version__},
        },
        dst,
    )
