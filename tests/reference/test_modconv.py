"""style_injection="modconv": StyleGAN2 weight modulation/demodulation in the reference generator.

``modulated_conv2d`` is checked against per-sample loops written here (plain ``F.conv2d`` on an
explicitly modulated kernel, nearest up-sampling by ``F.interpolate``), the demodulation by
probing the kernel the function actually applies; then the blocks, the generator, the whole
model with the reference optimizer, the config key and a short training run.
"""

import io
import math

import pytest
import torch
from support import assert_low_precision_close
from support import loss_values
from support import official_file
from support import style_cfg
from torch.nn import functional as F

from alae_fast import models
from alae_fast.checkpoints import build_model
from alae_fast.reference import DecodeBlock
from alae_fast.reference import Generator
from alae_fast.reference import StyleALAE
from alae_fast.reference import networks
from alae_fast.reference.layers import modulated_conv2d
from alae_fast.reference.optim import LREQAdam
from alae_fast.train import config as config_mod
from alae_fast.train.config import ConfigError
from alae_fast.train.config import load_config
from alae_fast.train.config import save_config

EPS = 1e-8


# --------------------------------------------------------------------------------------------
# Independent computations
# --------------------------------------------------------------------------------------------


def loop_modconv(x, weight, styles, demodulate, up, eps=EPS):
    """Per sample: modulate, demodulate with the formula, (nearest 2x), ``F.conv2d``."""
    outs = []
    kh, kw = weight.shape[2:]
    for n in range(x.shape[0]):
        w = weight * styles[n].view(1, -1, 1, 1)
        if demodulate:
            w = w / torch.sqrt((w * w).sum(dim=(1, 2, 3), keepdim=True) + eps)
        xn = x[n : n + 1]
        if up:
            xn = F.interpolate(xn, scale_factor=2, mode="nearest")
        outs.append(F.conv2d(xn, w, padding=(kh // 2, kw // 2)))
    return torch.cat(outs)


def probe_kernel(x_shape, weight, styles, **kw):
    """The kernel [N, Cout, Cin, kh, kw] that ``modulated_conv2d`` applies, read off its
    responses to unit impulses (the conv is linear in x; a cross-correlation returns the
    kernel flipped, which is flipped back)."""
    n, cin = x_shape[:2]
    kh, kw_ = weight.shape[2:]
    cols = []
    for c in range(cin):
        x = torch.zeros(n, cin, kh, kw_, dtype=weight.dtype)
        x[:, c, kh // 2, kw_ // 2] = 1.0
        cols.append(modulated_conv2d(x, weight, styles, **kw).flip(2, 3))
    return torch.stack(cols, dim=2)


def loop_decode_block(block, x, s1, s2, layer):
    """A modconv DecodeBlock written out per sample, with the deterministic noise stand-in."""

    def noise(t):  # the official no-noise stand-in, with s = sqrt(layer + 1)
        s = math.sqrt(layer + 1)
        return t + s * torch.exp(-t * t / (2 * s * s)) / math.sqrt(2 * math.pi) * 0.8

    def blur(t):
        k = torch.tensor([1.0, 2.0, 1.0], dtype=t.dtype)
        k = (k[:, None] * k[None, :] / 16).expand(t.shape[1], 1, 3, 3)
        return F.conv2d(t, k, padding=1, groups=t.shape[1])

    outs = []
    for n in range(s2.shape[0]):
        if block.has_first_conv:
            w1 = block.conv_1.weight
            if block.fused_scale:  # transposed layout [in, out, 3, 3] of the fused conv
                w1 = w1.transpose(0, 1).flip(2, 3)
            a1 = s1[n] @ block.style_1.weight.T + block.style_1.bias
            h = blur(loop_modconv(x[n : n + 1], w1, a1[None], True, True))
        else:
            h = x[:1]
        h = F.leaky_relu(noise(h) + block.bias_1, 0.2)
        a2 = s2[n] @ block.style_2.weight.T + block.style_2.bias
        h = loop_modconv(h, block.conv_2.weight, a2[None], True, False)
        outs.append(F.leaky_relu(noise(h) + block.bias_2, 0.2))
    return torch.cat(outs)


def randomize(module, seed=1, scale=0.2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return module


def small_model(seed=0, **kw):
    torch.manual_seed(seed)
    opts = dict(
        startf=8, maxf=16, layer_count=3, latent_size=16, mapping_layers=2, channels=1, style_injection="modconv"
    )
    opts.update(kw)
    return StyleALAE(**opts)


# --------------------------------------------------------------------------------------------
# modulated_conv2d
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv2d_matches_per_sample_loop(demodulate, up):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 9, 9, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(7, 5, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    styles = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    ours = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up)
    ref = loop_modconv(x, weight, styles, demodulate, up)
    assert ours.shape == ((3, 7, 18, 18) if up else (3, 7, 9, 9))
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    # The gradients w.r.t. all three inputs too.
    up_grad = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad(ours, (x, weight, styles), up_grad)
    ref_grads = torch.autograd.grad(ref, (x, weight, styles), up_grad)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "n, hw, k, up",
    [(1, (5, 8), 3, False), (4, (7, 3), 1, False), (2, (6, 5), 5, False), (1, (3, 7), 3, True), (5, (1, 1), 3, True)],
)
def test_modulated_conv2d_any_batch_odd_sizes_and_kernels(n, hw, k, up):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, *hw, generator=g, dtype=torch.float64)
    weight = torch.randn(6, 4, k, k, generator=g, dtype=torch.float64)
    styles = torch.randn(n, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        modulated_conv2d(x, weight, styles, up=up), loop_modconv(x, weight, styles, True, up), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("up", [False, True])
def test_modulated_conv2d_low_precision(dtype, up):
    g = torch.Generator().manual_seed(2)
    x, weight, styles = (torch.randn(s, generator=g, dtype=torch.float64) for s in ((3, 5, 9, 9), (7, 5, 3, 3), (3, 5)))
    truth = loop_modconv(x, weight, styles, True, up)
    ours = modulated_conv2d(x.to(dtype), weight.to(dtype), styles.to(dtype), up=up)
    assert ours.dtype == dtype and ours.shape == truth.shape
    same_dtype = loop_modconv(x.to(dtype), weight.to(dtype), styles.to(dtype), True, up)
    assert_low_precision_close(ours, same_dtype, truth)


def test_demodulated_kernel_has_unit_norm_per_output_filter():
    g = torch.Generator().manual_seed(3)
    x_shape = (3, 5, 9, 9)
    weight = torch.randn(7, 5, 3, 3, generator=g, dtype=torch.float64) * 3.0
    styles = torch.randn(3, 5, generator=g, dtype=torch.float64) * 10.0
    kernel = probe_kernel(x_shape, weight, styles)
    norms = kernel.pow(2).sum(dim=(2, 3, 4)).sqrt()
    assert norms.shape == (3, 7)
    torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-9)
    # Without demodulation the probed kernel is the modulated weight itself (its norms are not 1).
    raw = probe_kernel(x_shape, weight, styles, demodulate=False)
    torch.testing.assert_close(raw, weight[None] * styles[:, None, :, None, None])
    assert (raw.pow(2).sum(dim=(2, 3, 4)).sqrt() - 1).abs().min() > 1e-2


@pytest.mark.parametrize("up", [False, True])
def test_demodulated_output_ignores_per_sample_style_scale(up):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 5, 9, 9, generator=g, dtype=torch.float64)
    weight = torch.randn(7, 5, 3, 3, generator=g, dtype=torch.float64)
    styles = torch.randn(3, 5, generator=g, dtype=torch.float64)
    c = torch.tensor([0.2, 3.0, 250.0], dtype=torch.float64).view(3, 1)
    base = modulated_conv2d(x, weight, styles, up=up)
    # Exact up to eps: the relative change is about eps / (2 c^2 sum(w'^2)) < 1e-8 here.
    torch.testing.assert_close(modulated_conv2d(x, weight, styles * c, up=up), base, rtol=1e-7, atol=1e-10)
    # Without demodulation the same scaling scales the output.
    plain = modulated_conv2d(x, weight, styles, demodulate=False, up=up)
    torch.testing.assert_close(
        modulated_conv2d(x, weight, styles * c, demodulate=False, up=up), plain * c.view(3, 1, 1, 1)
    )


def test_modulated_conv2d_rejects_bad_shapes():
    x, w, s = torch.randn(2, 4, 5, 5), torch.randn(3, 4, 3, 3), torch.randn(2, 4)
    with pytest.raises(ValueError, match="mismatch"):
        modulated_conv2d(x, w, torch.randn(3, 4))
    with pytest.raises(ValueError, match="mismatch"):
        modulated_conv2d(x, torch.randn(3, 5, 3, 3), s)
    with pytest.raises(ValueError, match="3x3"):
        modulated_conv2d(x, torch.randn(3, 4, 5, 5), s, up=True)
    with pytest.raises(ValueError, match="odd"):
        modulated_conv2d(x, torch.randn(3, 4, 2, 2), s)


# --------------------------------------------------------------------------------------------
# DecodeBlock and Generator
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("has_first_conv, fused_scale", [(False, False), (True, False), (True, True)])
def test_decode_block_matches_per_sample_computation(has_first_conv, fused_scale):
    torch.manual_seed(0)
    block = DecodeBlock(
        6,
        4 if has_first_conv else 6,
        8,
        has_first_conv=has_first_conv,
        fused_scale=fused_scale,
        layer=2,
        style_injection="modconv",
    ).double()
    randomize(block)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1 if not has_first_conv else 3, 6, 5, 5, generator=g, dtype=torch.float64)
    s1, s2 = (torch.randn(3, 8, generator=g, dtype=torch.float64) for _ in range(2))
    out = block(x, s1, s2, False)
    assert out.shape == (3, block.bias_2.shape[1], *((10, 10) if has_first_conv else (5, 5)))
    torch.testing.assert_close(out, loop_decode_block(block, x, s1, s2, layer=2), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("style_injection", ["adain", "modconv"])
def test_fused_up_conv_equals_nearest_upsampling_conv_with_flipped_transposed_weight(style_injection):
    # The identity modconv relies on, checked on whole blocks of both modes.
    torch.manual_seed(0)
    fused = randomize(DecodeBlock(6, 4, 8, fused_scale=True, layer=1, style_injection=style_injection).double())
    plain = DecodeBlock(6, 4, 8, fused_scale=False, layer=1, style_injection=style_injection).double()
    state = dict(fused.state_dict())
    state["conv_1.weight"] = state["conv_1.weight"].transpose(0, 1).flip(2, 3)
    plain.load_state_dict(state)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 6, 5, 7, generator=g, dtype=torch.float64)
    s1, s2 = (torch.randn(2, 8, generator=g, dtype=torch.float64) for _ in range(2))
    torch.testing.assert_close(fused(x, s1, s2, False), plain(x, s1, s2, False), rtol=1e-10, atol=1e-12)


def test_modconv_block_parameters_and_initial_modulation():
    block = DecodeBlock(16, 8, 32, style_injection="modconv")
    assert block.style_injection == "modconv"
    assert block.style_1.weight.shape == (16, 32) and block.style_2.weight.shape == (8, 32)
    assert torch.equal(block.style_1.bias, torch.ones(16))
    assert torch.equal(block.style_2.bias, torch.ones(8))
    assert block.conv_1.weight.shape == (16, 8, 3, 3)  # fused (transposed) layout kept
    assert block.style_2.bias.lr_equalization_coef == 1.0
    first = DecodeBlock(16, 16, 32, has_first_conv=False, style_injection="modconv")
    assert not hasattr(first, "style_1") and not hasattr(first, "conv_1")
    # The default is the official AdaIN block, untouched.
    adain = DecodeBlock(16, 8, 32)
    assert adain.style_injection == "adain"
    assert adain.style_1.weight.shape == (16, 32) and torch.equal(adain.style_1.bias, torch.zeros(16))
    assert list(adain.state_dict()) == [
        "noise_weight_1",
        "bias_1",
        "noise_weight_2",
        "bias_2",
        "conv_1.weight",
        "blur.weight",
        "style_1.weight",
        "style_1.bias",
        "conv_2.weight",
        "style_2.weight",
        "style_2.bias",
    ]


def test_generator_shapes_at_every_lod_and_blend():
    torch.manual_seed(0)
    gen = Generator(startf=4, maxf=16, layer_count=4, latent_size=8, channels=3, style_injection="modconv")
    assert gen.style_injection == "modconv"
    assert all(b.style_injection == "modconv" for b in gen.decode_block)
    styles = torch.randn(2, 8, 8)
    with torch.no_grad():
        for lod in range(4):
            for blend in [1.0] if lod == 0 else [1.0, 0.5]:
                for noise in (True, False):
                    out = gen(styles, lod, blend, noise)
                    assert out.shape == (2, 3, 4 * 2**lod, 4 * 2**lod)
                    assert torch.isfinite(out).all()


def test_generator_with_fused_up_sampling_levels():
    # Levels at resolution >= 128 use the fused (transposed) conv_1.
    torch.manual_seed(0)
    gen = Generator(startf=2, maxf=4, layer_count=6, latent_size=4, channels=1, style_injection="modconv")
    assert gen.decode_block[5].fused_scale and gen.decode_block[5].conv_1.transpose
    with torch.no_grad():
        out = gen(torch.randn(2, 12, 4), 5, 0.5, True)
    assert out.shape == (2, 1, 128, 128) and torch.isfinite(out).all()


def test_gradients_reach_every_used_decoder_parameter():
    torch.manual_seed(0)
    gen = randomize(Generator(startf=4, maxf=16, layer_count=4, latent_size=8, channels=1, style_injection="modconv"))
    styles = torch.randn(3, 8, 8, requires_grad=True)
    lod = 3
    out = gen(styles, lod, 0.5, True)
    out.backward(torch.randn(out.shape))
    # Unused here: to_rgb of the levels below lod - 1 (as in adain mode). The first block has
    # no style_1 at all, so style slot 0 gets no gradient.
    unused = {f"to_rgb.{i}.{p}" for i in range(lod - 1) for p in ("to_rgb.weight", "to_rgb.bias")}
    for name, p in gen.named_parameters():
        if name in unused:
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not any(n.startswith("decode_block.0.style_1") for n, _ in gen.named_parameters())
    assert torch.equal(styles.grad[:, 0], torch.zeros(3, 8))
    assert (styles.grad[:, 1:].abs().sum(dim=(0, 2)) > 0).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda v: DecodeBlock(4, 4, 8, style_injection=v),
        lambda v: Generator(startf=4, maxf=8, layer_count=2, latent_size=8, style_injection=v),
        lambda v: StyleALAE(startf=4, maxf=8, layer_count=2, latent_size=8, mapping_layers=2, style_injection=v),
    ],
)
def test_bad_style_injection_is_a_value_error(make):
    with pytest.raises(ValueError, match=r"style_injection.*'adain', 'modconv'.*'AdaIN'"):
        make("AdaIN")


# --------------------------------------------------------------------------------------------
# Whole model
# --------------------------------------------------------------------------------------------


def test_style_alae_modconv_trains_with_the_reference_optimizer():
    m = small_model()
    assert m.style_injection == "modconv" and m.decoder.style_injection == "modconv"
    opt_e = LREQAdam(
        [{"params": m.encoder.parameters()}, {"params": m.mapping_d.parameters()}], lr=0.002, betas=(0.0, 0.99)
    )
    opt_g = LREQAdam(
        [{"params": m.decoder.parameters()}, {"params": m.mapping_f.parameters()}], lr=0.002, betas=(0.0, 0.99)
    )
    before = {k: v.clone() for k, v in m.decoder.state_dict().items()}
    g = torch.Generator().manual_seed(7)
    losses = []
    for lod, blend in [(2, 0.5), (2, 1.0), (2, 1.0)]:
        x = torch.randn(4, 1, 16, 16, generator=g).requires_grad_(True)
        opt_e.zero_grad()
        loss_d = m.d_loss(x, lod, blend, 10.0)
        loss_d.backward()
        opt_e.step()
        opt_g.zero_grad()
        loss_g = m.g_loss(4, lod, blend)
        loss_g.backward()
        opt_g.step()
        opt_e.zero_grad()
        opt_g.zero_grad()
        loss_ae = m.ae_loss(4, lod, blend)
        loss_ae.backward()
        opt_e.step()
        opt_g.step()
        losses.append([loss_d.item(), loss_g.item(), loss_ae.item()])
    assert torch.isfinite(torch.tensor(losses)).all()
    changed = [k for k, v in m.decoder.state_dict().items() if not torch.equal(v, before[k])]
    assert "decode_block.2.style_1.weight" in changed and "decode_block.0.conv_2.weight" in changed


def test_style_alae_modconv_state_dict_round_trip():
    m = randomize(small_model(seed=0))
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    other = small_model(seed=1)
    other.load_state_dict(torch.load(buf), strict=True)
    z = torch.randn(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            other.generate(2, 1.0, z=z, mixing=False, noise=False), m.generate(2, 1.0, z=z, mixing=False, noise=False)
        )
        x = torch.randn(3, 1, 16, 16)
        torch.testing.assert_close(other.reconstruct(x, noise=False), m.reconstruct(x, noise=False))
    # The encoder is the same in both modes; the generators' states are not interchangeable.
    adain = StyleALAE(startf=8, maxf=16, layer_count=3, latent_size=16, mapping_layers=2, channels=1)
    assert adain.style_injection == "adain"
    adain.encoder.load_state_dict(m.encoder.state_dict(), strict=True)
    with pytest.raises(RuntimeError):
        adain.load_state_dict(m.state_dict(), strict=True)
    # The EMA copy keeps the mode.
    ema = m.make_ema()
    assert ema.decoder.style_injection == "modconv"


def test_official_checkpoints_load_only_as_adain(tmp_path):
    from alae_fast.checkpoints import CheckpointError
    from alae_fast.checkpoints import load_official

    m = StyleALAE(startf=4, maxf=8, layer_count=2, latent_size=8, mapping_layers=2, channels=1)
    official_file(tmp_path / "official.pth", m.state_dict())
    assert load_official(tmp_path / "official.pth").decoder.style_injection == "adain"
    with pytest.raises(CheckpointError, match="style_injection='modconv'"):
        load_official(tmp_path / "official.pth", style_injection="modconv")


def test_fast_model_keeps_the_reference_signature_and_runs_modconv():
    import copy
    import inspect

    import alae_fast

    assert inspect.signature(models.StyleALAE.__init__) == inspect.signature(StyleALAE.__init__)
    assert inspect.signature(StyleALAE.__init__).parameters["style_injection"].default == "adain"
    fast = models.StyleALAE(startf=4, maxf=8, layer_count=3, latent_size=8, mapping_layers=2, style_injection="modconv")
    assert fast.decoder.style_injection == "modconv"
    # The fast generator (fast blur, the same grouped convolution) against the reference.
    torch.manual_seed(0)
    ref = Generator(startf=4, maxf=8, layer_count=3, latent_size=8, style_injection="modconv")
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "bias" in name or "noise_weight" in name:
                p.add_(0.2 * torch.randn_like(p))
    quick = alae_fast.optimize(copy.deepcopy(ref))
    styles = torch.randn(2, 6, 8)
    outs = []
    for m in (quick, ref):
        torch.manual_seed(1)
        outs.append(m(styles, 2, 0.5, noise=True))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Config and trainer
# --------------------------------------------------------------------------------------------


def test_config_override_builds_a_modconv_model(tmp_path):
    assert load_config("mnist-style").model.style_injection == "adain"
    assert load_config("mnist-mlp").model.style_injection == "adain"
    cfg = load_config(
        "mnist-style", ["model.style_injection=modconv", "model.startf=4", "model.maxf=8", "model.layer_count=2"]
    )
    assert cfg.model.style_injection == "modconv"
    assert load_config(str(save_config(cfg, tmp_path / "c.yaml"))) == cfg
    model = build_model(cfg.model)
    assert isinstance(model, StyleALAE) and model.decoder.style_injection == "modconv"
    assert model.decoder.decode_block[1].style_2.weight.shape == (4, cfg.model.latent_size)
    assert config_mod.STYLE_INJECTIONS == networks.STYLE_INJECTIONS


@pytest.mark.parametrize(
    "overrides, match",
    [
        (
            ["model.style_injection=modulated"],
            r"model.style_injection: must be one of "
            r"\['adain', 'modconv'\], got 'modulated'",
        ),
        (["model.style_injection=5"], r"model.style_injection: must be one of .*got '5'"),
        (
            ["model.kind=mlp", "model.style_injection=modconv"],
            r"model.style_injection: must be "
            r"'adain' for model.kind 'mlp'",
        ),
    ],
)
def test_bad_style_injection_is_a_config_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("mnist-style", overrides)


def test_style_injection_type_is_checked_in_yaml_dicts():
    with pytest.raises(ConfigError, match=r"model.style_injection: expected str, got int 5"):
        config_mod.config_from_dict({"model": {"style_injection": 5}})
    cfg = config_mod.config_from_dict({"model": {"style_injection": "modconv"}})
    assert cfg.model.style_injection == "modconv"


def _style_cfg(out_dir, *extra):
    return style_cfg(out_dir, "model.style_injection=modconv", *extra)


def test_trainer_smoke_run_with_modconv(tmp_path, mnist_dir):
    from alae_fast.checkpoints import load_checkpoint
    from alae_fast.train.trainer import Trainer

    t = Trainer(_style_cfg(tmp_path, "train.impl=ref", "train.max_steps=3"), progress=False, log=lambda m: None)
    assert t.model.decoder.style_injection == "modconv"
    assert t.ema.decoder.style_injection == "modconv"
    t.run()
    losses = torch.tensor(loss_values(tmp_path / "losses.csv"))
    assert losses.shape == (3, 3) and torch.isfinite(losses).all()
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["config"]["model"]["style_injection"] == "modconv"
    assert "decoder.decode_block.0.style_1.weight" not in ckpt["model"]
    assert (tmp_path / "samples_final.png").is_file()


def test_trainer_runs_modconv_on_the_fast_modules(tmp_path, mnist_dir):
    # The fast modules' modconv generator inside the real loop: its two steps' losses against
    # the reference model's, and the same checkpoint layout.
    from alae_fast.checkpoints import load_checkpoint
    from alae_fast.nn import DecodeBlock as FastDecodeBlock
    from alae_fast.train.trainer import Trainer

    losses, states = {}, {}
    for impl in ("ref", "fast"):
        out = tmp_path / impl
        t = Trainer(_style_cfg(out, f"train.impl={impl}", "train.max_steps=2"), progress=False, log=lambda m: None)
        assert isinstance(t.model.decoder.decode_block[1], FastDecodeBlock) == (impl == "fast")
        t.run()
        losses[impl] = torch.tensor(loss_values(out / "losses.csv"))
        states[impl] = load_checkpoint(out / "checkpoint.pt")["model"]
    assert losses["ref"].shape == (2, 3)
    # The tolerance of tests/train/test_trainer.py's adain StyleALAE run (same loop, 2 steps).
    torch.testing.assert_close(losses["fast"], losses["ref"], rtol=1e-3, atol=1e-5)
    assert set(states["fast"]) == set(states["ref"])
    for name, p in states["ref"].items():
        assert states["fast"][name].shape == p.shape, name
