from alae_fast.ops import bias_act

from .bench_support import ACTIVATION_SHAPES
from .bench_support import nbytes
from .bench_support import parametrize_cases
from .bench_support import randn
from .bench_support import run_op_case


# Encoder/FromRGB activations.
@parametrize_cases(ACTIVATION_SHAPES)
def test_bias_act(benchmark, impl, shape, mode):
    x, b = randn(shape, mode), randn(shape[1], mode)
    # Forward reads x, writes y; backward reads the gradient and y, writes grad x.
    moved = (2 * nbytes(x), 5 * nbytes(x))
    run_op_case(benchmark, "bias_act", mode, shape, impl, lambda: bias_act(x, b, impl=impl), moved)
