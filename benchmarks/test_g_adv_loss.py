from alae_fast.ops import g_adv_loss

from .bench_support import LOGIT_SIZES
from .bench_support import nbytes
from .bench_support import parametrize_cases
from .bench_support import randn
from .bench_support import run_op_case


@parametrize_cases(LOGIT_SIZES)
def test_g_adv_loss(benchmark, impl, shape, mode):
    f = randn(shape, mode)
    moved = (nbytes(f), 3 * nbytes(f))
    run_op_case(benchmark, "g_adv_loss", mode, shape, impl, lambda: g_adv_loss(f, impl=impl), moved)
