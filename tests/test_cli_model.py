"""The commands that use a trained model, end to end: on a short training run's checkpoint, on an
official-format file built from random weights, and on bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from support import official_file

import alae_fast
from alae_fast import inference
from alae_fast.checkpoints import CHECKPOINT_FORMAT
from alae_fast.checkpoints import OFFICIAL_MODULES
from alae_fast.cli import main
from alae_fast.reference.model import StyleALAE
from alae_fast.utils.images import make_grid

SCALE = 4  # the default enlargement of 32 px tiles: at least 128 px


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def grid_size(tiles, cols, side=32, scale=SCALE, padding=2):
    rows = -(-tiles // cols)
    return (scale * (cols * (side + padding) + padding), scale * (rows * (side + padding) + padding))


@pytest.fixture(scope="module")
def ckpt(style_run):
    return style_run / "checkpoint.pt"


def test_generate_writes_the_grid_and_one_file_per_seed(ckpt, tmp_path, capsys):
    code, out, err = run(
        ["generate", ckpt, "--count", 5, "--seed", 3, "--out", tmp_path / "g.png", "--outdir", tmp_path / "each"],
        capsys,
    )
    assert code == 0, err
    assert Image.open(tmp_path / "g.png").size == grid_size(5, 3)
    files = sorted(p.name for p in (tmp_path / "each").iterdir())
    assert files == [f"seed{s:06d}.png" for s in range(3, 8)]
    # each file is its seed's sample, enlarged 4x: the same pixels as the model's image
    model = alae_fast.load(ckpt, device="cpu")
    image = inference.generate(model, 5, seed=3)[4:5]
    expected = make_grid(image, nrow=1, padding=0).repeat(SCALE, 0).repeat(SCALE, 1)
    written = np.asarray(Image.open(tmp_path / "each" / "seed000007.png"))
    # the same float32 model on the same machine in another batch: at most 1 grey level apart
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1


def test_reconstruct_puts_each_original_beside_its_reconstruction(ckpt, mnist_pngs, tmp_path, capsys):
    paths, _ = mnist_pngs
    code, _, err = run(["reconstruct", ckpt, *paths[:3], "--out", tmp_path / "r.png"], capsys)
    assert code == 0, err
    picture = np.asarray(Image.open(tmp_path / "r.png"))
    assert picture.shape[::-1] == grid_size(6, 6)
    # the first tile is the first digit, padded to 32 px, enlarged
    digit = np.asarray(Image.open(paths[0]))
    tile = picture[SCALE * 2 : SCALE * 34 : SCALE, SCALE * 2 : SCALE * 34 : SCALE]
    assert np.array_equal(tile, np.pad(digit, 2))


def test_encode_writes_codes_and_names_in_order(ckpt, mnist_pngs, tmp_path, capsys):
    paths, _ = mnist_pngs
    folder = paths[0].parent
    code, out, err = run(["encode", ckpt, folder, "--out", tmp_path / "codes.npy"], capsys)
    assert code == 0, err
    codes = np.load(tmp_path / "codes.npy")
    names = (tmp_path / "codes.txt").read_text().splitlines()
    assert codes.dtype == np.float32 and codes.shape == (4, 8)
    assert names == [str(p) for p in paths]
    model = alae_fast.load(ckpt, device="cpu", impl="ref")
    x = torch.stack([torch.from_numpy(np.pad(np.asarray(Image.open(p)), 2)) for p in paths]).unsqueeze(1)
    expected = model.encoder(x.float() / 127.5 - 1, 3, 1.0).reshape(4, -1)
    # the fast CPU ops against the reference, float32: the parity bound of the ops (1e-5 relative)
    torch.testing.assert_close(torch.from_numpy(codes), expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_interpolate_from_seeds_and_from_images(ckpt, mnist_pngs, tmp_path, capsys):
    paths, _ = mnist_pngs
    code, _, err = run(["interpolate", ckpt, "--seeds", 1, 2, "--steps", 6, "--out", tmp_path / "s.png"], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "s.png").size == grid_size(6, 6)
    code, _, err = run(
        ["interpolate", ckpt, "--images", paths[0], paths[1], "--steps", 4, "--out", tmp_path / "i.png"], capsys
    )
    assert code == 0, err
    assert Image.open(tmp_path / "i.png").size == grid_size(6, 6)  # the two originals at the ends


def test_style_mix_directions_and_edit(ckpt, mnist_pngs, tmp_path, capsys):
    paths, _ = mnist_pngs
    code, _, err = run(
        ["style-mix", ckpt, "--row-seeds", 1, 2, 3, "--col-seeds", 4, 5, "--out", tmp_path / "m.png"], capsys
    )
    assert code == 0, err
    assert Image.open(tmp_path / "m.png").size == grid_size(12, 3)
    code, out, err = run(["directions", ckpt, "--pca", 3, "--samples", 300, "--out", tmp_path / "d.npy"], capsys)
    assert code == 0, err
    dirs = np.load(tmp_path / "d.npy")
    info = json.loads((tmp_path / "d.json").read_text())
    assert dirs.shape == (3, 8) and len(info["std"]) == 3 and info["std"] == sorted(info["std"], reverse=True)
    np.testing.assert_allclose(dirs @ dirs.T, np.eye(3), atol=1e-5)
    code, _, err = run(
        ["edit", ckpt, *paths[:2], "--direction", tmp_path / "d.npy", "--index", 2, "--strength", -2, 0, 2]
        + ["--out", tmp_path / "e.png"],
        capsys,
    )
    assert code == 0, err
    assert Image.open(tmp_path / "e.png").size == grid_size(8, 4)


def test_metrics_command_runs_the_protocol_with_the_networks_it_is_given(
    ckpt, mnist_dir, tmp_path, capsys, monkeypatch
):
    from alae_fast.metrics import networks

    # Stand-ins for Inception and LPIPS (the real ones need downloaded weights): mean pixel
    # values per 8x8 block, and a mean squared difference.
    def features(device=None):
        return lambda x: torch.nn.functional.avg_pool2d(x.double(), 8).flatten(1)

    def distance(device=None):
        return lambda a, b: (a.double() - b.double()).pow(2).flatten(1).mean(1)

    monkeypatch.setattr(networks, "inception_features", features)
    monkeypatch.setattr(networks, "lpips_distance", distance)
    argv = ["metrics", ckpt, "--data", mnist_dir, "--num", 64, "--json", tmp_path / "m.json", "--no-progress"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "m.json").read_text())
    assert set(result) >= {"fid", "rec_fid", "ppl_full", "ppl_end"}
    assert all(np.isfinite(result[k]) and result[k] >= 0 for k in ("fid", "rec_fid", "ppl_full", "ppl_end"))
    assert "fid" in out and "ppl_end" in out


def test_metrics_offline_without_weights_names_the_file_and_folder(ckpt, mnist_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("ALAE_FAST_OFFLINE", "1")
    code, _, err = run(["metrics", ckpt, "--data", mnist_dir, "--metrics", "fid", "--num", 8], capsys)
    assert code == 2
    # which file is named depends on what is missing first: the library or the weights
    assert ("weights-inception-2015-12-05-6726825d.pth" in err and str(tmp_path / "torch") in err) or (
        "alae_fast[metrics]" in err
    )


# ---- official checkpoints ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """An official-format file from random weights (every tensor random, EMA copies different)."""
    torch.manual_seed(7)
    model = StyleALAE(startf=4, maxf=16, layer_count=3, latent_size=16, mapping_layers=3, channels=3)
    state = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    path = official_file(tmp_path_factory.mktemp("official") / "model_final.pth", state, with_ema=True)
    return path, torch.load(path, weights_only=False)["models"]


def same_modules(model, models, ema):
    for official_name, attr in OFFICIAL_MODULES.items():
        key = official_name + ("_s" if ema and official_name != "dlatent_avg" else "")
        ours = getattr(model, attr).state_dict()
        assert ours.keys() == models[key].keys()
        for name, tensor in models[key].items():
            assert torch.equal(ours[name].cpu(), tensor), f"{key}.{name}"


def test_load_reproduces_an_official_file_exactly(official):
    path, models = official
    same_modules(alae_fast.load(path, device="cpu"), models, ema=True)
    same_modules(alae_fast.load(path, ema=False, device="cpu"), models, ema=False)
    model = alae_fast.load(path, device="cpu")
    assert model.source == "official" and model.trained_lod == 2


def test_convert_official_writes_our_checkpoint_with_the_same_tensors(official, tmp_path, capsys):
    path, models = official
    code, out, err = run(["convert-official", path, tmp_path / "ours.pt"], capsys)
    assert code == 0, err
    ckpt = torch.load(tmp_path / "ours.pt", weights_only=False)
    assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["progress"]["lod"] == 2
    same_modules(alae_fast.load(tmp_path / "ours.pt", device="cpu"), models, ema=True)
    same_modules(alae_fast.load(tmp_path / "ours.pt", ema=False, device="cpu"), models, ema=False)
    assert ckpt["config"]["model"]["startf"] == 4 and ckpt["config"]["model"]["layer_count"] == 3


def test_commands_run_on_an_official_file_and_match_its_conversion(official, tmp_path, capsys):
    path, _ = official
    converted = tmp_path / "ours.pt"
    assert run(["convert-official", path, converted], capsys)[0] == 0
    rgb = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    for source in (path, converted):
        tag = "o" if source == path else "c"
        for argv in (
            ["generate", source, "--count", 4, "--out", tmp_path / f"g{tag}.png"],
            ["encode", source, tmp_path / "photo.png", "--out", tmp_path / f"w{tag}.npy"],
            ["reconstruct", source, tmp_path / "photo.png", "--out", tmp_path / f"r{tag}.png"],
        ):
            code, _, err = run(argv, capsys)
            assert code == 0, err
    for name in ("g", "r"):
        assert np.array_equal(
            np.asarray(Image.open(tmp_path / f"{name}o.png")), np.asarray(Image.open(tmp_path / f"{name}c.png"))
        )
    assert np.array_equal(np.load(tmp_path / "wo.npy"), np.load(tmp_path / "wc.npy"))
    assert Image.open(tmp_path / "go.png").size == grid_size(4, 2, side=16, scale=8)


def test_a_converted_checkpoint_is_refused_for_resuming_training(official, tmp_path, capsys):
    path, _ = official
    run(["convert-official", path, tmp_path / "ours.pt"], capsys)
    code, _, err = run(["train", "--resume", tmp_path / "ours.pt", "--output", tmp_path / "run"], capsys)
    assert code == 2 and "no optimizer state" in err


# ---- bad input ----------------------------------------------------------------------------------


def test_bad_input_is_named(ckpt, mnist_pngs, tmp_path, capsys):
    paths, rgb = mnist_pngs
    (tmp_path / "text.png").write_text("not an image")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    np.save(tmp_path / "short.npy", np.zeros((2, 3), np.float32))
    cases = [
        (["generate", tmp_path / "nope.pt", "--out", tmp_path / "x.png"], "nope.pt does not exist"),
        (["generate", tmp_path / "other.pt", "--out", tmp_path / "x.png"], "neither an alae_fast checkpoint nor"),
        (["generate", paths[0], "--out", tmp_path / "x.png"], "cannot read checkpoint"),
        (["reconstruct", ckpt, tmp_path / "text.png", "--out", tmp_path / "x.png"], "text.png is not a readable image"),
        (["encode", ckpt, rgb, "--out", tmp_path / "x.npy"], "a 3-channel image"),
        (["encode", ckpt, tmp_path / "missing.png", "--out", tmp_path / "x.npy"], "missing.png does not exist"),
        (
            ["edit", ckpt, paths[0], "--direction", tmp_path / "short.npy", "--out", tmp_path / "x.png"],
            "short.npy holds shape",
        ),
        (
            ["edit", ckpt, paths[0], "--direction", tmp_path / "none.npy", "--out", tmp_path / "x.png"],
            "none.npy does not exist",
        ),
        (["generate", ckpt, "--count", 0, "--out", tmp_path / "x.png"], "count must be a positive int"),
        (["generate", ckpt, "--batch-size", 0, "--out", tmp_path / "x.png"], "--batch-size must be a positive"),
        (
            ["interpolate", ckpt, "--seeds", 1, 2, "--steps", 1, "--out", tmp_path / "x.png"],
            "steps must be an int >= 2",
        ),
        (["directions", ckpt, "--pca", 9, "--out", tmp_path / "x.npy"], "k must be an int in [1, 8]"),
        (["metrics", ckpt, "--data", tmp_path, "--metrics", "fid,bogus", "--num", 8], "bogus"),
    ]
    for argv, message in cases:
        code, _, err = run(argv, capsys)
        assert code == 2 and message in err, (argv, err)
        assert "Traceback" not in err


def test_an_official_file_without_ema_copies_says_how_to_load_it(tmp_path):
    model = StyleALAE(startf=4, maxf=8, layer_count=2, latent_size=8, mapping_layers=2, channels=3)
    path = official_file(tmp_path / "plain.pth", model.state_dict())
    with pytest.raises(alae_fast.checkpoints.CheckpointError, match=r"generator_s.*try --weights model \(ema=False\)"):
        alae_fast.load(path, device="cpu")
    alae_fast.load(path, ema=False, device="cpu")


def test_an_official_mlp_file_loads_exactly_and_generates(tmp_path, capsys):
    from alae_fast.reference.model import MLPALAE

    torch.manual_seed(3)
    model = MLPALAE(latent_size=12, mapping_layers=3, channels=1, layer_count=4)
    state = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    path = official_file(tmp_path / "mnist_fc.pth", state, with_ema=True)
    models = torch.load(path, weights_only=False)["models"]
    loaded = alae_fast.load(path, device="cpu")
    assert isinstance(loaded, MLPALAE) and loaded.latent_size == 12 and loaded.config.model.kind == "mlp"
    same_modules(loaded, models, ema=True)
    code, _, err = run(["generate", path, "--count", 2, "--out", tmp_path / "g.png"], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "g.png").size == grid_size(2, 2)


def test_a_file_holding_only_the_ema_modules_converts_with_them_in_both_slots(official, tmp_path, capsys):
    path, models = official
    only_ema = {k: v for k, v in models.items() if k.endswith("_s") or k == "dlatent_avg"}
    torch.save({"models": only_ema}, tmp_path / "released.pth")
    code, _, err = run(["convert-official", tmp_path / "released.pth", tmp_path / "ours.pt"], capsys)
    assert code == 0, err
    same_modules(alae_fast.load(tmp_path / "ours.pt", ema=False, device="cpu"), models, ema=True)
    ckpt = torch.load(tmp_path / "ours.pt", weights_only=False)
    assert ckpt["converted_from"]["ema"] and not ckpt["converted_from"]["trained"]


def test_commands_on_the_paper_mnist_model_use_28_px_images_in_0_1(mnist_dir, mnist_pngs, tmp_path, capsys):
    """The paper's MLP model (mnist-mlp: 28x28 digits, pixels in [0, 1]) reads the digits as they
    are (no padding) and its outputs are shown like every other model's."""
    from alae_fast.train.config import load_config
    from alae_fast.train.trainer import Trainer

    paths, _ = mnist_pngs
    cfg = load_config(
        "mnist-mlp",
        [f"train.output_dir={tmp_path / 'run'}", "data.limit=256", "train.max_steps=2", "model.latent_size=8"]
        + ["train.device=cpu", "train.grid_size=4", "train.sample_every=1000"],
    )
    Trainer(cfg, progress=False).run()
    ckpt = tmp_path / "run" / "checkpoint.pt"
    code, _, err = run(["reconstruct", ckpt, paths[0], "--out", tmp_path / "r.png"], capsys)
    assert code == 0, err
    picture = np.asarray(Image.open(tmp_path / "r.png"))
    scale = 5  # ceil(128 / 28)
    assert picture.shape[::-1] == grid_size(2, 2, side=28, scale=scale)
    tile = picture[scale * 2 : scale * 30 : scale, scale * 2 : scale * 30 : scale]
    # the original digit, unpadded, through [0, 1] and back: at most one grey level off
    assert np.abs(tile.astype(int) - np.asarray(Image.open(paths[0])).astype(int)).max() <= 1
    code, _, err = run(["encode", ckpt, paths[0], paths[1], "--out", tmp_path / "w.npy"], capsys)
    assert code == 0, err
    model = alae_fast.load(ckpt, device="cpu", impl="ref")
    x = torch.stack([torch.from_numpy(np.array(Image.open(p))) for p in paths[:2]]).unsqueeze(1)
    expected = model.encoder(x.float() / 255.0, 3, 1.0).reshape(2, -1)
    torch.testing.assert_close(
        torch.from_numpy(np.load(tmp_path / "w.npy")), expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max())
    )
    code, _, err = run(["generate", ckpt, "--count", 4, "--out", tmp_path / "g.png"], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "g.png").size == grid_size(4, 2, side=28, scale=scale)
