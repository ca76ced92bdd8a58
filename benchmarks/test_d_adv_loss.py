from alae_fast.ops import d_adv_loss

from .bench_support import LOGIT_SIZES
from .bench_support import nbytes
from .bench_support import parametrize_cases
from .bench_support import randn
from .bench_support import run_op_case


@parametrize_cases(LOGIT_SIZES)
def test_d_adv_loss(benchmark, impl, shape, mode):
    f, r = randn(shape, mode), randn(shape, mode)
    moved = (nbytes(f, r), 3 * nbytes(f, r))
    run_op_case(benchmark, "d_adv_loss", mode, shape, impl, lambda: d_adv_loss(f, r, impl=impl), moved)
