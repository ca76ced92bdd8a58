from alae_fast.ops import encode_norm

from .bench_support import ACTIVATION_SHAPES
from .bench_support import nbytes
from .bench_support import parametrize_cases
from .bench_support import randn
from .bench_support import run_op_case


@parametrize_cases(ACTIVATION_SHAPES)
def test_encode_norm(benchmark, impl, shape, mode):
    x, bias = randn(shape, mode), randn(shape[1], mode)
    # Forward reads x, writes y; backward reads x and grad y, writes grad x.
    moved = (2 * nbytes(x), 5 * nbytes(x))
    run_op_case(benchmark, "encode_norm", mode, shape, impl, lambda: encode_norm(x, bias, impl=impl), moved)
