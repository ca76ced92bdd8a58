"""The training loop: short runs, exact resume, progressive growing through every lod, errors."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from support import loss_values
from support import mlp_cfg
from support import read_losses
from support import run_losses
from support import style_cfg

import alae_fast
from alae_fast.checkpoints import load_checkpoint
from alae_fast.cli import main
from alae_fast.data import MNISTDataError
from alae_fast.data import uint8_to_float
from alae_fast.train.config import ConfigError
from alae_fast.train.config import load_config
from alae_fast.train.config import save_config
from alae_fast.train.trainer import LossScale
from alae_fast.train.trainer import NonFiniteLossError
from alae_fast.train.trainer import Trainer
from alae_fast.train.trainer import _at_lod
from alae_fast.train.trainer import micro_batch_seed


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
    # 32 px tiles, enlarged 4x to show them at 128 px
    assert Image.open(tmp_path / "samples_final.png").size == (4 * (3 * 34 + 2), 4 * (3 * 34 + 2))


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
    assert Image.open(tmp_path / "samples_final.png").size == (4 * (2 * 34 + 2), 4 * (2 * 34 + 2))
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
    assert img.mode == "RGB" and img.size == (16 * (2 * 10 + 2), 16 * (4 * 10 + 2))  # 8 px tiles, 16x


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
        "encode_norm=cpu, adain=cpu, linear_act=ref, lreq_adam_step_=cpu"
    )
    assert describe_ops("fast", torch.device("cpu"), "mlp") == (
        "d_adv_loss=ref, r1_penalty=cpu, g_adv_loss=ref, latent_l2=cpu, linear_act=ref, lreq_adam_step_=cpu"
    )
    with pytest.raises(ConfigError, match=r"train.impl='cuda'.*unavailable"):
        describe_ops("cuda", torch.device("cpu"))


# ---- the iteration, lazy R1, precision -------------------------------------------------------


def _textbook_losses(cfg, steps: int) -> list[list[float]]:
    """The ALAE iteration written out plainly (one process, one micro-batch, R1 on every step,
    the seeding scheme of :func:`micro_batch_seed`): [loss_d, loss_g, loss_ae] per step."""
    t = Trainer(cfg, progress=False, log=lambda m: None)  # its model, optimizers and data only
    m, plan = t.model, t.schedule.plan(0)
    order = torch.randperm(t.data.size, generator=torch.Generator().manual_seed(cfg.train.seed * 1_000_003))
    t._set_lr(plan.learning_rate)
    rows = []
    for step in range(steps):
        idx = order[step * plan.batch_size : (step + 1) * plan.batch_size]
        x = _at_lod(uint8_to_float(t.data.images[idx]), plan.lod, 1.0, False)
        row = []
        for phase, opts in enumerate(((t.opt_e,), (t.opt_g,), (t.opt_e, t.opt_g))):
            for o in opts:
                o.zero_grad(set_to_none=False)
            seed = micro_batch_seed(cfg.train.seed, step, 0, phase)
            random.seed(seed)
            torch.manual_seed(seed)
            if phase == 0:
                loss = m.d_loss(x.clone().requires_grad_(True), plan.lod, 1.0, cfg.train.r1_gamma)
            elif phase == 1:
                loss = m.g_loss(len(x), plan.lod, 1.0)
            else:
                loss = m.ae_loss(len(x), plan.lod, 1.0)
            loss.backward()
            for o in opts:
                o.step()
            row.append(loss.item())
        rows.append(row)
    return rows


def test_r1_interval_1_is_the_plain_alae_iteration_bit_for_bit(tmp_path, mnist_dir):
    cfg = mlp_cfg(tmp_path, "train.max_steps=3", "train.r1_interval=1")
    Trainer(cfg, progress=False, log=lambda m: None).run()
    assert loss_values(tmp_path / "losses.csv") == _textbook_losses(mlp_cfg(tmp_path / "plain"), 3)


def test_lazy_r1_applies_k_times_gamma_on_one_step_in_k(tmp_path, mnist_dir):
    t = Trainer(mlp_cfg(tmp_path, "train.max_steps=4", "train.r1_interval=4"), progress=False, log=lambda m: None)
    assert [t.r1_gamma_at(s) for s in range(8)] == [40.0, 0, 0, 0, 40.0, 0, 0, 0]
    gammas = []
    d_loss = t.model.d_loss
    t.model.d_loss = lambda x, lod, blend, gamma, scale: gammas.append(gamma) or d_loss(x, lod, blend, gamma, scale)
    t.run()
    assert gammas == [40.0, 0.0, 0.0, 0.0]
    # Step 1 starts from the same weights for any gamma: the R1 part of loss_d scales with gamma.
    first = {}
    for name, k in (("none", "train.r1_gamma=0"), ("one", "train.r1_interval=1"), ("lazy", "train.r1_interval=4")):
        Trainer(mlp_cfg(tmp_path / name, "train.max_steps=1", k), progress=False, log=lambda m: None).run()
        first[name] = loss_values(tmp_path / name / "losses.csv")[0][0]
    r1_one, r1_lazy = first["one"] - first["none"], first["lazy"] - first["none"]
    assert r1_one > 0
    assert r1_lazy == pytest.approx(4 * r1_one, rel=1e-4)  # float32 losses of size ~1, R1 ~1e-2


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("impl", ["fast", "ref"])
def test_mixed_precision_losses_stay_within_10_percent_of_float32(tmp_path, mnist_dir, precision, impl):
    runs = {}
    for p in ("fp32", precision):
        # fp16: a loss scale the tiny model's gradients fit under (the default 65536 comes down to
        # it in ~13 skipped steps, see test_fp16_loss_scale_comes_down_without_stopping_the_run).
        extra = ["train.fp16_loss_scale=4"] if p == "fp16" else []
        cfg = style_cfg(tmp_path / p, "train.max_steps=4", f"train.precision={p}", f"train.impl={impl}", *extra)
        runs[p] = torch.tensor(run_losses(cfg)[0])
    assert runs[precision].shape == (4, 3) and torch.isfinite(runs[precision]).all()
    torch.testing.assert_close(runs[precision], runs["fp32"], rtol=0.10, atol=0)
    assert not torch.equal(runs[precision], runs["fp32"])  # autocast really ran


def test_channels_last_training_follows_contiguous(tmp_path, mnist_dir):
    a = torch.tensor(run_losses(style_cfg(tmp_path / "a", "train.max_steps=2"))[0])
    b = torch.tensor(run_losses(style_cfg(tmp_path / "b", "train.max_steps=2", "train.channels_last=true"))[0])
    torch.testing.assert_close(b, a, rtol=1e-4, atol=0)


def test_fp16_loss_scale_halves_on_overflow_and_grows_back():
    s = LossScale(True, init=8.0, growth_interval=2)
    s.update(False)
    assert s.value == 4.0
    s.update(True)
    s.update(True)
    assert s.value == 8.0
    assert LossScale(False).value == 1.0


def test_fp16_loss_scale_comes_down_without_stopping_the_run(tmp_path, mnist_dir, capsys):
    cfg = style_cfg(tmp_path, "train.precision=fp16", "train.nonfinite_patience=2")  # 16 steps
    rows = run_losses(cfg)[0]
    skips = capsys.readouterr().err.count("(float16 overflow; loss scale now")
    assert skips >= 3 and len(rows) == 16 - skips  # skipped steps are not logged
    assert torch.isfinite(torch.tensor(rows)).all()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["loss_scale"]["value"] < 65536


def test_global_batch_must_split_into_the_micro_batches(tmp_path, mnist_dir):
    with pytest.raises(ConfigError, match=r"lod_batch_sizes\[0\] = 8 .* 3 micro-batches"):
        Trainer(style_cfg(tmp_path, "train.accumulate=3"), progress=False)


# ---- surviving NaNs and preemption ----------------------------------------------------------


def test_infinite_loss_stops_the_run_without_a_nonfinite_checkpoint(tmp_path, mnist_dir, capsys):
    cfg = mlp_cfg(
        tmp_path, "train.r1_gamma=1e38", "train.nonfinite_patience=3", "train.checkpoint_every=1", "train.max_steps=10"
    )
    t = Trainer(cfg, progress=False, log=lambda m: None)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match=r"3 steps in a row .* step 3: loss_d = (inf|nan)"):
        t.run()
    assert capsys.readouterr().err.count("warning: skipped step") == 2
    for k, v in t.model.state_dict().items():  # every step was undone
        assert torch.equal(v, before[k]), k
    for path in tmp_path.glob("checkpoint*.pt"):
        ckpt = load_checkpoint(path)
        assert all(torch.isfinite(v).all() for v in ckpt["model"].values()), path
    with pytest.raises(NonFiniteLossError, match="refusing to write"):
        with torch.no_grad():
            next(t.model.parameters()).fill_(float("nan"))
        t.save(tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()


def test_cli_exits_nonzero_on_a_nonfinite_run(tmp_path, mnist_dir, capsys):
    args = ["train", "--config", "mnist-mlp", "--output", str(tmp_path), "--no-progress", "--device", "cpu"]
    for s in ("train.r1_gamma=1e38", "train.nonfinite_patience=2", "data.limit=256", "model.latent_size=16"):
        args += ["--set", s]
    assert main(args) == 1
    assert "non-finite loss or gradient" in capsys.readouterr().err


def test_sigterm_writes_a_checkpoint_and_resume_auto_continues(tmp_path, mnist_dir):
    config = tmp_path / "run.yaml"
    save_config(mlp_cfg(tmp_path / "out", "train.max_steps=400"), config)
    args = [sys.executable, "-m", "alae_fast", "train", "--config", str(config), "--resume", "auto", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(Path(alae_fast.__file__).parents[1])}
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    csv = tmp_path / "out" / "losses.csv"
    deadline = time.time() + 120
    while not (csv.exists() and len(read_losses(csv)) >= 3) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "received SIGTERM" in err and "--resume auto" in err
    stopped = load_checkpoint(tmp_path / "out" / "checkpoint.pt")["progress"]["step"]
    assert 3 <= stopped < 400
    assert (tmp_path / "out" / f"checkpoint-{stopped:07d}.pt").is_file()
    # The job restarts itself with the same command: it continues from the checkpoint.
    save_config(mlp_cfg(tmp_path / "out", f"train.max_steps={stopped + 2}"), config)
    done = subprocess.run(args, env=env, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"at step {stopped}" in done.stderr
    Trainer(mlp_cfg(tmp_path / "straight", f"train.max_steps={stopped + 2}"), progress=False, log=lambda m: None).run()
    assert read_losses(csv) == read_losses(tmp_path / "straight" / "losses.csv")


def test_keep_checkpoints_keeps_the_last_snapshots(tmp_path, mnist_dir):
    cfg = mlp_cfg(tmp_path, "train.max_steps=5", "train.checkpoint_every=1", "train.keep_checkpoints=2")
    Trainer(cfg, progress=False, log=lambda m: None).run()
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*.pt")) == [
        "checkpoint-0000004.pt",
        "checkpoint-0000005.pt",
    ]
    assert load_checkpoint(tmp_path / "checkpoint-0000004.pt")["progress"]["step"] == 4


def test_progress_reports_images_per_second_kimg_and_eta(tmp_path, mnist_dir):
    messages = []
    Trainer(mlp_cfg(tmp_path, "train.max_steps=2"), progress=False, log=messages.append).run()
    done = next(m for m in messages if m.startswith("done"))
    assert "kimg 0.3" in done and "img/s" in done and "eta" in done  # 2 steps x 128 images


# ---- image data: mirror flips, batch tables ----------------------------------------------------


def test_mirror_flips_each_image_by_its_seeded_coin(tmp_path, mnist_dir):
    t = Trainer(style_cfg(tmp_path, "data.mirror=true"), progress=False, log=lambda m: None)
    ramp = torch.arange(32, dtype=torch.uint8).mul(7).expand(16, 1, 32, 32).clone()  # left-right asymmetric
    ramp += torch.arange(16, dtype=torch.uint8).view(16, 1, 1, 1)  # and each image its own
    plain = uint8_to_float(ramp)
    x = t._to_device(ramp, 0)
    flipped = [bool(torch.equal(x[i], plain[i].flip(-1))) for i in range(16)]
    for i in range(16):
        assert flipped[i] or torch.equal(x[i], plain[i])
    assert 0 < sum(flipped) < 16
    assert torch.equal(t._to_device(ramp, 0), x)  # a function of (seed, step, micro-batch)
    assert not torch.equal(t._to_device(ramp, 1), x)
    t.step = 1
    assert not torch.equal(t._to_device(ramp, 0), x)
    off = Trainer(style_cfg(tmp_path / "off"), progress=False, log=lambda m: None)
    assert torch.equal(off._to_device(ramp, 0), plain)


def test_batch_table_is_picked_by_the_micro_batch_count_and_named(tmp_path, mnist_dir):
    logs: list[str] = []
    cfg = style_cfg(tmp_path, "train.lod_batch_sizes={1: [8], 2: [4]}", "train.accumulate=2", "train.max_steps=1")
    t = Trainer(cfg, progress=False, log=logs.append)
    assert t.schedule.plan(0).batch_size == 4
    t.run()
    assert any("batch sizes from train.lod_batch_sizes[2]" in line for line in logs)
    with pytest.raises(ConfigError, match=r"lod_batch_sizes\[2\]\[0\] = 6 .* 4 micro-batches"):
        Trainer(style_cfg(tmp_path, "train.lod_batch_sizes={1: [8], 2: [6]}", "train.accumulate=4"), progress=False)
