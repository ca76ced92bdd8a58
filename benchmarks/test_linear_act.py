import pytest
import torch

from alae_fast.ops import linear_act

from .bench_support import DEVICE, nbytes, parametrize_impls, run_case

# (batch, in, out): F of the small StyleALAE, F of the 256-latent models, the MLP ALAE's E/G.
SHAPES = [(4, 32, 32), (128, 256, 256), (128, 1024, 1024)]


@parametrize_impls(("ref", "triton", "cpu"))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
def test_linear_act(benchmark, impl, shape, mode):
    batch, n_in, n_out = shape
    grad = mode != "forward"
    x = torch.randn(batch, n_in, device=DEVICE, requires_grad=grad)
    weight = (torch.randn(n_out, n_in, device=DEVICE) / n_in ** 0.5).requires_grad_(grad)
    bias = torch.randn(n_out, device=DEVICE, requires_grad=grad)
    if mode == "forward":
        fn = lambda: linear_act(x, weight, bias, impl=impl)  # noqa: E731
    else:
        fn = lambda: linear_act(x, weight, bias, impl=impl).sum().backward()  # noqa: E731
    run_case(benchmark, op="linear_act", mode=mode, shape=str(list(shape)), impl=impl, fn=fn,
             nbytes=nbytes(x, weight) + batch * n_out * 4)
