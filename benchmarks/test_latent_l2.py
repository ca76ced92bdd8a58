import pytest
import torch

from alae_fast.ops import latent_l2

from .bench_support import DEVICE, nbytes, parametrize_impls, run_case

# w of the MNIST MLP (batch 128, latent 50), of StyleALAE (batch 32 / 256, latent 512) and a
# large synthetic case.
SHAPES = [(128, 50), (32, 1, 512), (256, 1, 512), (4096, 1, 512)]


@parametrize_impls()
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
def test_latent_l2(benchmark, impl, shape, mode):
    a = torch.randn(shape, device=DEVICE, requires_grad=mode != "forward")
    b = torch.randn(shape, device=DEVICE)
    if mode == "forward":
        fn, moved = (lambda: latent_l2(a, b, impl=impl)), nbytes(a, b)
    else:
        # Reads a, b twice (forward, backward) and writes the two gradients.
        fn, moved = (lambda: latent_l2(a, b, impl=impl).backward()), 3 * nbytes(a, b)
    run_case(benchmark, op="latent_l2", mode=mode, shape=str(list(shape)), impl=impl, fn=fn,
             nbytes=moved)
