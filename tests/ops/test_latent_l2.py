import pytest
import torch
from support import FP32_GRAD
from support import FP32_OUT
from support import assert_compiled_matches_ref
from support import assert_low_precision_op_close
from support import impl_device
from support import op_overloads
from support import randn as _randn
from support import require

from alae_fast.ops import latent_l2
from alae_fast.ops import latent_l2_ref

OP, BACKWARD_OP = op_overloads("latent_l2")

# ALAE's latents: [N, L] and [N, 1, L] (w broadcast over one layer), plus long flat inputs that
# span several blocks of the kernels.
SHAPES = [(n, k) for n in (1, 7) for k in (1, 7)] + [(n, 1, k) for n in (1, 7) for k in (1, 7)] + [(1025,), (65537,)]


def _check_parity(a, b, impl):
    ours, ref = latent_l2(a, b, impl=impl), latent_l2_ref(a, b)
    assert ours.shape == () and ours.dtype == a.dtype
    torch.testing.assert_close(ours, ref, **FP32_OUT)
    for g, rg in zip(torch.autograd.grad(ours, (a, b)), torch.autograd.grad(ref, (a, b))):
        assert g.shape == rg.shape
        torch.testing.assert_close(g, rg, **FP32_GRAD)


@impl_device
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference_values_and_gradients(impl, device, shape):
    require(impl, device)
    a = _randn(shape, device).requires_grad_()
    b = _randn(shape, device, seed=1).requires_grad_()
    _check_parity(a, b, impl)


@impl_device
def test_known_value_and_upstream_gradient(impl, device):
    require(impl, device)
    a = torch.full((2, 1, 3), 3.0, device=device, requires_grad=True)
    b = torch.ones(2, 1, 3, device=device, requires_grad=True)
    loss = latent_l2(a, b, impl=impl)
    assert loss.item() == 4.0  # (3 - 1)^2, exact in float32
    ga, gb = torch.autograd.grad(loss, (a, b), torch.tensor(-1.5, device=device))
    # d/da mean((a - b)^2) = 2 (a - b) / n = 4 / 6, times the upstream -1.5: -1.
    torch.testing.assert_close(ga, torch.full_like(a, -1.0), **FP32_GRAD)
    torch.testing.assert_close(gb, torch.full_like(b, 1.0), **FP32_GRAD)


@impl_device
@pytest.mark.parametrize("layout", ["transposed", "sliced", "transposed-and-sliced", "broadcast-target"])
def test_non_contiguous_inputs(impl, device, layout):
    require(impl, device)
    n, k = 7, 33
    transposed = lambda seed: _randn((k, n), device, seed=seed).t()  # noqa: E731
    sliced = lambda seed: _randn((n, 2 * k), device, seed=seed)[:, 1::2]  # noqa: E731
    if layout == "transposed":
        a, b = transposed(0), transposed(1)
    elif layout == "sliced":
        a, b = sliced(0), sliced(1)
    elif layout == "transposed-and-sliced":
        a, b = transposed(0), sliced(1)
    else:  # [N, 1, L] against one w expanded over the batch (stride 0)
        a = _randn((n, 1, k), device)
        b = _randn((1, 1, k), device, seed=1).expand(n, 1, k)
    a.requires_grad_()
    b.requires_grad_()
    assert not a.is_contiguous() or not b.is_contiguous()
    _check_parity(a, b, impl)


@impl_device
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(33, 31), (1025,)], ids=lambda s: "x".join(map(str, s)))
def test_low_precision_within_twice_pytorch_error(impl, device, dtype, shape):
    require(impl, device)
    a = _randn(shape, device, dtype).requires_grad_()
    b = _randn(shape, device, dtype, seed=1).requires_grad_()
    assert_low_precision_op_close(lambda a, b: latent_l2(a, b, impl=impl), latent_l2_ref, (a, b))


@impl_device
@pytest.mark.parametrize("shape", [(4, 5), (3, 1, 5)], ids=lambda s: "x".join(map(str, s)))
def test_gradcheck_and_gradgradcheck_float64(impl, device, shape):
    require(impl, device)
    a = _randn(shape, device, torch.float64).requires_grad_()
    b = _randn(shape, device, torch.float64, seed=1).requires_grad_()
    fn = lambda x, y: latent_l2(x, y, impl=impl)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (a, b))
    assert torch.autograd.gradgradcheck(fn, (a, b))


@impl_device
@pytest.mark.parametrize("sample", ["1x1", "7x1x7", "1025", "transposed"])
def test_opcheck(impl, device, sample):
    require(impl, device)
    if sample == "transposed":
        a, b = _randn((7, 5), device).t(), _randn((7, 5), device, seed=1).t()
    else:
        shape = tuple(int(s) for s in sample.split("x"))
        a, b = _randn(shape, device), _randn(shape, device, seed=1)
    a.requires_grad_()
    b.requires_grad_()
    torch.library.opcheck(OP, (a, b, impl))
    torch.library.opcheck(BACKWARD_OP, (torch.tensor(0.7, device=device), a, b, impl))


@impl_device
def test_torch_compile_fullgraph(impl, device):
    require(impl, device)
    a = _randn((7, 1, 7), device).requires_grad_()
    b = _randn((7, 1, 7), device, seed=1).requires_grad_()
    assert_compiled_matches_ref(
        lambda x, y: latent_l2(x, y, impl=impl) * 2.0, lambda x, y: latent_l2_ref(x, y) * 2.0, (a, b)
    )


def test_bad_inputs_raise_clear_errors():
    # Every check runs before the impl is resolved, so one run covers all impls.
    ok = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"latent_l2: a and b must have the same shape, got \(2, 3\) and \(3, 2\)"):
        latent_l2(ok, torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3\) and \(2, 1, 3\)"):
        latent_l2(ok, torch.zeros(2, 1, 3))
    with pytest.raises(TypeError, match=r"latent_l2: a is torch.float32 but b is torch.float64"):
        latent_l2(ok, torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"a is torch.bfloat16 but b is torch.float16"):
        latent_l2(ok.bfloat16(), ok.half())
    with pytest.raises(TypeError, match=r"latent_l2: a must be a floating-point tensor.*torch.int32"):
        latent_l2(torch.zeros(2, 3, dtype=torch.int32), ok)
    with pytest.raises(TypeError, match=r"b must be a floating-point tensor.*torch.int64"):
        latent_l2(ok, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"latent_l2: a is on cpu but b is on meta"):
        latent_l2(ok, torch.zeros(2, 3, device="meta"))
    with pytest.raises(ValueError, match=r"latent_l2: a must not be empty, got shape \(0, 3\)"):
        latent_l2(torch.zeros(0, 3), torch.zeros(0, 3))
    with pytest.raises(TypeError, match=r"latent_l2: b must be a torch.Tensor, got float"):
        latent_l2(ok, 1.0)
    with pytest.raises(TypeError, match=r"latent_l2: a must be a torch.Tensor, got list"):
        latent_l2([[0.0] * 3] * 2, ok)
