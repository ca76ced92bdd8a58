from alae_fast.ops import g_adv_loss

from .bench_support import LOGIT_SIZES
from .bench_support import nbytes
from .bench_support import parametrize_cases
from .bench_support import randn
from .bench_support import run_op_case


@parametrize_cases(LOGIT_SIZES)
def test_g_adv_loss(benchmark, impl, shape, mode):
    f = randn(shape, mode)
    run_op_case(
        benchmark,
        op="g_adv_loss",
        mode=mode,
        shape=shape,
        impl=impl,
        forward=lambda: g_adv_loss(f, impl=impl),
        moved=(nbytes(f), 3 * nbytes(f)),
    )
