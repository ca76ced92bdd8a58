import pytest
import torch

from alae_fast.ops import bias_act

from .bench_support import DEVICE, nbytes, parametrize_impls, run_case

# Encoder/FromRGB activations of the small StyleALAE (batch 4) and of a 64x64 model (batch 32).
SHAPES = [(4, 16, 32, 32), (4, 64, 8, 8), (32, 64, 64, 64)]
if DEVICE == "cuda":
    SHAPES += [(32, 128, 128, 128)]


@parametrize_impls()
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
def test_bias_act(benchmark, impl, shape, mode):
    x = torch.randn(shape, device=DEVICE, requires_grad=mode != "forward")
    b = torch.randn(shape[1], device=DEVICE, requires_grad=mode != "forward")
    if mode == "forward":
        fn, moved = (lambda: bias_act(x, b, impl=impl)), 2 * nbytes(x)
    else:
        # Forward reads x, writes y; backward reads the gradient and y, writes grad x.
        fn, moved = (lambda: bias_act(x, b, impl=impl).sum().backward()), 5 * nbytes(x)
    run_case(benchmark, op="bias_act", mode=mode, shape=str(list(shape)), impl=impl, fn=fn,
             nbytes=moved)
