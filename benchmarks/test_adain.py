from alae_fast.ops import adain

from .bench_support import ACTIVATION_SHAPES
from .bench_support import nbytes
from .bench_support import parametrize_cases
from .bench_support import randn
from .bench_support import run_op_case


@parametrize_cases(ACTIVATION_SHAPES)
def test_adain(benchmark, impl, shape, mode):
    n, c, h, w = shape
    x, style = randn(shape, mode), randn((n, 2 * c), mode)
    noise = randn((n, 1, h, w), "forward")  # a constant input
    noise_weight, bias = randn((c,), mode), randn((c,), mode)
    kw = dict(noise=noise, noise_weight=noise_weight, bias=bias)
    moved = (2 * nbytes(x), 5 * nbytes(x))
    run_op_case(benchmark, "adain", mode, shape, impl, lambda: adain(x, style, **kw, impl=impl), moved)
