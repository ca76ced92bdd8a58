import pytest
import torch

from alae_fast.ops import r1_penalty

from .bench_support import DEVICE, nbytes, parametrize_impls, run_case

# R1 gradients: MNIST (batch 128, 1x32x32), StyleALAE at 64x64 and 256x256 (batch 32 / 8);
# on GPU also 1024x1024.
SHAPES = [(128, 1, 32, 32), (32, 3, 64, 64), (8, 3, 256, 256)]
if DEVICE == "cuda":
    SHAPES += [(32, 3, 256, 256), (4, 3, 1024, 1024)]


@parametrize_impls()
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
def test_r1_penalty(benchmark, impl, shape, mode):
    g = torch.randn(shape, device=DEVICE, requires_grad=mode != "forward")
    if mode == "forward":
        fn, moved = (lambda: r1_penalty(g, 10.0, impl=impl)), nbytes(g)
    else:
        # Forward reads g; backward reads g and writes its gradient.
        fn, moved = (lambda: r1_penalty(g, 10.0, impl=impl).sum().backward()), 3 * nbytes(g)
    run_case(benchmark, op="r1_penalty", mode=mode, shape=str(list(shape)), impl=impl, fn=fn,
             nbytes=moved)
