import pytest
import torch

from alae_fast.ops import blur

from .bench_support import DEVICE, nbytes, parametrize_impls, run_case

# The blur of the encoder (before each down-sampling conv) and of the generator (after each
# up-sampling conv): small StyleALAE (batch 4) and a 64x64 model (batch 32).
SHAPES = [(4, 16, 32, 32), (4, 64, 8, 8), (32, 64, 64, 64)]
if DEVICE == "cuda":
    SHAPES += [(32, 128, 128, 128)]


@parametrize_impls()
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
def test_blur(benchmark, impl, shape, mode):
    x = torch.randn(shape, device=DEVICE, requires_grad=mode != "forward")
    if mode == "forward":
        fn, moved = (lambda: blur(x, impl=impl)), 2 * nbytes(x)
    else:
        fn, moved = (lambda: blur(x, impl=impl).sum().backward()), 4 * nbytes(x)
    run_case(benchmark, op="blur", mode=mode, shape=str(list(shape)), impl=impl, fn=fn,
             nbytes=moved)
