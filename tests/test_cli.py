"""The alae-fast command line: training and evaluation end to end, and error reporting."""

import json
import math
import subprocess
import sys

from support import loss_values
from support import mixed_image_folder

from alae_fast.cli import main
from alae_fast.train.config import builtin_configs


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_unknown_config_lists_builtins(capsys):
    code, _, err = run(["train", "--config", "nope"], capsys)
    assert code == 2 and "mnist-mlp" in err and "mnist-style" in err


def test_unknown_key_is_named(capsys):
    code, _, err = run(["train", "--config", "mnist-mlp", "--set", "train.bogus=1"], capsys)
    assert code == 2 and "train.bogus" in err


def test_missing_data_is_reported(tmp_path, capsys):
    code, _, err = run(
        ["train", "--config", "mnist-mlp", "--data", str(tmp_path), "--output", str(tmp_path / "out")], capsys
    )
    assert code == 2 and "t10k-labels-idx1-ubyte.gz" in err


def test_train_resume_and_eval(tmp_path, mnist_dir, capsys):
    out = tmp_path / "run"
    common = [
        "--no-progress",
        "--set",
        "data.limit=256",
        "--set",
        "model.latent_size=8",
        "--set",
        "model.mapping_layers=2",
        "--set",
        "train.grid_size=4",
    ]
    code, _, err = run(
        ["train", "--config", "mnist-mlp", "--output", str(out), "--set", "train.max_steps=2", *common], capsys
    )
    assert code == 0, err
    assert (out / "checkpoint.pt").is_file()
    # --resume without a path continues from <output_dir>/checkpoint.pt with the saved config
    code, _, err = run(
        ["train", "--resume", str(out / "checkpoint.pt"), "--set", "train.max_steps=3", "--no-progress"], capsys
    )
    assert code == 0, err
    assert "resumed from" in err and "at step 2" in err
    code, table, err = run(
        ["eval-mnist", str(out / "checkpoint.pt"), "--limit", "500", "--json", str(tmp_path / "r.json")], capsys
    )
    assert code == 0, err
    assert "1-nearest neighbour" in table and "linear SVM" in table
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["step"] == 3 and result["train_size"] == 500
    # even an almost untrained encoder separates digits far better than chance (10%)
    assert 0.3 < result["knn1"] <= 1.0 and 0.3 < result["linear_svm"] <= 1.0


def test_console_script_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "alae_fast.cli", "configs"], capture_output=True, text=True, timeout=120
    )
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and names == builtin_configs()


def test_doctor_subcommand_is_listed_with_its_options(capsys):
    import pytest

    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0 and "doctor" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["doctor", "--help"])
    out = capsys.readouterr().out
    assert "--device {cpu,cuda}" in out and "--json" in out


def test_prepare_dataset_skips_corrupt_files_then_a_tiny_rgb_model_trains_from_it(tmp_path, capsys):
    """The acceptance case: a folder as downloads mix them; exit 0, the corrupt files named, the
    rest prepared, then 3 steps of the smoke config from the prepared dataset via --data."""
    from alae_fast.checkpoints import load_checkpoint
    from alae_fast.data import PreparedDataset

    good, corrupt = mixed_image_folder(tmp_path / "images")
    code, out, err = run(
        ["prepare-dataset", str(tmp_path / "images"), str(tmp_path / "data"), "--resolution", "32", "--no-progress"],
        capsys,
    )
    assert code == 0, err
    for name in corrupt:
        assert name in out + err
    dataset = PreparedDataset(tmp_path / "data")
    assert len(dataset) == len(good) and dataset.manifest["files"] == good
    assert dataset[0].shape == (3, 32, 32)

    out_dir = tmp_path / "run"
    argv = ["train", "--config", "smoke-rgb32", "--data", str(tmp_path / "data"), "--output", str(out_dir)]
    argv += ["--set", "train.max_steps=3", "--no-progress", "--set", "train.lod_batch_sizes=[4]"]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    ckpt = load_checkpoint(out_dir / "checkpoint.pt")
    assert ckpt["progress"]["step"] == 3
    losses = loss_values(out_dir / "losses.csv")
    assert losses and all(math.isfinite(v) for row in losses for v in row)


def test_data_option_names_the_image_folder_of_an_image_folder_config(tmp_path, capsys):
    """`--data FOLDER` is data.path: an image_folder config needs nothing else (this used to
    stop with 'data.path: is required')."""
    _, corrupt = mixed_image_folder(tmp_path / "images")
    for name in corrupt:  # a plain folder is read as it is: no skipping there
        (tmp_path / "images" / name).unlink()
    out_dir = tmp_path / "run"
    argv = ["train", "--config", "smoke-rgb32", "--data", str(tmp_path / "images"), "--output", str(out_dir)]
    code, _, err = run([*argv, "--set", "train.max_steps=1", "--set", "train.lod_batch_sizes=[4]"], capsys)
    assert code == 0, err
    assert (out_dir / "checkpoint.pt").is_file()
    # Without any data the error says what to give.
    code, _, err = run(["train", "--config", "smoke-rgb32", "--output", str(out_dir / "x")], capsys)
    assert code == 2 and "--data" in err


def test_prepare_dataset_refuses_to_overwrite_and_names_a_missing_source(tmp_path, capsys):
    mixed_image_folder(tmp_path / "images")
    argv = ["prepare-dataset", str(tmp_path / "images"), str(tmp_path / "data"), "--resolution", "8", "--no-progress"]
    assert run(argv, capsys)[0] == 0
    code, _, err = run(argv, capsys)
    assert code == 2 and "--overwrite" in err
    assert run([*argv, "--overwrite", "--workers", "0"], capsys)[0] == 0
    missing = ["prepare-dataset", str(tmp_path / "nowhere"), str(tmp_path / "d2"), "--resolution", "8"]
    code, _, err = run(missing, capsys)
    assert code == 2 and "nowhere" in err
