"""Building layers of the reference model against hand-computed values."""

import math

import pytest
import torch
from torch.nn import functional as F

from alae_fast.reference import layers as L


def test_linear_is_plain_affine_of_stored_weight():
    lin = L.Linear(5, 3, gain=1.0, lrmul=0.1)
    with torch.no_grad():
        lin.weight.copy_(torch.arange(15.0).view(3, 5) / 10)
        lin.bias.copy_(torch.tensor([1.0, -1.0, 0.5]))
    x = torch.tensor([[1.0, 0.0, 2.0, 0.0, -1.0]])
    expected = torch.tensor([[0.0 + 0.4 - 0.4 + 1.0, 0.5 + 1.4 - 0.9 - 1.0, 1.0 + 2.4 - 1.4 + 0.5]])
    torch.testing.assert_close(lin(x), expected)
    # equalized-LR coefficients: He constant times lrmul for the weight, lrmul for the bias
    assert lin.weight.lr_equalization_coef == pytest.approx(1.0 / math.sqrt(5) * 0.1)
    assert lin.bias.lr_equalization_coef == pytest.approx(0.1)


def test_equalized_init_scale():
    torch.manual_seed(0)
    conv = L.Conv2d(64, 32, 3, gain=math.sqrt(2))
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2) / math.sqrt(9 * 64), rel=0.05)
    assert conv.weight.lr_equalization_coef == pytest.approx(math.sqrt(2) / math.sqrt(9 * 64))
    assert torch.all(conv.bias == 0)


@pytest.mark.parametrize("copy_fn", ["deepcopy", "pickle"])
def test_copies_keep_the_learning_rate_coefficients(copy_fn):
    # Parameter copies drop Python attributes; a copied model must still train with the
    # equalized learning rates (the fast model of the tests is a deepcopy of a reference one).
    import copy
    import pickle

    seq = torch.nn.Sequential(L.Linear(5, 3, lrmul=0.1), L.Conv2d(4, 2, 3, bias=False))
    dup = copy.deepcopy(seq) if copy_fn == "deepcopy" else pickle.loads(pickle.dumps(seq))
    coefs = [getattr(p, "lr_equalization_coef", None) for p in dup.parameters()]
    assert coefs == [p.lr_equalization_coef for p in seq.parameters()]
    assert None not in coefs and coefs[1] == pytest.approx(0.1)


def test_fused_downsampling_conv_equals_conv_then_avgpool():
    torch.manual_seed(1)
    down = L.Conv2d(3, 4, 3, 2, 1, bias=False, transform_kernel=True)
    plain = L.Conv2d(3, 4, 3, 1, 1, bias=False)
    plain.weight.data.copy_(down.weight.data)
    x = torch.randn(2, 3, 8, 8)
    # 4x4 kernel, stride 2, padding 1 == 3x3 conv (padding 1) then 2x2 average pooling
    ref = F.avg_pool2d(F.conv2d(x, plain.weight, padding=1), 2)
    out = down(x)
    assert out.shape == (2, 4, 4, 4)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_fused_upsampling_conv_equals_nearest_then_conv():
    torch.manual_seed(2)
    up = L.ConvTranspose2d(3, 4, 3, 2, 1, bias=False, transform_kernel=True)
    x = torch.randn(2, 3, 5, 5)
    # transposed weight [in, out, 3, 3] -> the equivalent conv kernel [out, in] flipped
    w = up.weight.transpose(0, 1).flip(2, 3)
    ref = F.conv2d(F.pad(L.upscale2d(x), (1, 1, 1, 1)), w)
    out = up(x)
    assert out.shape == (2, 4, 10, 10)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_blur_kernel_and_border():
    blur = L.Blur(2)
    k = blur.weight[0, 0]
    torch.testing.assert_close(k, torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16.0)
    assert blur.weight.shape == (2, 1, 3, 3)
    x = torch.zeros(1, 2, 5, 5)
    x[0, 0, 2, 2] = 16.0
    x[0, 1, 0, 0] = 16.0
    y = blur(x)
    torch.testing.assert_close(y[0, 0, 1:4, 1:4], torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1.0]]))
    assert y[0, 0].sum().item() == pytest.approx(16.0)
    # zero padding: a corner impulse loses the mass that falls outside
    assert y[0, 1].sum().item() == pytest.approx(16.0 * 9 / 16)


def test_pixel_norm_unit_mean_square():
    x = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    y = L.pixel_norm(x, eps=0.0)
    expected = torch.tensor([[3 / math.sqrt(12.5), 4 / math.sqrt(12.5)], [1.0, 1.0]])
    torch.testing.assert_close(y, expected)


def test_style_mod_scale_and_shift():
    x = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    style = torch.tensor([[0.5, -1.0, 10.0, 20.0]])  # scales (1+0.5, 1-1), shifts (10, 20)
    y = L.style_mod(x, style)
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor([1.0 * 1.5 + 10, 2.0 * 0.0 + 20]))


def test_instance_stats_population_std():
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0]]).view(1, 1, 2, 2)
    m, s = L.instance_stats(x)
    assert m.item() == pytest.approx(3.0)
    assert s.item() == pytest.approx(math.sqrt((4 + 1 + 0 + 9) / 4))


def test_instance_norm_matches_formula():
    torch.manual_seed(3)
    x = torch.randn(2, 3, 4, 5)
    m = x.mean(dim=(2, 3), keepdim=True)
    v = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    torch.testing.assert_close(L.instance_norm(x, 1e-5), (x - m) / torch.sqrt(v + 1e-5))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_normalisation_statistics_are_computed_in_float32(dtype):
    # Computed in float32 and rounded once: each result is within half an ulp of the float64
    # truth of the rounded input (half ulp <= eps / 2 * |value|), plus float32's own error
    # (~1e-6 of the largest value for 256-element means; 1e-5 allows for it). Statistics in
    # bfloat16 arithmetic miss this bound: instance_norm by 5x (the mean, rounded before the
    # subtraction, biases every output of a channel with a large mean).
    g = torch.Generator().manual_seed(11)
    x = (torch.randn(4, 8, 16, 16, generator=g, dtype=torch.float64) * 0.3 + 3.0).to(dtype)
    x64 = x.double()

    def check(ours, truth):
        assert ours.dtype == dtype
        bound = torch.finfo(dtype).eps / 2 * truth.abs() + 1e-5 * truth.abs().max()
        assert ((ours.double() - truth).abs() <= bound).all(), (ours.double() - truth).abs().max().item()

    check(L.instance_norm(x, 1e-8), L.instance_norm(x64, 1e-8))
    for ours, truth in zip(L.instance_stats(x), L.instance_stats(x64), strict=True):
        check(ours, truth)
    rows = x.flatten(1)
    check(L.pixel_norm(rows), L.pixel_norm(rows.double()))


def test_noise_modes():
    torch.manual_seed(4)
    x = torch.zeros(3, 2, 4, 4)
    w = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    y = L.add_noise(x, w, True, 0)
    assert not torch.equal(y[0, 0], y[1, 0])  # per-sample noise
    assert torch.all(y[:, 1] == 0)  # zero weight -> no noise
    y = L.add_noise(x, w, "batch_constant", 0)
    assert torch.equal(y[0, 0], y[2, 0])  # shared across the batch
    y = L.add_noise(x, w, False, 3)  # deterministic stand-in, s = 2
    expected = 2 * math.exp(0) / math.sqrt(2 * math.pi) * 0.8
    assert torch.allclose(y, torch.full_like(y, expected))


def test_resampling():
    x = torch.arange(4.0).view(1, 1, 2, 2)
    up = L.upscale2d(x)
    torch.testing.assert_close(up[0, 0], torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3.0]]))
    torch.testing.assert_close(L.downscale2d(up), x)
