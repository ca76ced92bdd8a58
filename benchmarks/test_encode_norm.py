import pytest
import torch

from alae_fast.ops import encode_norm

from .bench_support import DEVICE, nbytes, parametrize_impls, run_case

SHAPES = [(4, 16, 32, 32), (4, 64, 8, 8), (32, 64, 64, 64)]
if DEVICE == "cuda":
    SHAPES += [(32, 128, 128, 128)]


@parametrize_impls()
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
def test_encode_norm(benchmark, impl, shape, mode):
    x = torch.randn(shape, device=DEVICE, requires_grad=mode != "forward")
    bias = torch.randn(shape[1], device=DEVICE, requires_grad=mode != "forward")
    if mode == "forward":
        fn, moved = (lambda: encode_norm(x, bias, impl=impl)), 2 * nbytes(x)
    else:
        def fn():
            y, style = encode_norm(x, bias, impl=impl)
            (y.sum() + style.sum()).backward()
        # Forward reads x, writes y; backward reads x and grad y, writes grad x.
        moved = 5 * nbytes(x)
    run_case(benchmark, op="encode_norm", mode=mode, shape=str(list(shape)), impl=impl, fn=fn,
             nbytes=moved)
