from alae_fast.ops import r1_penalty

from .bench_support import DEVICE
from .bench_support import nbytes
from .bench_support import parametrize_cases
from .bench_support import randn
from .bench_support import run_op_case

# R1 gradients: MNIST (batch 128, 1x32x32), StyleALAE at 64x64 and 256x256 (batch 32 / 8);
# on GPU also 1024x1024.
SHAPES = [(128, 1, 32, 32), (32, 3, 64, 64), (8, 3, 256, 256)]
if DEVICE == "cuda":
    SHAPES += [(32, 3, 256, 256), (4, 3, 1024, 1024)]


@parametrize_cases(SHAPES)
def test_r1_penalty(benchmark, impl, shape, mode):
    g = randn(shape, mode)
    # Forward reads g; backward reads g and writes its gradient.
    moved = (nbytes(g), 3 * nbytes(g))
    run_op_case(benchmark, "r1_penalty", mode, shape, impl, lambda: r1_penalty(g, 10.0, impl=impl), moved)
