import pytest
import torch

from alae_fast.ops import d_adv_loss

from .bench_support import DEVICE, nbytes, parametrize_impls, run_case

SIZES = [64, 4096, 1 << 20] if DEVICE == "cpu" else [64, 4096, 1 << 20, 1 << 24]


@parametrize_impls()
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
def test_d_adv_loss(benchmark, impl, n, mode):
    f = torch.randn(n, device=DEVICE, requires_grad=mode != "forward")
    r = torch.randn(n, device=DEVICE, requires_grad=mode != "forward")
    if mode == "forward":
        fn, moved = (lambda: d_adv_loss(f, r, impl=impl)), nbytes(f, r)
    else:
        fn, moved = (lambda: d_adv_loss(f, r, impl=impl).backward()), 3 * nbytes(f, r)
    run_case(benchmark, op="d_adv_loss", mode=mode, shape=f"[{n}]", impl=impl, fn=fn,
             nbytes=moved)
