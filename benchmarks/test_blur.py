from alae_fast.ops import blur

from .bench_support import ACTIVATION_SHAPES
from .bench_support import nbytes
from .bench_support import parametrize_cases
from .bench_support import randn
from .bench_support import run_op_case


# The blur of the encoder (before each down-sampling conv) and of the generator (after each
# up-sampling conv).
@parametrize_cases(ACTIVATION_SHAPES)
def test_blur(benchmark, impl, shape, mode):
    x = randn(shape, mode)
    moved = (2 * nbytes(x), 4 * nbytes(x))
    run_op_case(benchmark, "blur", mode, shape, impl, lambda: blur(x, impl=impl), moved)
