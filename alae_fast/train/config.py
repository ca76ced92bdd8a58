"""Typed training configuration: dataclasses, YAML loading, overrides, validation.

A config is a :class:`Config` holding three sections (``model``, ``data``,
``train``) plus a ``name``. It comes from a built-in YAML file shipped in
:mod:`alae_fast.configs` or from a user YAML file with the same layout, and can
be adjusted from the command line with ``section.key=value`` overrides.

Every way in (YAML file, overrides, a checkpoint's saved dict) goes through the
same checks, so a typo or a wrong type fails at start-up with a message naming
the dotted key, instead of hours later inside the training loop.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import os
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

from ..reference.model import MAPPING_F_KINDS
from ..reference.networks import MLP_ENCODER_SLOPES
from ..reference.networks import MLP_GENERATOR_SLOPES
from ..reference.networks import MLP_IMAGES
from ..reference.networks import STYLE_INJECTIONS
from ..utils.files import atomic_write

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "builtin_configs",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "describe_builtin",
    "load_config",
    "override_config",
    "save_config",
    "validate_config",
]

MODEL_KINDS = ("mlp", "style")
DATASETS = ("mnist", "image_folder")
IMPLS = ("ref", "fast", "triton", "cuda", "cpu")
PRECISIONS = ("fp32", "bf16", "fp16")
#: MNIST splits: the standard 60000/10000 train/test files ("different-writers"), or the
#: official mnist_ref split of the 60000 training images (same writers on both sides).
SPLITS = ("different-writers", "same-writers")

_CONFIG_PACKAGE = "alae_fast.configs"


class ConfigError(ValueError):
    """A config is malformed: unknown key, wrong type or out-of-range value."""


# --------------------------------------------------------------------------- #
# Dataclasses
# --------------------------------------------------------------------------- #


@dataclass
class ModelConfig:
    """Network architecture.

    ``kind`` is ``"mlp"`` (fully connected ALAE) or ``"style"`` (StyleALAE).
    The ``None``-able fields switch a feature off: no running average of the
    dlatent (``dlatent_avg_beta``), no truncation trick (``truncation_psi``)
    or no style mixing regularisation (``style_mixing_prob``).
    ``style_injection`` is how the StyleALAE generator applies the styles:
    ``"adain"`` (the official generator, the default) or ``"modconv"``
    (StyleGAN2 weight modulation/demodulation, for training from scratch);
    the MLP model has no styles and takes only ``"adain"``.

    Options of the MLP model only (the defaults are the official master ``mnist_fc``
    model; the paper's MNIST model of the official branch ``mnist_ref`` sets them all):
    ``mlp_images`` is the image convention, ``"pad32"`` (28x28 digits zero-padded to 32x32 in
    [-1, 1], resized to 28x28 by E) or ``"raw28"`` (28x28 in [0, 1], not resized; needs
    ``data.resolution`` 28 and ``train.epochs_per_lod`` 0); ``mlp_encoder_slopes`` and
    ``mlp_generator_slopes`` are the leaky ReLU slopes after E's three and G's two hidden
    layers; ``mapping_f`` is ``"mlp"`` (pixel norm and ``mapping_layers`` layers) or
    ``"identity"`` (w = z; ``mapping_layers`` is then unused).
    """

    kind: str = "style"
    latent_size: int = 32
    mapping_layers: int = 4
    channels: int = 1
    layer_count: int = 4
    startf: int = 64
    maxf: int = 256
    dlatent_avg_beta: float | None = 0.995
    truncation_psi: float | None = 0.7
    truncation_cutoff: int | None = 8
    style_mixing_prob: float | None = 0.9
    style_injection: str = "adain"
    mlp_images: str = "pad32"
    mlp_encoder_slopes: list[float] = field(default_factory=lambda: list(MLP_ENCODER_SLOPES))
    mlp_generator_slopes: list[float] = field(default_factory=lambda: list(MLP_GENERATOR_SLOPES))
    mapping_f: str = "mlp"


@dataclass
class DataConfig:
    """Training data.

    ``dataset`` is ``"mnist"`` or ``"image_folder"`` (then ``path`` is a folder of images, or a
    dataset made by ``alae-fast prepare-dataset``, recognised by its manifest). ``limit`` keeps
    only the first N training images, for short runs. ``num_workers`` loader processes read
    each training process's images. ``mirror`` flips each training image left-right with
    probability 1/2 (the official ``DATASET.FLIP_IMAGES``, on in its image configs).
    ``split`` (MNIST only): ``"different-writers"`` trains on the 60000 images of the standard
    training file; ``"same-writers"`` on the first 50000 of them after python's
    ``random.seed(0); random.shuffle`` of the 60000 in file order, the official ``mnist_ref``
    split (the last 10000 are its test set).
    """

    dataset: str = "mnist"
    path: str | None = None
    resolution: int = 32
    limit: int | None = None
    num_workers: int = 0
    mirror: bool = False
    split: str = "different-writers"


@dataclass
class TrainConfig:
    """Optimisation schedule and run bookkeeping.

    ``lod_batch_sizes`` and ``learning_rates`` are indexed by level of detail
    (lod); the last entry is reused for higher lods. ``lod_batch_sizes`` is one list, or a
    mapping {micro-batch count: list} like the official ``LOD_2_BATCH_{1,2,4,8}GPU`` tables:
    a step with M = P * K micro-batches uses the table of the largest count <= M (the smallest
    table when every count is larger), so 8 GPUs and 4 GPUs x accumulate 2 train alike. ``epochs_per_lod == 0``
    trains only at the final level of detail (no progressive growing).
    ``sample_every``, ``checkpoint_every`` and ``log_every`` count steps.

    Batch sizes are global: with P processes (torchrun) and ``accumulate`` = K, each optimizer
    step cuts the batch into M = P * K micro-batches of equal size, and the run follows the same
    trajectory for every factoring of M. ``precision`` runs the networks under autocast
    (losses, R1 and the optimizer stay float32; fp16 with a dynamic loss scale starting at
    ``fp16_loss_scale``); ``r1_interval`` = k applies R1 with weight
    ``k * r1_gamma`` on one D step in k (lazy regularisation; 1 is the official behaviour).
    A step with a non-finite loss or gradient is skipped; ``nonfinite_patience`` skips in a row
    stop the run. ``keep_checkpoints`` step-numbered snapshots are kept beside checkpoint.pt.
    """

    epochs: int = 60
    epochs_per_lod: int = 10
    lod_batch_sizes: list[int] | dict[int, list[int]] = field(default_factory=lambda: [128, 128, 128, 64])
    learning_rates: list[float] = field(default_factory=lambda: [0.0015] * 4)
    adam_betas: list[float] = field(default_factory=lambda: [0.0, 0.99])
    adam_eps: float = 1e-8
    r1_gamma: float = 10.0
    r1_interval: int = 1
    accumulate: int = 1
    precision: str = "fp32"
    fp16_loss_scale: float = 65536.0
    channels_last: bool = False
    nonfinite_patience: int = 20
    keep_checkpoints: int = 3
    ema_half_life_images: float = 10000.0
    max_steps: int | None = None
    max_minutes: float | None = None
    seed: int = 0
    device: str = "auto"
    impl: str = "fast"
    sample_every: int = 500
    checkpoint_every: int = 1000
    log_every: int = 50
    grid_size: int = 32
    output_dir: str = "runs/default"

    def batch_table(self, micro_count: int = 1) -> tuple[int | None, list[int]]:
        """The global batch size per lod for a step of ``micro_count`` micro-batches, and the
        key of the ``lod_batch_sizes`` table it came from (None for a plain list)."""
        tables = self.lod_batch_sizes
        if isinstance(tables, list):
            return None, tables
        fitting = [k for k in tables if k <= micro_count]
        key = max(fitting) if fitting else min(tables)
        return key, tables[key]

    def batch_size_for_lod(self, lod: int, micro_count: int = 1) -> int:
        """Global batch size at level of detail ``lod`` (last entry reused beyond the list)."""
        sizes = self.batch_table(micro_count)[1]
        return sizes[min(lod, len(sizes) - 1)]

    def learning_rate_for_lod(self, lod: int) -> float:
        """Learning rate at level of detail ``lod`` (last entry reused beyond the list)."""
        return self.learning_rates[min(lod, len(self.learning_rates) - 1)]


@dataclass
class Config:
    """A complete run configuration."""

    name: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# Section name -> dataclass; the single source of truth for the YAML layout.
_SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
_TOP_LEVEL_KEYS = ("name", *_SECTIONS)


# --------------------------------------------------------------------------- #
# YAML parsing
# --------------------------------------------------------------------------- #


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that also reads ``1e-8`` as a float.

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-8``), so a
    plain ``1e-8`` would come back as a *string* and fail the type check.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


# --------------------------------------------------------------------------- #
# Type checking
# --------------------------------------------------------------------------- #


def _field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass, in field order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _split_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(tp, False)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _type_name(tp: Any) -> str:
    inner, optional = _split_optional(tp)
    if typing.get_origin(inner) in (typing.Union, types.UnionType):
        name = " | ".join(_type_name(a) for a in typing.get_args(inner))
    elif typing.get_origin(inner) is list:
        (elem,) = typing.get_args(inner)
        name = f"list[{_type_name(elem)}]"
    elif typing.get_origin(inner) is dict:
        key, elem = typing.get_args(inner)
        name = f"dict[{_type_name(key)}, {_type_name(elem)}]"
    else:
        name = getattr(inner, "__name__", str(inner))
    return f"{name} | None" if optional else name


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against type hint ``tp``; return it (int promoted to float)."""
    inner, optional = _split_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got None (null is not allowed here)")

    def bad() -> ConfigError:
        return ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")

    if typing.get_origin(inner) in (typing.Union, types.UnionType):
        # A union of containers (list | dict): the value's own container type picks the member.
        for member in typing.get_args(inner):
            if isinstance(value, _CONTAINERS.get(typing.get_origin(member), ())):
                return _coerce(value, member, key)
        raise bad()
    if typing.get_origin(inner) is list:
        if not isinstance(value, (list, tuple)):
            raise bad()
        (elem,) = typing.get_args(inner)
        return [_coerce(v, elem, f"{key}[{i}]") for i, v in enumerate(value)]
    if typing.get_origin(inner) is dict:
        if not isinstance(value, dict):
            raise bad()
        key_type, elem = typing.get_args(inner)
        return {_coerce(k, key_type, f"{key} key {k!r}"): _coerce(v, elem, f"{key}[{k!r}]") for k, v in value.items()}
    # bool is a subclass of int, but `epochs: true` is surely a mistake.
    if isinstance(value, bool) and inner is not bool:
        raise bad()
    if inner is float:
        if isinstance(value, (int, float)):
            return float(value)
        raise bad()
    if inner in (int, str, bool):
        if isinstance(value, inner):
            return value
        raise bad()
    raise TypeError(f"unsupported config field type {tp!r} for {key}")  # programming error


_CONTAINERS: dict[Any, tuple[type, ...]] = {list: (list, tuple), dict: (dict,)}


def _unknown_key_error(key: str, valid: Iterable[str], where: str) -> ConfigError:
    return ConfigError(f"unknown config key '{key}'; valid keys {where}: {', '.join(sorted(valid))}")


def _section_from_dict(section: str, raw: Any) -> Any:
    """Build one section dataclass from a mapping, checking keys and types."""
    cls = _SECTIONS[section]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"section '{section}' must be a mapping of keys to values, got {type(raw).__name__} {raw!r}")
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{section}.{key}"
        if key not in types_:
            raise _unknown_key_error(dotted, types_, f"in section '{section}'")
        kwargs[key] = _coerce(value, types_[key], dotted)
    return cls(**kwargs)


# --------------------------------------------------------------------------- #
# Value checks
# --------------------------------------------------------------------------- #


def _require(cond: bool, key: str, msg: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}, got {value!r}")


def _check_mlp_options(cfg: Config) -> None:
    """The options of the MLP model: valid values, and today's defaults for a StyleALAE."""
    m = cfg.model
    _require(m.mlp_images in MLP_IMAGES, "model.mlp_images", f"must be one of {list(MLP_IMAGES)}", m.mlp_images)
    _require(m.mapping_f in MAPPING_F_KINDS, "model.mapping_f", f"must be one of {list(MAPPING_F_KINDS)}", m.mapping_f)
    for key, count in (("mlp_encoder_slopes", 3), ("mlp_generator_slopes", 2)):
        slopes = getattr(m, key)
        _require(len(slopes) == count, f"model.{key}", f"must have exactly {count} entries", slopes)
        for i, a in enumerate(slopes):
            _require(0.0 <= a <= 1.0, f"model.{key}[{i}]", "must be a leaky ReLU slope in [0, 1]", a)
    if m.kind != "mlp":
        defaults = ModelConfig()
        for key in ("mlp_images", "mlp_encoder_slopes", "mlp_generator_slopes", "mapping_f"):
            _require(
                getattr(m, key) == getattr(defaults, key),
                f"model.{key}",
                f"is an option of model.kind 'mlp' only; leave it at {getattr(defaults, key)!r} for '{m.kind}'",
                getattr(m, key),
            )
    if m.mlp_images == "raw28":
        _require(
            cfg.data.dataset == "mnist",
            "model.mlp_images",
            "'raw28' needs data.dataset mnist (28x28 images)",
            m.mlp_images,
        )
        _require(
            cfg.train.epochs_per_lod == 0,
            "train.epochs_per_lod",
            "must be 0 with model.mlp_images 'raw28' (28x28 images have no lower levels of detail)",
            cfg.train.epochs_per_lod,
        )


def _check_values(cfg: Config) -> None:
    """Range and choice checks that the type system cannot express."""
    m, d, t = cfg.model, cfg.data, cfg.train

    _require(bool(cfg.name), "name", "must be a non-empty string", cfg.name)

    _require(m.kind in MODEL_KINDS, "model.kind", f"must be one of {list(MODEL_KINDS)}", m.kind)
    for key in ("latent_size", "mapping_layers", "channels", "layer_count", "startf", "maxf"):
        value = getattr(m, key)
        _require(value > 0, f"model.{key}", "must be positive", value)
    if m.dlatent_avg_beta is not None:
        _require(
            0.0 <= m.dlatent_avg_beta < 1.0, "model.dlatent_avg_beta", "must be in [0, 1) or null", m.dlatent_avg_beta
        )
    if m.truncation_psi is not None:
        _require(m.truncation_psi >= 0.0, "model.truncation_psi", "must be >= 0 or null", m.truncation_psi)
    if m.truncation_cutoff is not None:
        _require(m.truncation_cutoff >= 0, "model.truncation_cutoff", "must be >= 0 or null", m.truncation_cutoff)
    if m.style_mixing_prob is not None:
        _require(
            0.0 <= m.style_mixing_prob <= 1.0,
            "model.style_mixing_prob",
            "must be in [0, 1] or null",
            m.style_mixing_prob,
        )
    _require(
        m.style_injection in STYLE_INJECTIONS,
        "model.style_injection",
        f"must be one of {list(STYLE_INJECTIONS)}",
        m.style_injection,
    )
    if m.kind == "mlp":
        _require(
            m.style_injection == "adain",
            "model.style_injection",
            "must be 'adain' for model.kind 'mlp' (the MLP generator has no styles)",
            m.style_injection,
        )

    _check_mlp_options(cfg)

    _require(d.dataset in DATASETS, "data.dataset", f"must be one of {list(DATASETS)}", d.dataset)
    _require(d.split in SPLITS, "data.split", f"must be one of {list(SPLITS)}", d.split)
    if d.split != SPLITS[0]:
        _require(
            d.dataset == "mnist", "data.split", "must be 'different-writers' unless data.dataset is mnist", d.split
        )
    if m.mlp_images == "raw28":
        _require(d.resolution == 28, "data.resolution", "must be 28 with model.mlp_images 'raw28'", d.resolution)
    else:
        # The generator doubles resolution per lod starting at 4x4.
        _require(
            d.resolution >= 4 and d.resolution & (d.resolution - 1) == 0,
            "data.resolution",
            "must be a power of two >= 4",
            d.resolution,
        )
    if d.limit is not None:
        _require(d.limit > 0, "data.limit", "must be positive or null", d.limit)
    _require(d.num_workers >= 0, "data.num_workers", "must be >= 0", d.num_workers)

    _require(t.epochs > 0, "train.epochs", "must be positive", t.epochs)
    _require(t.epochs_per_lod >= 0, "train.epochs_per_lod", "must be >= 0", t.epochs_per_lod)
    tables: dict[int | None, list[int]] = {None: t.lod_batch_sizes} if isinstance(t.lod_batch_sizes, list) else {}
    if isinstance(t.lod_batch_sizes, dict):
        tables.update(t.lod_batch_sizes.items())
    _require(len(tables) > 0, "train.lod_batch_sizes", "must be a non-empty list or mapping", tables)
    lists: dict[str, list[int] | list[float]] = {
        f"train.lod_batch_sizes{'' if k is None else f'[{k}]'}": v for k, v in tables.items()
    }
    lists["train.learning_rates"] = t.learning_rates
    for table in tables:
        if table is not None:
            _require(table > 0, "train.lod_batch_sizes", "must map positive micro-batch counts to lists", table)
    for key, values in lists.items():
        _require(len(values) > 0, key, "must be a non-empty list", values)
        for i, v in enumerate(values):
            _require(v > 0 and math.isfinite(v), f"{key}[{i}]", "must be positive", v)
    _require(len(t.adam_betas) == 2, "train.adam_betas", "must have exactly 2 entries", t.adam_betas)
    for i, b in enumerate(t.adam_betas):
        _require(0.0 <= b < 1.0, f"train.adam_betas[{i}]", "must be in [0, 1)", b)
    _require(t.adam_eps > 0, "train.adam_eps", "must be positive", t.adam_eps)
    _require(t.r1_gamma >= 0, "train.r1_gamma", "must be >= 0", t.r1_gamma)
    for key in ("r1_interval", "accumulate", "nonfinite_patience"):
        _require(getattr(t, key) > 0, f"train.{key}", "must be positive", getattr(t, key))
    _require(t.fp16_loss_scale >= 1, "train.fp16_loss_scale", "must be >= 1", t.fp16_loss_scale)
    _require(t.keep_checkpoints >= 0, "train.keep_checkpoints", "must be >= 0", t.keep_checkpoints)
    _require(t.precision in PRECISIONS, "train.precision", f"must be one of {list(PRECISIONS)}", t.precision)
    _require(t.ema_half_life_images >= 0, "train.ema_half_life_images", "must be >= 0", t.ema_half_life_images)
    if t.max_steps is not None:
        _require(t.max_steps > 0, "train.max_steps", "must be positive or null", t.max_steps)
    if t.max_minutes is not None:
        _require(t.max_minutes > 0, "train.max_minutes", "must be positive or null", t.max_minutes)
    _require(bool(t.device), "train.device", "must be a non-empty string", t.device)
    _require(t.impl in IMPLS, "train.impl", f"must be one of {list(IMPLS)}", t.impl)
    for key in ("sample_every", "checkpoint_every", "log_every", "grid_size"):
        value = getattr(t, key)
        _require(value > 0, f"train.{key}", "must be positive", value)
    _require(bool(t.output_dir), "train.output_dir", "must be a non-empty string", t.output_dir)


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #


def config_from_dict(d: Any) -> Config:
    """Build and validate a :class:`Config` from a plain dict (YAML layout).

    Missing sections/keys take the dataclass defaults. Raises
    :class:`ConfigError` on unknown keys, wrong types or bad values.
    """
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ConfigError(f"config must be a mapping, got {type(d).__name__} {d!r}")
    for key in d:
        if key not in _TOP_LEVEL_KEYS:
            raise _unknown_key_error(str(key), _TOP_LEVEL_KEYS, "at top level")
    kwargs: dict[str, Any] = {s: _section_from_dict(s, d.get(s)) for s in _SECTIONS}
    if "name" in d:
        kwargs["name"] = _coerce(d["name"], str, "name")
    cfg = Config(**kwargs)
    _check_values(cfg)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict of ``cfg`` (YAML layout); lists are copies."""
    return dataclasses.asdict(cfg)


def validate_config(cfg: Config) -> Config:
    """Re-check a (possibly hand-edited) :class:`Config`; returns a validated copy."""
    return config_from_dict(config_to_dict(cfg))


class _Dumper(yaml.SafeDumper):
    """Block-style sections with one-line lists, the layout of the built-in configs."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def config_to_yaml(cfg: Config) -> str:
    """``cfg`` as YAML text that :func:`load_config` reads back to an equal config."""
    return yaml.dump(config_to_dict(cfg), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def save_config(cfg: Config, path: str | os.PathLike[str]) -> Path:
    """Write ``cfg`` as YAML to ``path`` (atomically; parent dirs are created)."""
    path = Path(path)
    text = config_to_yaml(cfg)
    with atomic_write(path, "w", encoding="utf-8") as f:  # a crash mid-write never leaves a truncated config
        f.write(text)
    return path


def builtin_configs() -> list[str]:
    """Names of the YAML configs shipped in :mod:`alae_fast.configs`, sorted."""
    root = importlib.resources.files(_CONFIG_PACKAGE)
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def describe_builtin(name: str) -> str:
    """One line on built-in config ``name``: its image size and channels, then the first line of
    the YAML's opening comment (what it trains)."""
    cfg = load_config(name)
    lines = [line.lstrip("# ").strip() for line in _read_builtin(name).splitlines() if line.startswith("#")]
    colour = "RGB" if cfg.model.channels == 3 else "grayscale" if cfg.model.channels == 1 else f"{cfg.model.channels}ch"
    size = f"{cfg.data.resolution}x{cfg.data.resolution} {colour}"
    return f"{size:<17} {cfg.model.kind:<5} {lines[0].rstrip('.') if lines else ''}"


def _read_builtin(name: str) -> str:
    return importlib.resources.files(_CONFIG_PACKAGE).joinpath(f"{name}.yaml").read_text("utf-8")


def _apply_override(d: dict[str, Any], override: str) -> None:
    """Apply one ``section.key=value`` override to the raw config dict in place."""
    if "=" not in override:
        raise ConfigError(
            f"bad override {override!r}: expected the form section.key=value (e.g. train.epochs=5) or name=value"
        )
    dotted, raw_value = override.split("=", 1)
    dotted = dotted.strip()
    parts = dotted.split(".")
    if len(parts) == 1 and parts[0] == "name":
        section, key, tp = None, "name", str
    elif len(parts) == 2 and parts[0] in _SECTIONS:
        section, key = parts
        types_ = _field_types(_SECTIONS[section])
        if key not in types_:
            raise _unknown_key_error(dotted, types_, f"in section '{section}'")
        tp = types_[key]
    else:
        raise _unknown_key_error(dotted, ["name", *(f"{s}.<key>" for s in _SECTIONS)], "at top level")
    try:
        value = _yaml_load(raw_value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: value is not valid YAML: {exc}") from None
    # For string fields keep the literal text, so `train.output_dir=2024` stays a path.
    if _split_optional(tp)[0] is str and value is not None and not isinstance(value, str):
        value = raw_value.strip()
    if section is None:
        d["name"] = value
    else:
        target = d.setdefault(section, {})
        if target is None:
            target = d[section] = {}
        if not isinstance(target, dict):
            raise ConfigError(
                f"section '{section}' must be a mapping of keys to values, got {type(target).__name__} {target!r}"
            )
        target[key] = value


def load_config(name_or_path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> Config:
    """Load a built-in config by name or a YAML file by path, then apply overrides.

    ``overrides`` are strings ``section.key=value`` (or ``name=value``); the
    value is parsed as YAML, so ``3``, ``0.5``, ``1e-4``, ``[1,2]``, ``null``
    and ``true`` work. Raises :class:`ConfigError` for anything invalid.
    """
    name = str(name_or_path)
    builtins = builtin_configs()
    if name in builtins:
        text, source = _read_builtin(name), f"built-in config '{name}'"
    elif Path(name).is_file():
        text, source = Path(name).read_text(encoding="utf-8"), f"config file {name}"
    else:
        raise ConfigError(
            f"unknown config {name!r}: not a built-in config and not an existing file; "
            f"built-in configs: {', '.join(builtins)}"
        )
    try:
        raw = _yaml_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must be a YAML mapping, got {type(raw).__name__}")
    for override in overrides:
        _apply_override(raw, override)
    return config_from_dict(raw)


def override_config(cfg: Config, overrides: Iterable[str]) -> Config:
    """A validated copy of ``cfg`` with ``section.key=value`` overrides applied."""
    raw = config_to_dict(cfg)
    for override in overrides:
        _apply_override(raw, override)
    return config_from_dict(raw)
