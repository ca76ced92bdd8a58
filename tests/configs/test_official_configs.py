"""The built-in ffhq, celeba-hq256, bedroom and celeba configs against the official ones.

OFFICIAL is a machine transcription of podgorskiy/ALAE master (42bcf2e) configs/<name>.yaml
(parsed with yaml.safe_load, the official key names kept) and OFFICIAL_DEFAULTS of the
defaults.py values those files do not override; the test reads our configs the way a user
does, through `alae-fast configs NAME`, and maps each official key to ours.
"""

from __future__ import annotations

import pytest
import yaml

from alae_fast.cli import main
from alae_fast.train.config import TrainConfig

# fmt: off
OFFICIAL = {
    "ffhq": {"MODEL.LATENT_SPACE_SIZE": 512, "MODEL.LAYER_COUNT": 9, "MODEL.MAX_CHANNEL_COUNT": 512, "MODEL.START_CHANNEL_COUNT": 16, "MODEL.DLATENT_AVG_BETA": 0.995, "MODEL.MAPPING_LAYERS": 8, "TRAIN.TRAIN_EPOCHS": 300, "TRAIN.EPOCHS_PER_LOD": 16, "TRAIN.LEARNING_RATES": [0.0015, 0.0015, 0.0015, 0.0015, 0.0015, 0.0015, 0.002, 0.003, 0.003], "TRAIN.LOD_2_BATCH_1GPU": [512, 256, 128, 64, 32, 16], "TRAIN.LOD_2_BATCH_2GPU": [512, 256, 128, 64, 32, 32, 16], "TRAIN.LOD_2_BATCH_4GPU": [512, 256, 128, 64, 32, 32, 32, 32, 16], "TRAIN.LOD_2_BATCH_8GPU": [512, 256, 128, 64, 32, 32, 32, 32, 32], "DATASET.MAX_RESOLUTION_LEVEL": 10},  # noqa: E501
    "celeba-hq256": {"MODEL.LATENT_SPACE_SIZE": 512, "MODEL.LAYER_COUNT": 7, "MODEL.MAX_CHANNEL_COUNT": 512, "MODEL.START_CHANNEL_COUNT": 64, "MODEL.DLATENT_AVG_BETA": 0.995, "MODEL.MAPPING_LAYERS": 8, "TRAIN.TRAIN_EPOCHS": 280, "TRAIN.EPOCHS_PER_LOD": 30, "TRAIN.LEARNING_RATES": [0.0015, 0.0015, 0.0015, 0.0015, 0.0015, 0.0015, 0.0015, 0.003, 0.003], "TRAIN.LOD_2_BATCH_1GPU": [128, 128, 128, 64, 32, 16], "TRAIN.LOD_2_BATCH_2GPU": [128, 128, 128, 64, 32, 32, 16], "TRAIN.LOD_2_BATCH_4GPU": [512, 256, 128, 64, 32, 32, 32, 32, 16], "TRAIN.LOD_2_BATCH_8GPU": [512, 256, 128, 64, 32, 32, 32, 32, 24], "DATASET.MAX_RESOLUTION_LEVEL": 8},  # noqa: E501
    "bedroom": {"MODEL.LATENT_SPACE_SIZE": 512, "MODEL.LAYER_COUNT": 7, "MODEL.MAX_CHANNEL_COUNT": 512, "MODEL.START_CHANNEL_COUNT": 32, "MODEL.DLATENT_AVG_BETA": 0.995, "MODEL.MAPPING_LAYERS": 8, "TRAIN.TRAIN_EPOCHS": 112, "TRAIN.EPOCHS_PER_LOD": 2, "TRAIN.LEARNING_RATES": [0.0015, 0.0015, 0.0015, 0.0015, 0.0015, 0.0015, 0.002, 0.003, 0.003], "TRAIN.LOD_2_BATCH_1GPU": [512, 256, 128, 64, 32, 16], "TRAIN.LOD_2_BATCH_2GPU": [512, 256, 128, 64, 32, 32, 16], "TRAIN.LOD_2_BATCH_4GPU": [512, 256, 128, 64, 32, 32, 32, 32, 16], "TRAIN.LOD_2_BATCH_8GPU": [512, 256, 128, 64, 32, 32, 32, 32, 32], "DATASET.MAX_RESOLUTION_LEVEL": 8},  # noqa: E501
    "celeba": {"MODEL.LATENT_SPACE_SIZE": 256, "MODEL.LAYER_COUNT": 6, "MODEL.MAX_CHANNEL_COUNT": 256, "MODEL.START_CHANNEL_COUNT": 64, "MODEL.DLATENT_AVG_BETA": 0.995, "MODEL.MAPPING_LAYERS": 8, "TRAIN.TRAIN_EPOCHS": 80, "TRAIN.EPOCHS_PER_LOD": 6, "TRAIN.LEARNING_RATES": [0.0015, 0.0015, 0.0015, 0.0015, 0.0015, 0.0015, 0.002, 0.003, 0.003], "TRAIN.LOD_2_BATCH_1GPU": [128, 128, 128, 64, 32, 16], "TRAIN.LOD_2_BATCH_2GPU": [128, 128, 128, 64, 32, 32, 16], "TRAIN.LOD_2_BATCH_4GPU": [512, 256, 128, 64, 32, 32, 32, 32, 16], "TRAIN.LOD_2_BATCH_8GPU": [512, 256, 128, 64, 32, 32, 32, 32, 32], "DATASET.MAX_RESOLUTION_LEVEL": 7},  # noqa: E501
}
# fmt: on
OFFICIAL_DEFAULTS = {
    "MODEL.CHANNELS": 3,
    "MODEL.TRUNCATIOM_PSI": 0.7,
    "MODEL.TRUNCATIOM_CUTOFF": 8,
    "MODEL.STYLE_MIXING_PROB": 0.9,
    "DATASET.FLIP_IMAGES": True,
    "TRAIN.ADAM_BETA_0": 0.0,
    "TRAIN.ADAM_BETA_1": 0.99,
}


def _ours(printed: dict, official_key: str):
    """The value of our resolved config that stands for ``official_key``."""
    m, d, t = printed["model"], printed["data"], printed["train"]
    if official_key.startswith("TRAIN.LOD_2_BATCH_"):
        gpus = int(official_key[len("TRAIN.LOD_2_BATCH_") : -len("GPU")])
        return t["lod_batch_sizes"][gpus]
    return {
        "MODEL.LATENT_SPACE_SIZE": m["latent_size"],
        "MODEL.LAYER_COUNT": m["layer_count"],
        "MODEL.MAX_CHANNEL_COUNT": m["maxf"],
        "MODEL.START_CHANNEL_COUNT": m["startf"],
        "MODEL.DLATENT_AVG_BETA": m["dlatent_avg_beta"],
        "MODEL.MAPPING_LAYERS": m["mapping_layers"],
        "MODEL.CHANNELS": m["channels"],
        "MODEL.TRUNCATIOM_PSI": m["truncation_psi"],
        "MODEL.TRUNCATIOM_CUTOFF": m["truncation_cutoff"],
        "MODEL.STYLE_MIXING_PROB": m["style_mixing_prob"],
        "DATASET.FLIP_IMAGES": d["mirror"],
        # The official resolution level L means 2**L pixels a side.
        "DATASET.MAX_RESOLUTION_LEVEL": d["resolution"].bit_length() - 1,
        "TRAIN.TRAIN_EPOCHS": t["epochs"],
        "TRAIN.EPOCHS_PER_LOD": t["epochs_per_lod"],
        "TRAIN.LEARNING_RATES": t["learning_rates"],
        "TRAIN.ADAM_BETA_0": t["adam_betas"][0],
        "TRAIN.ADAM_BETA_1": t["adam_betas"][1],
    }[official_key]


def _printed(name: str, capsys) -> dict:
    assert main(["configs", name]) == 0
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_configs_name_prints_the_official_fields(name, capsys):
    printed = _printed(name, capsys)
    assert printed["name"] == name
    expected = {**OFFICIAL_DEFAULTS, **OFFICIAL[name]}
    mismatches = {k: (v, _ours(printed, k)) for k, v in expected.items() if _ours(printed, k) != v}
    assert not mismatches, f"official value, ours: {mismatches}"
    assert set(printed["train"]["lod_batch_sizes"]) == {1, 2, 4, 8}
    assert printed["model"]["kind"] == "style" and printed["data"]["dataset"] == "image_folder"
    # The model's last level is the data resolution.
    assert printed["data"]["resolution"] == 4 * 2 ** (printed["model"]["layer_count"] - 1)


def test_configs_lists_every_builtin_with_its_resolution(capsys):
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    by_name = {line.split()[0]: line for line in lines}
    assert set(by_name) >= {"ffhq", "celeba-hq256", "bedroom", "celeba", "mnist-mlp", "mnist-style", "smoke-rgb32"}
    assert "1024x1024 RGB" in by_name["ffhq"] and "FFHQ" in by_name["ffhq"]
    assert "128x128 RGB" in by_name["celeba"] and "32x32 grayscale" in by_name["mnist-mlp-master"]
    assert "28x28 grayscale" in by_name["mnist-mlp"]


def test_configs_name_applies_overrides_and_rejects_unknown(capsys):
    printed = _printed_with(["configs", "celeba", "--set", "train.accumulate=4"], capsys)
    assert printed["train"]["accumulate"] == 4
    assert main(["configs", "no-such-config"]) == 2
    assert "built-in configs" in capsys.readouterr().err


def _printed_with(argv, capsys) -> dict:
    assert main(argv) == 0
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize(("micro_count", "table"), [(1, 1), (2, 2), (3, 2), (4, 4), (6, 4), (8, 8), (16, 8)])
def test_the_batch_table_is_the_largest_count_not_above_the_micro_batches(micro_count, table, capsys):
    printed = _printed("ffhq", capsys)
    tables = printed["train"]["lod_batch_sizes"]
    cfg = TrainConfig(lod_batch_sizes=tables)
    assert cfg.batch_table(micro_count) == (table, tables[table])
    # Beyond the table's end the last entry is reused, as the official LODDriver does.
    assert cfg.batch_size_for_lod(20, micro_count) == tables[table][-1]
