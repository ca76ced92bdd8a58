from alae_fast.ops import linear_act

from .bench_support import nbytes
from .bench_support import parametrize_cases
from .bench_support import randn
from .bench_support import run_op_case

# (batch, in, out): F of the small StyleALAE, F of the 256-latent models, the MLP ALAE's E/G.
SHAPES = [(4, 32, 32), (128, 256, 256), (128, 1024, 1024)]


@parametrize_cases(SHAPES, ("ref", "triton", "cpu"))
def test_linear_act(benchmark, impl, shape, mode):
    batch, n_in, n_out = shape
    x, bias = randn((batch, n_in), mode), randn(n_out, mode)
    weight = (randn((n_out, n_in), "forward") / n_in**0.5).requires_grad_(mode != "forward")
    moved = nbytes(x, weight) + batch * n_out * 4
    moved = (moved, moved)
    run_op_case(benchmark, "linear_act", mode, shape, impl, lambda: linear_act(x, weight, bias, impl=impl), moved)
