"""Tests for alae_fast.train.config."""

from __future__ import annotations

import re

import pytest
import yaml

from alae_fast.train.config import Config
from alae_fast.train.config import ConfigError
from alae_fast.train.config import DataConfig
from alae_fast.train.config import ModelConfig
from alae_fast.train.config import TrainConfig
from alae_fast.train.config import builtin_configs
from alae_fast.train.config import config_from_dict
from alae_fast.train.config import config_to_dict
from alae_fast.train.config import load_config
from alae_fast.train.config import save_config
from alae_fast.train.config import validate_config


def write_yaml(path, data):
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# The model fields the two built-in MNIST configs share.
MNIST_MODEL_COMMON = dict(
    channels=1, layer_count=4, startf=64, maxf=256, dlatent_avg_beta=0.995, truncation_psi=0.7, truncation_cutoff=8
)


def test_builtin_names():
    assert builtin_configs() == [
        "bedroom",
        "celeba",
        "celeba-hq256",
        "ffhq",
        "mnist-mlp",
        "mnist-mlp-master",
        "mnist-style",
        "smoke-rgb32",
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lod_batch_sizes=5", "train.lod_batch_sizes: expected list[int] | dict[int, list[int]], got int 5"),
        ("train.lod_batch_sizes={x: [8]}", "train.lod_batch_sizes key 'x': expected int"),
        ("train.lod_batch_sizes={1: 8}", "train.lod_batch_sizes[1]: expected list[int], got int 8"),
    ],
)
def test_batch_tables_are_typed(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("mnist-style", [override])


def test_batch_tables_round_trip_through_yaml(tmp_path):
    cfg = load_config("mnist-style", ["train.lod_batch_sizes={1: [8, 4], 4: [16]}"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(str(tmp_path / "c.yaml")) == cfg
    assert cfg.train.lod_batch_sizes == {1: [8, 4], 4: [16]}


def test_mnist_mlp_master_values():
    cfg = load_config("mnist-mlp-master")
    assert cfg.name == "mnist-mlp-master"
    assert cfg.model == ModelConfig(
        kind="mlp", latent_size=50, mapping_layers=6, style_mixing_prob=None, **MNIST_MODEL_COMMON
    )
    assert cfg.data == DataConfig(dataset="mnist", path=None, resolution=32)
    t = cfg.train
    assert (t.epochs, t.epochs_per_lod) == (600, 0)
    assert t.lod_batch_sizes == [128, 128, 128, 128]
    assert t.learning_rates == [0.003, 0.003, 0.002, 0.002]
    assert t.output_dir == "runs/mnist-mlp-master"
    assert (t.sample_every, t.checkpoint_every) == (500, 1000)
    # Unspecified keys keep the dataclass defaults.
    assert t.adam_betas == [0.0, 0.99] and t.impl == "fast" and t.max_steps is None


def test_mnist_style_values():
    cfg = load_config("mnist-style")
    assert cfg.name == "mnist-style"
    assert cfg.model == ModelConfig(
        kind="style", latent_size=32, mapping_layers=4, style_mixing_prob=0.9, **MNIST_MODEL_COMMON
    )
    assert (cfg.data.dataset, cfg.data.resolution) == ("mnist", 32)
    t = cfg.train
    assert (t.epochs, t.epochs_per_lod) == (60, 10)
    assert t.lod_batch_sizes == [128, 128, 128, 64]
    assert t.learning_rates == [0.0015] * 4
    assert t.output_dir == "runs/mnist-style"


def test_per_lod_lookup_reuses_last_entry():
    t = TrainConfig(lod_batch_sizes=[128, 64], learning_rates=[0.1, 0.2, 0.3])
    assert [t.batch_size_for_lod(i) for i in range(4)] == [128, 64, 64, 64]
    assert [t.learning_rate_for_lod(i) for i in range(5)] == [0.1, 0.2, 0.3, 0.3, 0.3]


def test_overrides_apply():
    cfg = load_config(
        "mnist-style",
        [
            "train.epochs=3",
            "train.adam_eps=1e-6",
            "train.r1_gamma=0.5",
            "train.lod_batch_sizes=[16, 8]",
            "model.style_mixing_prob=null",
            "data.limit=256",
            "train.output_dir=2024",
            "name=smoke",
        ],
    )
    assert cfg.train.epochs == 3
    assert cfg.train.adam_eps == 1e-6 and isinstance(cfg.train.adam_eps, float)
    assert cfg.train.r1_gamma == 0.5
    assert cfg.train.lod_batch_sizes == [16, 8]
    assert cfg.model.style_mixing_prob is None
    assert cfg.data.limit == 256
    assert cfg.train.output_dir == "2024"  # string field keeps the literal text
    assert cfg.name == "smoke"


def test_int_is_coerced_to_float():
    cfg = load_config("mnist-style", ["train.r1_gamma=5", "train.learning_rates=[1, 0.5]"])
    assert cfg.train.r1_gamma == 5.0 and type(cfg.train.r1_gamma) is float
    assert cfg.train.learning_rates == [1.0, 0.5]
    assert all(type(x) is float for x in cfg.train.learning_rates)


def test_unknown_key_in_yaml(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", {"train": {"epochs": 2, "lr": 0.1}})
    with pytest.raises(ConfigError) as exc:
        load_config(str(path))
    msg = str(exc.value)
    assert "train.lr" in msg
    assert "learning_rates" in msg and "epochs" in msg


def test_unknown_section_in_yaml(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", {"optim": {"lr": 0.1}})
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "optim" in str(exc.value) and "train" in str(exc.value)


def test_unknown_key_in_override():
    with pytest.raises(ConfigError) as exc:
        load_config("mnist-style", ["model.latent=4"])
    msg = str(exc.value)
    assert "model.latent" in msg and "latent_size" in msg


def test_override_without_equals():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("mnist-style", ["train.epochs"])


def test_wrong_type_message():
    with pytest.raises(ConfigError) as exc:
        load_config("mnist-style", ["train.epochs=ten"])
    msg = str(exc.value)
    assert "train.epochs" in msg and "int" in msg and "'ten'" in msg


def test_wrong_list_element_type():
    with pytest.raises(ConfigError, match=r"train\.lod_batch_sizes\[1\].*int"):
        load_config("mnist-style", ["train.lod_batch_sizes=[8, 0.5]"])


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="train.seed"):
        load_config("mnist-style", ["train.seed=true"])


def test_null_only_for_optional_fields():
    with pytest.raises(ConfigError, match="model.latent_size"):
        load_config("mnist-style", ["model.latent_size=null"])


@pytest.mark.parametrize("resolution", [48, 2, 0, -32])
def test_bad_resolution(resolution):
    with pytest.raises(ConfigError, match="data.resolution.*power of two"):
        load_config("mnist-style", [f"data.resolution={resolution}"])


def test_good_resolution():
    assert load_config("mnist-style", ["data.resolution=4"]).data.resolution == 4


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.kind=gan", "model.kind"),
        ("data.dataset=cifar", "data.dataset"),
        ("train.lod_batch_sizes=[128, 0]", "train.lod_batch_sizes[1]"),
        ("train.learning_rates=[-0.1]", "train.learning_rates[0]"),
        ("train.learning_rates=[]", "train.learning_rates"),
        ("train.epochs=0", "train.epochs"),
        ("train.adam_betas=[0.0]", "train.adam_betas"),
        ("train.adam_betas=[0.0, 1.0]", "train.adam_betas[1]"),
        ("train.impl=magic", "train.impl"),
        ("train.lod_batch_sizes={1: [8], 2: [8, -4]}", "train.lod_batch_sizes[2][1]"),
        ("train.lod_batch_sizes={0: [8]}", "train.lod_batch_sizes"),
        ("train.lod_batch_sizes={}", "train.lod_batch_sizes"),
        ("train.lod_batch_sizes={1: []}", "train.lod_batch_sizes[1]"),
    ],
)
def test_value_checks(override, key):
    with pytest.raises(ConfigError) as exc:
        load_config("mnist-style", [override])
    assert key in str(exc.value)


def test_every_impl_name_is_accepted():
    for impl in ["ref", "fast", "triton", "cuda", "cpu"]:
        assert load_config("mnist-style", [f"train.impl={impl}"]).train.impl == impl


def test_unknown_config_name_lists_builtins():
    with pytest.raises(ConfigError) as exc:
        load_config("mnist-gan")
    msg = str(exc.value)
    assert "mnist-gan" in msg and "mnist-mlp" in msg and "mnist-style" in msg


def test_round_trip_dict():
    cfg = load_config("mnist-mlp", ["train.max_steps=7", "data.limit=100"])
    d = config_to_dict(cfg)
    assert d["model"]["latent_size"] == 50 and d["train"]["max_steps"] == 7
    assert config_from_dict(d) == cfg
    # The dict is a copy: editing it leaves the config alone.
    d["train"]["lod_batch_sizes"].append(1)
    assert cfg.train.lod_batch_sizes == [128, 128, 128, 128]


def test_config_from_dict_validates():
    with pytest.raises(ConfigError, match="model.kind"):
        config_from_dict({"model": {"kind": "vae"}})
    assert config_from_dict({}) == Config()


def test_validate_config_catches_bad_edit():
    cfg = Config()
    cfg.train.epochs = -1
    with pytest.raises(ConfigError, match="train.epochs"):
        validate_config(cfg)


def test_save_then_load(tmp_path):
    cfg = load_config("mnist-style", ["train.adam_eps=1e-6", "data.limit=64", "name=x"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert path.is_file()
    loaded = load_config(str(path))
    assert loaded == cfg
    assert loaded.train.adam_eps == 1e-6
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temp left


def test_yaml_file_with_missing_sections_uses_defaults(tmp_path):
    path = write_yaml(tmp_path / "small.yaml", {"train": {"epochs": 2}})
    cfg = load_config(path)
    assert cfg.train.epochs == 2
    assert cfg.model == ModelConfig() and cfg.data == DataConfig() and cfg.name == "custom"
