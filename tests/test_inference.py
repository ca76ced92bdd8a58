"""alae_fast.inference: each operation against the model's own modules called by hand, and the
image reading (padding, channel checks, errors)."""

import numpy as np
import pytest
import torch
from PIL import Image

from alae_fast import inference
from alae_fast.checkpoints import build_model
from alae_fast.checkpoints import load
from alae_fast.checkpoints import load_checkpoint
from alae_fast.data import load_mnist
from alae_fast.data import pad_to
from alae_fast.train.config import config_from_dict


@pytest.fixture(scope="module")
def model(style_run):
    """The run's EMA model as the plain reference model in float64, its noise inputs switched
    off (zero strength) so that images do not depend on how they are batched. In float64, two
    evaluations that batch or sum differently agree to ~1e-15, far inside the tolerances here."""
    m = load(style_run / "checkpoint.pt", device="cpu", impl="ref").double()
    for name, p in m.decoder.named_parameters():
        if "noise_weight" in name:
            p.zero_()
    return m


@pytest.fixture(scope="module")
def by_hand(style_run, model):
    """The same weights loaded without alae_fast.load: build_model + load_state_dict."""
    ckpt = load_checkpoint(style_run / "checkpoint.pt")
    ref = build_model(config_from_dict(ckpt["config"]).model)
    ref.load_state_dict(model.state_dict())
    return ref.double().eval().requires_grad_(False)


def z_of(seed, latent):
    return torch.randn(latent, generator=torch.Generator().manual_seed(seed))


def test_load_records_the_trained_level_and_freezes_sampling(style_run, model):
    ckpt = load_checkpoint(style_run / "checkpoint.pt")
    assert model.trained_lod == ckpt["progress"]["lod"] == 3
    assert model.source == "alae_fast" and model.config.data.dataset == "mnist"
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.dlatent_avg_beta is None and model.style_mixing_prob is None
    for key, value in ckpt["ema"].items():
        if "noise_weight" not in key:
            assert torch.equal(model.state_dict()[key], value.double()), key
    trained = load(style_run / "checkpoint.pt", ema=False, device="cpu", impl="ref")
    assert all(torch.equal(trained.state_dict()[k], v) for k, v in ckpt["model"].items())


def test_generate_is_g_of_f_of_the_seeds(model, by_hand):
    images = inference.generate(model, 3, seed=5, batch_size=2)
    z = torch.stack([z_of(s, model.latent_size) for s in (5, 6, 7)]).double()
    styles = by_hand.mapping_f(z)
    expected = by_hand.decoder(styles, 3, 1.0, True)
    torch.testing.assert_close(images, expected, rtol=1e-9, atol=1e-9)
    # one seed at a time gives the same pictures: image k depends on seed k only
    torch.testing.assert_close(inference.generate(model, 1, seed=6), images[1:2], rtol=1e-9, atol=1e-9)


def test_truncation_pulls_the_first_cutoff_slots_towards_the_average(model, by_hand):
    w = inference.sample_w(model, [1, 2])
    psi = 0.5
    images = inference.decode(model, w, truncation=psi)
    slots = torch.arange(model.num_layers).view(1, -1, 1)
    cutoff = model.truncation_cutoff
    styles = w.unsqueeze(1).expand(-1, model.num_layers, -1)
    avg = by_hand.dlatent_avg.buff
    pulled = torch.where(slots < cutoff, avg + psi * (styles - avg), styles)
    torch.testing.assert_close(images, by_hand.decoder(pulled, 3, 1.0, True), rtol=1e-9, atol=1e-9)


def test_encode_and_reconstruct_match_e_and_g(model, by_hand, mnist_dir):
    digits = pad_to(load_mnist("test", mnist_dir)[0][:3], 32).unsqueeze(1)
    x = digits.double() / 127.5 - 1
    w = inference.encode(model, x, batch_size=2)
    expected_w = by_hand.encoder(x, 3, 1.0).reshape(3, -1)
    torch.testing.assert_close(w, expected_w, rtol=1e-9, atol=1e-9)
    rec = inference.reconstruct(model, x, batch_size=2)
    expected = by_hand.decoder(expected_w.unsqueeze(1).expand(-1, model.num_layers, -1), 3, 1.0, True)
    torch.testing.assert_close(rec, expected, rtol=1e-9, atol=1e-9)


def test_interpolate_runs_from_one_code_to_the_other(model):
    w = inference.sample_w(model, [3, 4])
    strip = inference.interpolate(model, w[0], w[1], 5)
    assert strip.shape == (5, 1, 32, 32)
    ends = inference.decode(model, w)
    torch.testing.assert_close(strip[[0, -1]], ends, rtol=1e-9, atol=1e-9)
    middle = inference.decode(model, ((w[0] + w[1]) / 2)[None])
    torch.testing.assert_close(strip[2:3], middle, rtol=1e-9, atol=1e-9)


def test_style_mix_cells_take_the_level_from_the_column(model):
    rows, cols = inference.sample_w(model, [1, 2, 3]), inference.sample_w(model, [1, 4])
    grid = inference.style_mix(model, rows, cols, levels=["coarse", "middle", "fine"])
    assert grid.shape == (4 * 3, 1, 32, 32)
    assert torch.equal(grid[0], torch.full_like(grid[0], -1.0))
    cells = grid.view(4, 3, 1, 32, 32)
    torch.testing.assert_close(cells[0, 1:], inference.decode(model, cols), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(cells[1:, 0], inference.decode(model, rows), rtol=1e-9, atol=1e-9)
    # row 1 mixed with its own code (column 1 is seed 1) is itself
    torch.testing.assert_close(cells[1, 1], cells[1, 0], rtol=1e-9, atol=1e-9)
    # a 32 px generator (8 slots) splits its slots in three: 0-2 coarse, 3-5 middle, 6-7 fine
    levels = inference.style_levels(model)
    assert [list(r) for r in levels.values()] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    # row 2 ("middle") at column 2: seed 2's code with slots 3-5 from seed 4
    styles = rows[1].expand(model.num_layers, -1).clone()
    styles[3:6] = cols[1]
    torch.testing.assert_close(cells[2, 2], inference.decode(model, styles[None])[0], rtol=1e-9, atol=1e-9)


def test_official_style_levels_for_large_generators():
    from alae_fast.reference.model import StyleALAE

    big = StyleALAE(startf=2, maxf=4, layer_count=6, latent_size=4, mapping_layers=1, channels=1)
    levels = inference.style_levels(big)
    assert [(r.start, r.stop) for r in levels.values()] == [(0, 4), (4, 8), (8, 12)]
    assert inference.default_row_levels(6) == ["coarse"] * 3 + ["middle"] * 2 + ["fine"]


def test_pca_directions_match_numpy_eigenvectors(model):
    dirs, std = inference.pca_directions(model, 3, samples=400, seed=2)
    w = inference.sample_w(model, range(2, 402)).double().numpy()
    values, vectors = np.linalg.eigh(np.cov(w, rowvar=False))
    order = np.argsort(values)[::-1][:3]
    np.testing.assert_allclose(std.double().numpy(), np.sqrt(values[order]), rtol=1e-6)
    dots = np.abs(np.sum(dirs.double().numpy() * vectors[:, order].T, axis=1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-5)
    np.testing.assert_allclose(dirs.double() @ dirs.double().T, np.eye(3), atol=1e-6)


def test_edit_moves_the_code_along_the_direction(model, mnist_dir):
    digits = pad_to(load_mnist("test", mnist_dir)[0][:2], 32).unsqueeze(1)
    direction = torch.zeros(model.latent_size)
    direction[0] = 1.0
    out = inference.edit(model, digits, direction, [0.0, 2.0])
    assert out.shape == (2, 2, 1, 32, 32)
    torch.testing.assert_close(out[:, 0], inference.reconstruct(model, digits), rtol=1e-9, atol=1e-9)
    w = inference.encode(model, digits) + 2.0 * direction
    torch.testing.assert_close(out[:, 1], inference.decode(model, w), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="direction must have"):
        inference.edit(model, digits, torch.zeros(3), [1.0])


def test_read_images_pads_mnist_digits_and_checks_inputs(model, mnist_pngs, tmp_path, mnist_dir):
    paths, rgb = mnist_pngs
    images, names = inference.read_images([paths[0].parent], model)
    assert names == [str(p) for p in paths]
    assert torch.equal(images, pad_to(load_mnist("test", mnist_dir)[0][:4], 32).unsqueeze(1))
    with pytest.raises(ValueError, match=r"rgb.png: a 3-channel image .* 1-channel"):
        inference.read_images([rgb], model)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png is not a readable image"):
        inference.read_images([bad], model)
    with pytest.raises(FileNotFoundError, match="missing.png does not exist"):
        inference.read_images([tmp_path / "missing.png"], model)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        inference.read_images([tmp_path / "empty"], model)


def test_read_images_resizes_other_sizes_to_the_data_resolution(model, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (64, 80), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    images, _ = inference.read_images([tmp_path / "wide.png"], model)
    assert images.shape == (1, 1, 32, 32) and images.dtype == torch.uint8
