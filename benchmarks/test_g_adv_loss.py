import pytest
import torch

from alae_fast.ops import g_adv_loss

from .bench_support import DEVICE, nbytes, parametrize_impls, run_case

SIZES = [64, 4096, 1 << 20] if DEVICE == "cpu" else [64, 4096, 1 << 20, 1 << 24]


@parametrize_impls()
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
def test_g_adv_loss(benchmark, impl, n, mode):
    f = torch.randn(n, device=DEVICE, requires_grad=mode != "forward")
    if mode == "forward":
        fn, moved = (lambda: g_adv_loss(f, impl=impl)), nbytes(f)
    else:
        fn, moved = (lambda: g_adv_loss(f, impl=impl).backward()), 3 * nbytes(f)
    run_case(benchmark, op="g_adv_loss", mode=mode, shape=f"[{n}]", impl=impl, fn=fn,
             nbytes=moved)
