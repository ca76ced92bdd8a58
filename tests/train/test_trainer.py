"""The training loop: short runs, exact resume, progressive growing through every lod, errors."""

import pytest
import torch
from PIL import Image
from support import mlp_cfg
from support import read_losses
from support import run_losses
from support import style_cfg

from alae_fast.data import MNISTDataError
from alae_fast.train.config import ConfigError
from alae_fast.train.config import load_config
from alae_fast.train.trainer import Trainer


def test_short_mlp_run_losses_move_and_stay_finite(tmp_path, mnist_dir):
    Trainer(mlp_cfg(tmp_path, "train.max_steps=8"), progress=False, log=lambda m: None).run()
    rows = read_losses(tmp_path / "losses.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    for key in ("loss_d", "loss_g", "loss_ae"):
        values = [float(r[key]) for r in rows]
        assert all(torch.isfinite(torch.tensor(values)))
        assert len(set(values)) > 1, key
    for name in ("samples_final.png", "reconstructions_final.png", "losses.png", "checkpoint.pt", "config.yaml"):
        assert (tmp_path / name).is_file(), name
    assert Image.open(tmp_path / "samples_final.png").size == (3 * 34 + 2, 3 * 34 + 2)


def test_same_seed_same_losses_other_seed_differs(tmp_path, mnist_dir):
    runs = []
    for i, seed in enumerate((0, 0, 1)):
        out = tmp_path / str(i)
        Trainer(mlp_cfg(out, "train.max_steps=3", f"train.seed={seed}"), progress=False, log=lambda m: None).run()
        runs.append([r["loss_d"] for r in read_losses(out / "losses.csv")])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_resume_reproduces_next_step_exactly(tmp_path, mnist_dir):
    full, part, resumed = tmp_path / "full", tmp_path / "part", tmp_path / "resumed"
    Trainer(mlp_cfg(full, "train.max_steps=5"), progress=False, log=lambda m: None).run()
    Trainer(mlp_cfg(part, "train.max_steps=3"), progress=False, log=lambda m: None).run()
    Trainer(
        mlp_cfg(resumed, "train.max_steps=5"), resume=str(part / "checkpoint.pt"), progress=False, log=lambda m: None
    ).run()
    expected = read_losses(full / "losses.csv")[3:]
    got = read_losses(resumed / "losses.csv")
    assert [r["step"] for r in got] == ["4", "5"]
    assert got == expected  # exact: the CSV holds repr() of each float


def test_style_run_goes_through_every_lod(tmp_path, mnist_dir):
    messages = []
    t = Trainer(style_cfg(tmp_path), progress=False, log=messages.append)
    blends = []
    step = t.train_step

    def spy(micro, lod, blend):
        blends.append((lod, blend, micro[0].shape[-1]))
        return step(micro, lod, blend)

    t.train_step = spy
    t.run()
    assert sorted({lod for lod, _, _ in blends}) == [0, 1, 2, 3]
    assert all(res == 4 * 2**lod for lod, _, res in blends)
    assert any(0 < b < 1 for _, b, _ in blends)  # fade-in happened
    assert all(b == 1 for lod, b, _ in blends if lod == 0)
    assert Image.open(tmp_path / "samples_final.png").size == (2 * 34 + 2, 2 * 34 + 2)
    assert any("lod 3 (32x32)" in m for m in messages)


def test_config_errors(tmp_path, mnist_dir):
    with pytest.raises(ConfigError, match="data.resolution"):
        Trainer(mlp_cfg(tmp_path, "data.resolution=16"), progress=False)
    with pytest.raises(ConfigError, match="model.channels"):
        Trainer(mlp_cfg(tmp_path, "model.channels=3"), progress=False)


def test_fewer_images_than_a_batch_is_an_error(tmp_path, mnist_dir):
    t = Trainer(mlp_cfg(tmp_path, "data.limit=100"), progress=False, log=lambda m: None)
    with pytest.raises(ConfigError, match="100 images, fewer than one batch of 128"):
        t.run()


def test_resume_with_other_model_config_fails(tmp_path, mnist_dir):
    Trainer(mlp_cfg(tmp_path / "a", "train.max_steps=1"), progress=False, log=lambda m: None).run()
    with pytest.raises(ConfigError, match="different model config"):
        Trainer(
            mlp_cfg(tmp_path / "b", "model.latent_size=8"), resume=str(tmp_path / "a" / "checkpoint.pt"), progress=False
        )


def test_missing_data_names_the_files(tmp_path, mnist_dir):
    with pytest.raises(MNISTDataError, match="train-images-idx3-ubyte.gz"):
        Trainer(mlp_cfg(tmp_path), data=str(tmp_path), progress=False)


def test_trained_model_never_truncates_ema_samples_with_config_truncation(tmp_path, mnist_dir):
    t = Trainer(mlp_cfg(tmp_path), progress=False, log=lambda m: None)
    assert t.model.truncation_psi is None  # official training: no truncation
    assert t.model.dlatent_avg_beta == 0.995
    assert (t.ema.truncation_psi, t.ema.truncation_cutoff) == (0.7, 8)
    assert t.ema.dlatent_avg_beta is None and t.ema.style_mixing_prob is None


def test_image_folder_training(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(6):
        arr = (torch.rand(20, 12, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(folder / f"{i}.png")
    cfg = load_config(
        "mnist-style",
        [
            f"train.output_dir={tmp_path / 'out'}",
            "data.dataset=image_folder",
            f"data.path={folder}",
            "data.resolution=8",
            "model.layer_count=2",
            "model.channels=3",
            "model.startf=4",
            "model.maxf=8",
            "model.latent_size=8",
            "model.mapping_layers=2",
            "train.epochs_per_lod=0",
            "train.lod_batch_sizes=[2]",
            "train.max_steps=3",
            "train.grid_size=4",
            "train.device=cpu",
            "train.log_every=1",
        ],
    )
    Trainer(cfg, progress=False, log=lambda m: None).run()
    assert len(read_losses(tmp_path / "out" / "losses.csv")) == 3
    img = Image.open(tmp_path / "out" / "reconstructions_final.png")
    assert img.mode == "RGB" and img.size == (2 * 10 + 2, 4 * 10 + 2)


def _losses_and_log(cfg_fn, out, impl, *extra):
    return run_losses(cfg_fn(out, *extra, f"train.impl={impl}"))


@pytest.mark.parametrize("impl", ["cpu", "triton"])
def test_mlp_fast_model_trains_like_the_reference_and_is_reported(tmp_path, mnist_dir, impl):
    ref, ref_log = _losses_and_log(mlp_cfg, tmp_path / "ref", "ref", "train.max_steps=3")
    ours, log = _losses_and_log(mlp_cfg, tmp_path / impl, impl, "train.max_steps=3")
    assert (
        "ops: d_adv_loss=ref, r1_penalty=ref, g_adv_loss=ref, latent_l2=ref, linear_act=ref, lreq_adam_step_=ref"
    ) in ref_log
    assert (
        f"ops: d_adv_loss={impl}, r1_penalty={impl}, g_adv_loss={impl}, latent_l2={impl}, "
        f"linear_act={impl}, lreq_adam_step_={impl}"
    ) in log
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(ref), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("impl", ["cpu", "triton"])
def test_style_fast_model_trains_like_the_reference_and_is_reported(tmp_path, mnist_dir, impl):
    # Two steps at 4x4 (lod 0): the fused blocks, losses and optimizer inside the real loop.
    ref, _ = _losses_and_log(style_cfg, tmp_path / "ref", "ref", "train.max_steps=2")
    ours, log = _losses_and_log(style_cfg, tmp_path / impl, impl, "train.max_steps=2")
    ops = (
        "d_adv_loss",
        "r1_penalty",
        "g_adv_loss",
        "latent_l2",
        "bias_act",
        "blur",
        "encode_norm",
        "adain",
        "linear_act",
        "lreq_adam_step_",
    )
    assert "ops: " + ", ".join(f"{op}={impl}" for op in ops) in log
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(ref), rtol=1e-3, atol=1e-5)


def test_fast_impl_follows_the_measured_auto_order_and_unavailable_impl_is_a_config_error(tmp_path):
    from alae_fast.train.trainer import describe_ops

    assert describe_ops("fast", torch.device("cpu")) == (
        "d_adv_loss=ref, r1_penalty=cpu, g_adv_loss=ref, latent_l2=cpu, bias_act=cpu, blur=cpu, "
        "encode_norm=cpu, adain=cpu, linear_act=cpu, lreq_adam_step_=cpu"
    )
    assert describe_ops("fast", torch.device("cpu"), "mlp") == (
        "d_adv_loss=ref, r1_penalty=cpu, g_adv_loss=ref, latent_l2=cpu, linear_act=cpu, lreq_adam_step_=cpu"
    )
    with pytest.raises(ConfigError, match=r"train.impl='cuda'.*unavailable"):
        describe_ops("cuda", torch.device("cpu"))
