"""The evaluation protocol with stand-in networks: FID on models whose outputs are known, PPL on
a linear decoder (closed form per pair and, for a scaled identity, the chi-square law), the
crops, the downsampling, the outlier rejection, and the real small ALAE models."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats as sps
from torch import nn

import alae_fast.metrics.networks as networks
from alae_fast.metrics import compute_metrics
from alae_fast.metrics import crop_images
from alae_fast.metrics import downsample_to_256
from alae_fast.metrics import filtered_mean
from alae_fast.metrics import generation_fid
from alae_fast.metrics import perceptual_path_distances
from alae_fast.metrics import perceptual_path_length
from alae_fast.metrics import reconstruction_fid
from alae_fast.metrics import to_uint8
from alae_fast.reference.model import MLPALAE
from alae_fast.reference.model import StyleALAE


# -- stand-ins ------------------------------------------------------------------------------------
def channel0_features(images: torch.Tensor) -> torch.Tensor:
    """Stand-in feature network: the first channel's uint8 pixels as float64."""
    assert images.dtype == torch.uint8 and images.shape[1] == 3
    return images[:, 0].reshape(images.shape[0], -1).double()


def squared_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Stand-in perceptual distance: sum of squared differences per pair (float64)."""
    assert a.shape == b.shape and a.shape[1] == 3
    return (a.double() - b.double()).pow(2).flatten(1).sum(1)


class StubModel(nn.Module):
    """The attributes the protocol uses; each call checks the model is in inference state."""

    def __init__(self, latent_size: int, num_layers: int = 3):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.latent_size = latent_size
        self.num_layers = num_layers
        self.dlatent_avg_beta: float | None = 0.9
        self.calls: list[tuple[str, torch.Tensor]] = []

    def check_state(self) -> None:
        assert not self.training and self.dlatent_avg_beta is None and not torch.is_grad_enabled()


class ShiftReconstructor(StubModel):
    """reconstruct(x) = x + shift (identity when shift is 0)."""

    def __init__(self, exact_inverse: bool = False):
        super().__init__(latent_size=4)
        self.exact_inverse = exact_inverse

    def reconstruct(self, x, lod):
        self.check_state()
        assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
        if not self.exact_inverse:
            return x
        # Undo x = u / 127.5 - 1, then aim at the middle of the uint8 bin of u under (y + 1) * 127.
        u = (x.double() + 1) * 127.5
        return ((u + 0.5) / 127 - 1).float()


class GaussianGenerator(StubModel):
    """generate(z): pixel u = clamp(round(128 + 20 z), 0, 255), output exactly in u's uint8 bin."""

    def __init__(self, side: int = 2):
        super().__init__(latent_size=side * side)
        self.side = side

    def generate(self, lod, blend, z=None, count=32, mixing=True, noise=True, return_styles=False, no_truncation=False):
        self.check_state()
        assert mixing is False and noise is True and no_truncation is True and blend == 1.0
        self.calls.append(("z", z.clone()))
        u = (128 + 20 * z).round().clamp(0, 255)
        return ((u + 0.5) / 127 - 1).view(-1, 1, self.side, self.side)


class LinearDecoder(StubModel):
    """mapping = identity in float64; decoder(styles) = scale * w reshaped to [3, side, side]."""

    def __init__(self, side: int, scale: float):
        super().__init__(latent_size=3 * side * side)
        self.side = side
        self.scale = scale

    def mapping(self, z):
        self.check_state()
        self.calls.append(("z", z.clone()))
        return z.double()

    def decoder(self, styles, lod, blend, noise):
        self.check_state()
        assert noise == "batch_constant" and blend == 1.0
        assert styles.shape[1:] == (self.num_layers, self.latent_size)
        assert torch.equal(styles, styles[:, :1].expand_as(styles))  # one w for every slot
        self.calls.append(("styles", styles[:, 0].clone()))
        return self.scale * styles[:, 0].reshape(-1, 3, self.side, self.side)


def uint8_batches(images: np.ndarray, sizes):
    """A real_batches callable yielding ``images`` in batches of the given sizes (cycled)."""

    def batches():
        start, i = 0, 0
        while start < len(images):
            size = sizes[i % len(sizes)]
            yield torch.from_numpy(images[start : start + size])
            start, i = start + size, i + 1

    return batches


def fd_by_eigenvalues(x: np.ndarray, y: np.ndarray) -> float:
    """FD of two float64 samples without sqrtm: tr sqrtm(S1 S2) = sum sqrt(eig(S1 S2))."""
    m1, m2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    eig = np.linalg.eigvals(s1 @ s2)
    return float((m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig.real.clip(0)).sum())


# -- uint8 conversion -------------------------------------------------------------------------------
def test_to_uint8_is_the_official_conversion():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.999, 1.0, 1.01, 3.0])
    # (x + 1) * 127: -127, 0, 63.5, 127, 253.873, 254, 255.27, 508 -> clip, truncate.
    assert to_uint8(x).tolist() == [0, 0, 63, 127, 253, 254, 255, 255]
    assert to_uint8(x).dtype == torch.uint8


# -- FID --------------------------------------------------------------------------------------------
def real_images(num: int, side: int, channels: int = 1, low: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(low, 256, size=(num, channels, side, side), dtype=np.uint8)


def test_identity_reconstruction_shows_the_127_quirk():
    # Pixels u in 1..255 come back as floor(u * 127 / 127.5) = u - 1 (u / 255 is in (0, 1]), so
    # the reconstructions are the reals shifted by -1 in each of the D = 16 features: FD = D.
    reals = real_images(300, side=4)
    model = ShiftReconstructor()
    got = reconstruction_fid(model, 0, uint8_batches(reals, [7, 50, 13]), num=256, features=channel0_features)
    cov_trace = np.trace(np.cov(reals[:256, 0].reshape(256, -1).astype(np.float64), rowvar=False))
    assert abs(got - 16.0) < 1e-9 * cov_trace


def test_exact_inverse_reconstruction_has_zero_fid():
    reals = real_images(256, side=4, low=0)
    model = ShiftReconstructor(exact_inverse=True)
    got = reconstruction_fid(model, 0, uint8_batches(reals, [256]), num=256, batch_size=32, features=channel0_features)
    cov_trace = np.trace(np.cov(reals[:, 0].reshape(256, -1).astype(np.float64), rowvar=False))
    assert abs(got) < 1e-9 * cov_trace


def test_generation_fid_matches_an_independent_computation_and_the_closed_form():
    num, side, dim = 16384, 2, 4
    # Reals: u = round(120 + 30 n) per pixel, independent; the generator: round(128 + 20 z).
    rng = np.random.default_rng(5)
    reals = np.clip(np.round(120 + 30 * rng.standard_normal((num + 100, 1, side, side))), 0, 255).astype(np.uint8)
    model = GaussianGenerator(side)
    got = generation_fid(
        model, 0, uint8_batches(reals, [1000, 333]), num=num, batch_size=512, features=channel0_features, seed=3
    )

    # Independently: the generated pixels from the z the model saw, the first num reals.
    z = torch.cat([t for _, t in model.calls]).double().numpy()
    assert z.shape == (num, dim)
    fake = np.clip(np.round(128 + 20 * z), 0, 255)
    real = reals[:num, 0].reshape(num, dim).astype(np.float64)
    assert got == pytest.approx(fd_by_eigenvalues(fake, real), rel=1e-8)

    # Closed form of the two (rounded) Gaussians: rounding adds 1/12 to each variance.
    v1, v2 = 20**2 + 1 / 12, 30**2 + 1 / 12
    expected = dim * ((128 - 120) ** 2 + (math.sqrt(v1) - math.sqrt(v2)) ** 2)
    # Sampling error: the mean term dominates, var ~ sum_i 4 delta^2 (v1 + v2) / num; the
    # covariance term adds about (2 (s1 - s2))^2 (s1^2 + s2^2) / (2 num) per dimension.
    var = dim * (4 * 8**2 * (v1 + v2) + 4 * 10**2 * (v1 + v2) / 2) / num
    assert abs(got - expected) < 5 * math.sqrt(var) + dim * dim * (v1 + v2) / num


def test_generation_uses_the_seeded_generator():
    model = GaussianGenerator(2)
    reals = real_images(40, side=2)
    generation_fid(model, 0, uint8_batches(reals, [40]), num=40, batch_size=16, features=channel0_features, seed=11)
    g = torch.Generator().manual_seed(11)
    expected = [torch.randn(n, 4, generator=g) for n in (16, 16, 8)]
    assert [t.shape[0] for _, t in model.calls] == [16, 16, 8]
    for (_, got), want in zip(model.calls, expected):
        assert torch.equal(got, want)


# -- PPL --------------------------------------------------------------------------------------------
def recorded(model: StubModel, kind: str) -> list[torch.Tensor]:
    return [t for k, t in model.calls if k == kind]


@pytest.mark.parametrize("sampling", ["full", "end"])
def test_ppl_pairs_match_the_linear_closed_form(sampling):
    # x = a w, mapping = identity: img(t + eps) - img(t) = a eps (w1 - w0), so each pair's
    # distance / eps^2 is a^2 ||crop(w1 - w0)||^2 whatever t.
    side, scale, num, eps = 8, 0.7, 50, 1e-4
    model = LinearDecoder(side, scale)
    d = perceptual_path_distances(
        model, 0, num=num, sampling=sampling, epsilon=eps, crop="face", batch_size=16, distance=squared_distance
    )
    assert d.shape == (num,) and d.dtype == np.float64
    zs = recorded(model, "z")
    z0, z1 = torch.cat(zs[0::2]).double().numpy(), torch.cat(zs[1::2]).double().numpy()
    diff = (z1 - z0).reshape(num, 3, side, side)[:, :, 3:7, 2:6]  # face crop of 8 px: c = 1
    expected = scale**2 * (diff**2).reshape(num, -1).sum(1)
    # float64 rounding of lerp: relative error ~ eps_64 * |w| / (eps |w1 - w0|), far below 1e-8.
    np.testing.assert_allclose(d, expected, rtol=1e-8)

    # The interpolants: we0 = lerp(w0, w1, t), we1 = lerp(w0, w1, t + eps), with one t per pair.
    styles = recorded(model, "styles")
    ts = []
    for b, s in enumerate(styles):
        n = s.shape[0] // 2
        w0, w1 = zs[2 * b].double(), zs[2 * b + 1].double()
        t = ((s[:n] - w0) / (w1 - w0)).numpy()
        t1 = ((s[n:] - w0) / (w1 - w0)).numpy()
        np.testing.assert_allclose(t, t[:, :1].repeat(t.shape[1], 1), atol=1e-9)
        np.testing.assert_allclose(t1 - t, eps, atol=1e-9)
        ts.append(t[:, 0])
    t_all = np.concatenate(ts)
    assert t_all.shape == (num,)
    if sampling == "end":
        assert np.all(t_all == 0)
    else:  # U(0, 1): std 0.29
        assert np.all((t_all >= 0) & (t_all <= 1)) and 0.2 < np.std(t_all) < 0.4


def chi2_trimmed_mean(k: int, lo_q: float = 0.01, hi_q: float = 0.99) -> float:
    """E[X | q_lo <= X <= q_hi] for X ~ chi2(k): int x f_k = k F_{k+2} on [q_lo, q_hi]."""
    a, b = sps.chi2.ppf(lo_q, k), sps.chi2.ppf(hi_q, k)
    return k * (sps.chi2.cdf(b, k + 2) - sps.chi2.cdf(a, k + 2)) / (hi_q - lo_q)


def test_ppl_of_a_scaled_identity_follows_the_chi_square_law():
    # d = a^2 ||w1 - w0||^2 with w1 - w0 ~ N(0, 2 I_k): d / (2 a^2) ~ chi2(k), k = 3 * 4 * 4.
    side, scale, num = 4, 0.5, 4096
    k = 3 * side * side
    model = LinearDecoder(side, scale)
    got = perceptual_path_length(
        model, 0, num=num, sampling="full", crop="none", batch_size=512, distance=squared_distance, seed=1
    )
    expected = 2 * scale**2 * chi2_trimmed_mean(k)
    # The trimmed mean's asymptotic variance is the winsorised variance / (1 - 2 * 0.01)^2 / num,
    # and the winsorised variance is below chi2's 2k.
    sigma = 2 * scale**2 * math.sqrt(2 * k / num) / 0.98
    assert abs(got - expected) < 5 * sigma


def test_ppl_is_the_filtered_mean_of_the_distances():
    model = LinearDecoder(4, 1.0)
    kw = dict(num=300, crop="none", batch_size=64, distance=squared_distance, seed=2)
    d = perceptual_path_distances(model, 0, **kw)
    ppl = perceptual_path_length(model, 0, **kw)
    s = np.sort(d)
    # 300 samples: the 1st percentile ("lower") is s[2], the 99th ("higher") s[297].
    assert ppl == pytest.approx(s[2:298].mean(), rel=1e-12)


def test_filtered_mean_on_known_arrays():
    rng = np.random.default_rng(0)
    # 1000 values 0..999: percentile index 9.99 -> lower 9; 989.01 -> higher 990.
    assert filtered_mean(rng.permutation(np.arange(1000.0))) == pytest.approx(sum(range(9, 991)) / 982, rel=1e-15)
    # Ten low and ten high outliers around 980 ones: the 10th lowest and 10th highest survive.
    d = np.concatenate([-1000.0 * np.arange(1, 11), np.ones(980), 1000.0 * np.arange(1, 11)])
    assert filtered_mean(rng.permutation(d)) == pytest.approx(980 / 982, rel=1e-12)
    # 100 values: index 0.99 -> lower 0 and 98.01 -> higher 99: nothing is dropped.
    assert filtered_mean(np.arange(100.0)) == pytest.approx(49.5, rel=1e-15)


def coordinate_images(side: int) -> torch.Tensor:
    r = torch.arange(side).view(side, 1)
    c = torch.arange(side).view(1, side)
    return (1000 * r + c).double().expand(2, 3, side, side)


def expect_window(out: torch.Tensor, rows: range, cols: range) -> None:
    assert out.shape == (2, 3, len(rows), len(cols))
    want = torch.tensor([[1000 * r + c for c in cols] for r in rows], dtype=torch.float64)
    assert torch.equal(out[1, 2], want)


@pytest.mark.parametrize(
    "side, crop, rows, cols",
    [
        (64, "face", range(24, 56), range(16, 48)),  # c = 8
        (16, "face", range(6, 14), range(4, 12)),  # c = 2
        # h = w = int(64 * 0.5 * 2 / 1.641) = int(39.0006) = 39, vc = 40, hc = 32
        (64, "celeba", range(40 - 19, 40 + 19), range(32 - 19, 32 + 19)),
        # h = w = int(1024 * 0.609385) = 624, vc = 640, hc = 512
        (1024, "celeba", range(640 - 312, 640 + 312), range(512 - 312, 512 + 312)),
        (16, "none", range(16), range(16)),
    ],
)
def test_crops(side, crop, rows, cols):
    expect_window(crop_images(coordinate_images(side), crop), rows, cols)


def test_downsampling():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 512, 512, generator=g, dtype=torch.float64)
    want = (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]) / 4
    torch.testing.assert_close(downsample_to_256(x), want, rtol=0, atol=1e-15)
    y = torch.randn(1, 1, 768, 768, generator=g, dtype=torch.float64)
    want3 = sum(y[..., i::3, j::3] for i in range(3) for j in range(3)) / 9
    torch.testing.assert_close(downsample_to_256(y), want3, rtol=0, atol=1e-15)
    small = torch.randn(1, 3, 300, 300, generator=g)
    assert downsample_to_256(small) is small  # factor 300 // 256 = 1: unchanged
    assert downsample_to_256(torch.zeros(1, 3, 515, 515)).shape == (1, 3, 257, 257)
    # The 1024 face crop (512 px) comes down to 256.
    assert downsample_to_256(crop_images(torch.zeros(1, 3, 1024, 1024), "face")).shape == (1, 3, 256, 256)


# -- the real small models ----------------------------------------------------------------------------
def projection_features(dim_in: int, dim_out: int = 8):
    w = torch.randn(dim_in, dim_out, generator=torch.Generator().manual_seed(7), dtype=torch.float64)

    def features(images: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.uint8 and images.shape[1] == 3
        return images.flatten(1).double() @ w

    return features


def mean_squared_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    assert a.shape[1] == 3
    return (a - b).pow(2).flatten(1).mean(1)


def mlp_model(beta):
    torch.manual_seed(0)
    return MLPALAE(latent_size=8, mapping_layers=2, channels=1, layer_count=4, dlatent_avg_beta=beta)


def style_model():
    torch.manual_seed(0)
    return StyleALAE(startf=4, maxf=8, layer_count=3, latent_size=8, mapping_layers=2, channels=3)


@pytest.mark.parametrize(
    "make, lod, side, channels",
    [(lambda: mlp_model(None), 3, 32, 1), (lambda: mlp_model(0.995), 3, 32, 1), (style_model, 2, 16, 3)],
    ids=["mlp", "mlp-beta", "style"],
)
def test_real_models(make, lod, side, channels):
    model = make()
    model.train()
    with torch.no_grad():  # a non-zero running average, so that a change to it would show
        model.dlatent_avg.buff.normal_()
    before = copy.deepcopy(model.state_dict())
    beta = model.dlatent_avg_beta
    reals = real_images(80, side=side, channels=channels, low=0)
    kw = dict(
        real_batches=uint8_batches(reals, [30]),
        num=64,
        batch_size=16,
        features=projection_features(3 * side * side),
        distance=mean_squared_distance,
        seed=4,
    )
    names = ["ppl_end", "fid", "rec_fid", "ppl_full"]
    first = compute_metrics(model, lod, names, **kw)
    assert list(first) == names
    assert all(math.isfinite(v) and v >= 0 for v in first.values()), first
    assert compute_metrics(model, lod, names, **kw) == first  # same seed, same numbers
    assert compute_metrics(model, lod, names, **{**kw, "seed": 5}) != first

    # Each metric equals its own function with the same seed.
    one = dict(num=64, batch_size=16, seed=4)
    feats = kw["features"]
    assert generation_fid(model, lod, kw["real_batches"], features=feats, **one) == first["fid"]
    assert reconstruction_fid(model, lod, kw["real_batches"], features=feats, **one) == first["rec_fid"]
    ppl = perceptual_path_length(model, lod, sampling="full", distance=mean_squared_distance, **one)
    assert ppl == first["ppl_full"]

    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert model.training and all(m.training for m in model.modules())
    assert model.dlatent_avg_beta == beta


# -- compute_metrics wiring and bad inputs ------------------------------------------------------------
def test_networks_are_built_lazily(monkeypatch):
    built = []

    def fake_inception(device):
        built.append(("inception", device))
        return channel0_features

    def fake_lpips(device):
        built.append(("lpips", device))
        return squared_distance

    monkeypatch.setattr(networks, "inception_features", fake_inception)
    monkeypatch.setattr(networks, "lpips_distance", fake_lpips)
    model = ShiftReconstructor()
    reals = uint8_batches(real_images(20, side=4), [20])
    out = compute_metrics(model, 0, ["rec_fid"], real_batches=reals, num=20, features=channel0_features)
    assert built == [] and set(out) == {"rec_fid"}
    out = compute_metrics(model, 0, "rec_fid", real_batches=reals, num=20)
    assert built == [("inception", torch.device("cpu"))]
    assert out["rec_fid"] == pytest.approx(16.0, rel=1e-6)

    lin = LinearDecoder(4, 1.0)
    compute_metrics(lin, 0, ["ppl_end"], num=8, distance=squared_distance, ppl_crop="none")
    assert len(built) == 1
    compute_metrics(lin, 0, ["ppl_end", "ppl_full"], num=8, ppl_crop="none", device="cpu")
    assert built[1:] == [("lpips", torch.device("cpu"))]


def test_real_statistics_are_computed_once():
    passes = []
    reals = real_images(20, side=2)

    def batches():
        passes.append(1)
        yield torch.from_numpy(reals)

    class Both(GaussianGenerator):
        def reconstruct(self, x, lod):
            return x

    compute_metrics(Both(2), 0, ["fid", "rec_fid"], real_batches=batches, num=20, features=channel0_features)
    assert len(passes) == 1


def test_progress_bar(capsys):
    model = LinearDecoder(4, 1.0)
    perceptual_path_length(model, 0, num=8, crop="none", distance=squared_distance, progress=True)
    assert "PPL" in capsys.readouterr().err


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda m, r: compute_metrics(m, 0, ["fid", "is"], real_batches=r, num=20, features=channel0_features),
            "names",
        ),
        (lambda m, r: compute_metrics(m, 0, ["fid"], real_batches=r, num=1, features=channel0_features), "num"),
        (lambda m, r: compute_metrics(m, 0, ["rec_fid"], num=20, features=channel0_features), "real_batches"),
        (
            lambda m, r: compute_metrics(m, 0, ["rec_fid"], real_batches=r, num=30, features=channel0_features),
            "only 20",
        ),
        (lambda m, r: generation_fid(m, 0, r, num=1, features=channel0_features), "num"),
        (
            lambda m, r: compute_metrics(m, 0, ["ppl_end"], num=20, distance=squared_distance, ppl_crop="eyes"),
            "ppl_crop",
        ),
        (lambda m, r: perceptual_path_length(m, 0, num=20, crop="eyes", distance=squared_distance), "crop"),
        (lambda m, r: perceptual_path_length(m, 0, num=20, sampling="middle", distance=squared_distance), "sampling"),
        (lambda m, r: perceptual_path_length(m, 0, num=1, distance=squared_distance), "num"),
    ],
)
def test_bad_inputs(call, match):
    model = ShiftReconstructor()
    with pytest.raises(ValueError, match=match) as info:
        call(model, uint8_batches(real_images(20, side=4), [8]))
    if match == "names":
        assert all(name in str(info.value) for name in ("fid", "rec_fid", "ppl_full", "ppl_end"))


def test_caller_rng_state_is_restored():
    model = style_model()
    state = torch.get_rng_state()
    perceptual_path_length(model, 2, num=4, batch_size=4, crop="none", distance=mean_squared_distance)
    assert torch.equal(torch.get_rng_state(), state)
