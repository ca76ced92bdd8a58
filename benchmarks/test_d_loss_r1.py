import pytest
import torch
from torch.nn import functional as F

from alae_fast.ops import d_loss_r1

from .bench_support import DEVICE
from .bench_support import nbytes
from .bench_support import parametrize_impls
from .bench_support import run_case

# The whole E,D loss with R1 behind a light critic (one conv + mean + linear), so that the
# loss ops, not the critic, are a visible part of the time.
SHAPES = [(128, 1, 32, 32), (32, 3, 64, 64)]
if DEVICE == "cuda":
    SHAPES += [(32, 3, 256, 256)]


@parametrize_impls()
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_d_loss_r1(benchmark, impl, shape):
    torch.manual_seed(0)
    weight = torch.randn(4, shape[1], 3, 3, device=DEVICE, requires_grad=True)
    head = torch.randn(4, device=DEVICE, requires_grad=True)
    reals = torch.randn(shape, device=DEVICE, requires_grad=True)
    fakes = torch.randn(shape, device=DEVICE)

    def critic(x):
        return F.leaky_relu(F.conv2d(x, weight, padding=1), 0.2).mean(dim=(2, 3)) @ head

    def step():
        loss = d_loss_r1(critic(fakes), critic(reals), reals, 10.0, impl=impl)
        loss.backward()

    run_case(
        benchmark,
        op="d_loss_r1 (+critic)",
        mode="forward+backward",
        shape=str(list(shape)),
        impl=impl,
        fn=step,
        nbytes=3 * nbytes(reals),
    )
