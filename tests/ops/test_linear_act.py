import math

import pytest
import support
import torch
from support import FP32_GRAD
from support import FP32_OUT
from support import assert_compiled_matches_ref
from support import assert_low_precision_op_close
from support import assert_r1_chain_close
from support import r1_chain
from support import randn as _randn
from support import require

from alae_fast.ops import ImplUnavailableError
from alae_fast.ops import linear_act
from alae_fast.ops import linear_act_ref

OP = torch.ops.alae_fast.linear_act.default

# linear_act has C++ CPU and Triton kernels only (on CUDA the GPU path is Triton).
IMPL_DEVICES = [(i, d) for i, d in support.IMPL_DEVICES if i != "cuda"]
impl_device = pytest.mark.parametrize("impl,device", IMPL_DEVICES, ids=[f"{i}-{d}" for i, d in IMPL_DEVICES])

# (x shape, OUT): [B, IN] and the latents' [N, 1, L], odd sizes.
SHAPES = [((1, 1), 1), ((5, 17), 3), ((1, 33), 17), ((5, 3), 1), ((5, 1, 9), 4), ((1, 1, 17), 3)]
# (alpha, gain): the mapping layers' lrelu, with the He gain, identity and ReLU.
ACTIVATIONS = [(0.2, 1.0), (0.2, math.sqrt(2.0)), (1.0, 1.0), (0.0, 2.0)]


def _ids(case):
    shape, out = case
    return "x".join(map(str, shape)) + f"-{out}"


def _inputs(shape, out, device, dtype=torch.float32, bias=True):
    x = _randn(shape, device, dtype).requires_grad_()
    weight = _randn((out, shape[-1]), device, dtype, seed=1) / math.sqrt(shape[-1])
    b = _randn((out,), device, dtype, seed=2).requires_grad_() if bias else None
    return x, weight.requires_grad_(), b


def _check_parity(x, weight, b, impl, alpha=0.2, gain=1.0):
    ours = linear_act(x, weight, b, alpha=alpha, gain=gain, impl=impl)
    ref = linear_act_ref(x, weight, b, alpha=alpha, gain=gain)
    assert ours.shape == ref.shape and ours.dtype == x.dtype
    torch.testing.assert_close(ours, ref, **FP32_OUT)
    upstream = _randn(ours.shape, x.device, x.dtype, seed=7)
    inputs = [t for t in (x, weight, b) if t is not None]
    for g, rg in zip(torch.autograd.grad(ours, inputs, upstream), torch.autograd.grad(ref, inputs, upstream)):
        assert g.shape == rg.shape
        torch.testing.assert_close(g, rg, **FP32_GRAD)


# Every shape with the layers' activation, every activation on a 2-D and a 3-D input.
CASES = [(case, ACTIVATIONS[1]) for case in SHAPES] + [
    (case, act) for case in [SHAPES[1], SHAPES[4]] for act in ACTIVATIONS if act != ACTIVATIONS[1]
]


@impl_device
@pytest.mark.parametrize("case,activation", CASES, ids=[f"{_ids(c)}-{a:g}-{g:.3g}" for c, (a, g) in CASES])
def test_matches_reference_values_and_gradients(impl, device, case, activation):
    alpha, gain = activation
    require(impl, device)
    _check_parity(*_inputs(*case, device), impl, alpha=alpha, gain=gain)


@impl_device
@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_without_bias(impl, device, alpha):
    require(impl, device)
    _check_parity(*_inputs((5, 17), 3, device, bias=False), impl, alpha=alpha, gain=2.0)


@impl_device
def test_larger_than_one_tile(impl, device):
    require(impl, device)
    # The mapping network's 512-wide layers, shrunk: several tiles along every GEMM dim.
    _check_parity(*_inputs((67, 130), 70, device), impl, alpha=0.2, gain=math.sqrt(2.0))


@impl_device
@pytest.mark.parametrize("case", [((1, 3), 1), ((1, 1, 3), 1), ((5, 3), 1)], ids=_ids)
def test_expanded_upstream_gradient(impl, device, case):
    """loss = y.sum() (a critic's logit of batch 1): the upstream gradient is an expanded
    scalar, every stride 0."""
    require(impl, device)
    inputs = _inputs(*case, device)
    grads = torch.autograd.grad(linear_act(*inputs, impl=impl).sum(), inputs)
    for g, rg in zip(grads, torch.autograd.grad(linear_act_ref(*inputs).sum(), inputs)):
        torch.testing.assert_close(g, rg, **FP32_GRAD)


@impl_device
def test_known_values(impl, device):
    require(impl, device)
    x = torch.tensor([[1.0, 2.0]], device=device, requires_grad=True)
    weight = torch.tensor([[1.0, -1.0], [0.5, 0.25], [-2.0, 0.0]], device=device, requires_grad=True)
    b = torch.tensor([0.5, 0.0, 1.0], device=device, requires_grad=True)
    y = linear_act(x, weight, b, alpha=0.25, gain=2.0, impl=impl)
    # x @ W.T + b = [-0.5, 1, -1]; negatives times alpha * gain = 0.5, positives times 2.
    assert y.tolist() == [[-0.25, 2.0, -0.5]]
    gx, gw, gb = torch.autograd.grad(y, (x, weight, b), torch.ones_like(y))
    assert gb.tolist() == [0.5, 2.0, 0.5]
    assert gx.tolist() == [[0.5 * 1 + 2 * 0.5 + 0.5 * -2, 0.5 * -1 + 2 * 0.25]]
    assert gw.tolist() == [[0.5, 1.0], [2.0, 4.0], [0.5, 1.0]]


@impl_device
def test_non_contiguous_inputs(impl, device):
    require(impl, device)
    x = _randn((17, 5), device).t().requires_grad_()  # [5, 17] transposed view
    weight = _randn((17, 3), device, seed=1).t().requires_grad_()  # [3, 17]
    b = _randn((3, 2), device, seed=2)[:, 1].requires_grad_()
    assert not (x.is_contiguous() or weight.is_contiguous() or b.is_contiguous())
    _check_parity(x, weight, b, impl, gain=math.sqrt(2.0))
    # A [N, 1, L] slice of a wider latent tensor.
    w_lat = _randn((5, 2, 9), device, seed=3)[:, 1:].requires_grad_()
    _check_parity(w_lat, *_inputs((5, 9), 4, device)[1:], impl)


@impl_device
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_within_twice_pytorch_error(impl, device, dtype):
    require(impl, device)
    gain = math.sqrt(2.0)
    assert_low_precision_op_close(
        lambda *xwb: linear_act(*xwb, alpha=0.2, gain=gain, impl=impl),
        lambda *xwb: linear_act_ref(*xwb, alpha=0.2, gain=gain),
        _inputs((9, 33), 17, device, dtype),
        _randn((9, 17), device, dtype, seed=7),
    )


@impl_device
def test_gradcheck_and_gradgradcheck_float64_full_jacobian(impl, device):
    require(impl, device)
    inputs = _inputs((2, 3), 2, device, torch.float64)
    fn = lambda x, w, b: linear_act(x, w, b, alpha=0.2, gain=1.5, impl=impl)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


@impl_device
def test_gradcheck_and_gradgradcheck_float64_3d(impl, device):
    require(impl, device)
    inputs = _inputs((5, 1, 9), 7, device, torch.float64)
    for alpha in (0.2, 1.0):  # 1.0: the identity activation's own backward path
        fn = lambda x, w, b, alpha=alpha: linear_act(x, w, b, alpha=alpha, gain=1.5, impl=impl)  # noqa: E731
        assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, inputs, fast_mode=True)


@impl_device
def test_r1_chain_matches_reference(impl, device):
    """The discriminator on the R1 path: linear_act layers, gradient w.r.t. the input with
    create_graph, penalty backward to every weight."""
    require(impl, device)

    def critic(fn):
        def d(x, w1, b1, w2, b2, w3):
            h = fn(x, w1, b1, alpha=0.2, gain=math.sqrt(2.0))
            h = fn(torch.tanh(h), w2, b2, alpha=0.2, gain=math.sqrt(2.0))
            return fn(torch.tanh(h), w3, None, alpha=1.0, gain=1.0)

        return d

    assert_r1_chain_close(
        *r1_chain(
            (critic(lambda *a, **k: linear_act(*a, impl=impl, **k)), critic(linear_act_ref)),
            lambda: _randn((5, 9), device),
            [(6, 9), (6,), (6, 6), (6,), (1, 6)],
            device,
        )
    )


@impl_device
@pytest.mark.parametrize("case", [((1, 3), 1), ((5, 17), 3), ((5, 1, 9), 4)], ids=_ids)
def test_opcheck(impl, device, case):
    require(impl, device)
    x, weight, b = _inputs(*case, device)
    torch.library.opcheck(OP, (x, weight, b, 0.2, math.sqrt(2.0), impl))
    torch.library.opcheck(OP, (x, weight, None, 1.0, 1.0, impl))


@impl_device
def test_torch_compile_fullgraph(impl, device):
    require(impl, device)
    x, weight, b = _inputs((5, 1, 17), 3, device)
    upstream = _randn((5, 1, 3), device, seed=7)
    assert_compiled_matches_ref(
        lambda x, w, b: linear_act(x, w, b, gain=math.sqrt(2.0), impl=impl) * upstream,
        lambda x, w, b: linear_act_ref(x, w, b, gain=math.sqrt(2.0)) * upstream,
        (x, weight, b),
    )


def test_bad_inputs_raise_clear_errors():
    # Every check runs before the impl is resolved, so one run covers all impls.
    x, w, b = torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(3)
    with pytest.raises(ValueError, match=r"linear_act: x must have at least 1 dims \[\.\.\., IN\], got shape \(\)"):
        linear_act(torch.tensor(1.0), w, b)
    with pytest.raises(ValueError, match=r"linear_act: weight must be 2-D \[OUT, IN=4\], got shape \(4,\)"):
        linear_act(x, torch.zeros(4), b)
    with pytest.raises(
        ValueError,
        match=r"linear_act: weight must have shape \[OUT, IN\] with "
        r"IN = 4 \(x's last dim\), got \(3, 5\)",
    ):
        linear_act(x, torch.zeros(3, 5), b)
    with pytest.raises(ValueError, match=r"linear_act: bias must have shape \[OUT\] = \[3\], got \(4,\)"):
        linear_act(x, w, torch.zeros(4))
    with pytest.raises(ValueError, match=r"linear_act: bias must be 1-D \[OUT\] = \[3\], got shape \(1, 3\)"):
        linear_act(x, w, torch.zeros(1, 3))
    with pytest.raises(TypeError, match=r"linear_act: x is torch.float32 but weight is torch.float64"):
        linear_act(x, w.double(), b)
    with pytest.raises(TypeError, match=r"linear_act: x is torch.float32 but bias is torch.bfloat16"):
        linear_act(x, w, b.bfloat16())
    with pytest.raises(TypeError, match=r"linear_act: x must be a floating-point tensor.*torch.int64"):
        linear_act(x.long(), w, b)
    with pytest.raises(ValueError, match=r"linear_act: x is on cpu but weight is on meta"):
        linear_act(x, w.to("meta"), b)
    with pytest.raises(ValueError, match=r"linear_act: x is on cpu but bias is on meta"):
        linear_act(x, w, b.to("meta"))
    with pytest.raises(ValueError, match=r"linear_act: alpha must be >= 0.*got -1.0"):
        linear_act(x, w, b, alpha=-1.0)
    with pytest.raises(ValueError, match=r"linear_act: gain must be > 0, got 0.0"):
        linear_act(x, w, b, gain=0.0)
    with pytest.raises(TypeError, match=r"linear_act: alpha must be a Python float, got NoneType"):
        linear_act(x, w, b, alpha=None)
    with pytest.raises(TypeError, match=r"linear_act: weight must be a torch.Tensor, got list"):
        linear_act(x, [[0.0] * 4] * 3, b)


def test_there_is_no_cuda_kernel():
    with pytest.raises(
        ImplUnavailableError,
        match=r"linear_act: impl='cuda' was requested, but "
        r"this op has only \('ref', 'triton', 'cpu'\)",
    ):
        linear_act(torch.zeros(2, 4), torch.zeros(3, 4), impl="cuda")


def _set_tf32_new_matmul():
    torch.backends.cuda.matmul.fp32_precision = "tf32"


def _set_tf32_new_global():
    torch.backends.fp32_precision = "tf32"


def _set_tf32_legacy():
    torch.backends.cuda.matmul.allow_tf32 = True


def _set_ieee_matmul_over_tf32_global():
    torch.backends.fp32_precision = "tf32"
    torch.backends.cuda.matmul.fp32_precision = "ieee"


def _set_high_matmul_precision():
    torch.set_float32_matmul_precision("high")


# (how TF32 is set, the float32 tl.dot precision torch's cuBLAS setting implies)
TF32_SETTINGS = [
    (_set_tf32_new_matmul, "tf32"),
    (_set_tf32_new_global, "tf32"),
    (_set_tf32_legacy, "tf32"),
    (_set_high_matmul_precision, "tf32"),
    (_set_ieee_matmul_over_tf32_global, "ieee"),
    (lambda: None, "ieee"),
]


@pytest.mark.parametrize(
    "setting,expected",
    TF32_SETTINGS,
    ids=["new-matmul", "new-global", "legacy", "matmul-precision-high", "new-matmul-ieee-over-global-tf32", "default"],
)
def test_input_precision_follows_either_tf32_api(setting, expected):
    # Reading torch.backends.cuda.matmul.allow_tf32 raises once the new API set TF32: the
    # helper must read a setting made through either API (CPU: only the flag is read).
    from alae_fast.ops._triton.linear_act import input_precision

    matmul = torch.backends.cuda.matmul
    saved = (torch.backends.fp32_precision, matmul.fp32_precision)
    try:
        matmul.fp32_precision = "none"
        setting()
        assert input_precision(torch.float32) == expected
        for dtype in (torch.float16, torch.bfloat16, torch.float64):
            assert input_precision(dtype) == "ieee"
    finally:
        torch.backends.fp32_precision, matmul.fp32_precision = saved
