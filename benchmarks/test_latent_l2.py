from alae_fast.ops import latent_l2

from .bench_support import nbytes
from .bench_support import parametrize_cases
from .bench_support import randn
from .bench_support import run_op_case

# w of the MNIST MLP (batch 128, latent 50), of StyleALAE (batch 32 / 256, latent 512) and a
# large synthetic case.
SHAPES = [(128, 50), (32, 1, 512), (256, 1, 512), (4096, 1, 512)]


@parametrize_cases(SHAPES)
def test_latent_l2(benchmark, impl, shape, mode):
    a, b = randn(shape, mode), randn(shape, "forward")
    # Backward: reads a, b twice (forward, backward) and writes the two gradients.
    moved = (nbytes(a, b), 3 * nbytes(a, b))
    run_op_case(benchmark, "latent_l2", mode, shape, impl, lambda: latent_l2(a, b, impl=impl), moved)
