import pytest
import torch

from alae_fast.ops import adain

from .bench_support import DEVICE, nbytes, parametrize_impls, run_case

SHAPES = [(4, 16, 32, 32), (4, 64, 8, 8), (32, 64, 64, 64)]
if DEVICE == "cuda":
    SHAPES += [(32, 128, 128, 128)]


@parametrize_impls()
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
def test_adain(benchmark, impl, shape, mode):
    n, c, h, w = shape
    grad = mode != "forward"
    x = torch.randn(shape, device=DEVICE, requires_grad=grad)
    style = torch.randn(n, 2 * c, device=DEVICE, requires_grad=grad)
    noise = torch.randn(n, 1, h, w, device=DEVICE)
    noise_weight = torch.randn(c, device=DEVICE, requires_grad=grad)
    bias = torch.randn(c, device=DEVICE, requires_grad=grad)

    def forward():
        return adain(x, style, noise=noise, noise_weight=noise_weight, bias=bias, impl=impl)

    if mode == "forward":
        fn, moved = forward, 2 * nbytes(x)
    else:
        fn, moved = (lambda: forward().sum().backward()), 5 * nbytes(x)
    run_case(benchmark, op="adain", mode=mode, shape=str(list(shape)), impl=impl, fn=fn,
             nbytes=moved)
