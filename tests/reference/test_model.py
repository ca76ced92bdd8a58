"""Whole-model behaviour of the reference StyleALAE and MLPALAE: progressive blending,
truncation, style mixing, the running w average, EMA, determinism and input checks."""

import pytest
import torch
from torch.nn import functional as F

from alae_fast.reference import MLPALAE
from alae_fast.reference import StyleALAE


def small(**kw):
    torch.manual_seed(0)
    opts = dict(startf=4, maxf=16, layer_count=3, latent_size=8, mapping_layers=2, channels=3)
    opts.update(kw)
    return StyleALAE(**opts)


def randomize(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return model


@pytest.mark.parametrize("lod", [1, 2])
def test_generator_blend_endpoints(lod):
    m = randomize(small())
    styles = torch.randn(2, 6, 8)
    with torch.no_grad():
        full = m.decoder(styles, lod, 1.0, False)
        prev = F.interpolate(m.decoder(styles, lod - 1, 1.0, False), scale_factor=2, mode="nearest")
        torch.testing.assert_close(m.decoder(styles, lod, 0.0, False), prev)
        torch.testing.assert_close(m.decoder(styles, lod, 0.5, False), 0.5 * prev + 0.5 * full, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(full, prev)


@pytest.mark.parametrize("lod", [1, 2])
def test_encoder_blend_endpoints(lod):
    m = randomize(small())
    r = 4 * 2**lod
    x = torch.randn(2, 3, r, r)
    with torch.no_grad():
        coarse = m.encoder(F.avg_pool2d(x, 2), lod - 1, 1.0)
        torch.testing.assert_close(m.encoder(x, lod, 0.0), coarse, rtol=1e-5, atol=1e-6)
        full = m.encoder(x, lod, 1.0)
        half = m.encoder(x, lod, 0.5)
        assert full.shape == (2, 1, 8)
        assert not torch.allclose(half, full) and not torch.allclose(half, coarse)


def test_truncation_pulls_first_slots_to_average():
    m = small(truncation_psi=0.5, truncation_cutoff=2)
    m.dlatent_avg.buff.copy_(torch.arange(6.0).view(6, 1).expand(6, 8))
    styles = torch.full((1, 6, 8), 10.0)
    out = m.truncate(styles)
    torch.testing.assert_close(out[0, :, 0], torch.tensor([5.0, 5.5, 10, 10, 10, 10]))


def test_running_average_update():
    m = small(dlatent_avg_beta=0.9)
    z = torch.randn(4, 8)
    with torch.no_grad():
        w = m.mapping(z).mean(0)
        m.generate(2, 1.0, z=z, noise=False)
    torch.testing.assert_close(m.dlatent_avg.buff, (0.1 * w).expand(6, 8), rtol=1e-5, atol=1e-7)


def test_style_mixing_prefix_from_first_latent():
    m = small(style_mixing_prob=1.0)
    seen = {}
    m.decoder.register_forward_pre_hook(lambda mod, args: seen.update(styles=args[0]))
    torch.manual_seed(3)
    with torch.no_grad():
        s, _ = m.generate(2, 1.0, count=4, noise=False, return_styles=True)
    styles = seen["styles"]
    first = (styles == s).all(dim=2).all(dim=0)  # slots taken from F(z)
    k = int(first.sum())
    assert 1 <= k <= 6 and first[:k].all()  # a prefix of the slots
    if k < 6:
        assert not torch.allclose(styles[:, k], s[:, 0])
        torch.testing.assert_close(styles[:, k:], styles[:, k : k + 1].expand_as(styles[:, k:]))


def test_ema_lerp_and_buffers():
    m = small(dlatent_avg_beta=0.9)
    ema = m.make_ema()
    old = [p.clone() for p in ema.parameters()]
    randomize(m, 5)
    m.dlatent_avg.buff.fill_(3.0)
    ema.lerp(m, 0.75)
    for p_old, p_new, p_ema in zip(old, m.parameters(), ema.parameters()):
        torch.testing.assert_close(p_ema, 0.75 * p_old + 0.25 * p_new)
    assert torch.all(ema.dlatent_avg.buff == 3.0)
    assert not any(p.requires_grad for p in ema.parameters())


def test_construction_is_deterministic_under_seed():
    a, b = small(), small()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    torch.manual_seed(1)
    c = StyleALAE(startf=4, maxf=16, layer_count=3, latent_size=8, mapping_layers=2, channels=3)
    assert not torch.equal(a.mapping_f.map_blocks[0].fc.weight, c.mapping_f.map_blocks[0].fc.weight)


def test_reconstruct_shapes():
    m = small()
    x = torch.randn(2, 3, 16, 16)
    assert m.reconstruct(x).shape == x.shape
    mlp = MLPALAE(latent_size=8, mapping_layers=2)
    x = torch.randn(3, 1, 32, 32)
    assert mlp.reconstruct(x).shape == x.shape
    assert mlp.encode(x, 3, 1.0)[1].shape == (3,)


def test_bad_inputs_raise_clear_errors():
    m = small()
    with pytest.raises(ValueError, match=r"x must have shape \[N, 3, 16, 16\]"):
        m.encoder(torch.randn(2, 3, 8, 8), 2, 1.0)
    with pytest.raises(ValueError, match=r"x must have shape \[N, 3, 16, 16\]"):
        m.encoder(torch.randn(2, 1, 16, 16), 2, 1.0)
    with pytest.raises(ValueError, match="lod must be in"):
        m.decoder(torch.randn(2, 6, 8), 3, 1.0, False)
    with pytest.raises(ValueError, match="styles must have shape"):
        m.decoder(torch.randn(2, 6, 5), 1, 1.0, False)
    with pytest.raises(ValueError, match="blend < 1 needs lod >= 1"):
        m.decoder(torch.randn(2, 6, 8), 0, 0.5, False)
    with pytest.raises(ValueError, match=r"z must have shape \[N, 8\]"):
        m.mapping_f(torch.randn(2, 7))
    with pytest.raises(ValueError, match=r"x must have shape \[N, 1, H, W\]"):
        MLPALAE(latent_size=8, mapping_layers=2).encoder(torch.randn(2, 3, 32, 32), 3, 1.0)
