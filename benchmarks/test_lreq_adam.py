import pytest
import torch

from alae_fast import reference
from alae_fast.ops import lreq_adam_step_

from .bench_support import DEVICE
from .bench_support import nbytes
from .bench_support import parametrize_impls
from .bench_support import run_case

# The parameter lists of real models: the small StyleALAE of the parity tests and the 256x256
# config (every parameter with a gradient, as the trainer's two optimizers see them).
MODELS = {
    "StyleALAE-32px": dict(startf=16, maxf=64, layer_count=4, latent_size=32, mapping_layers=3),
    "StyleALAE-256px": dict(startf=32, maxf=256, layer_count=7, latent_size=256, mapping_layers=8),
}


@parametrize_impls()
@pytest.mark.parametrize("model", list(MODELS))
def test_lreq_adam_step(benchmark, impl, model):
    params = [p.detach().to(DEVICE) for p in reference.StyleALAE(**MODELS[model]).parameters()]
    grads = [torch.randn_like(p) for p in params]
    exp_avg_sqs = [torch.rand_like(p) for p in params]
    step_sizes = [1e-3] * len(params)

    def step():
        lreq_adam_step_(params, grads, exp_avg_sqs, step_sizes, beta2=0.99, eps=1e-8, impl=impl)

    # Reads p, g, v; writes p, v.
    run_case(
        benchmark,
        op="lreq_adam_step_",
        mode="step",
        shape=f"{model} ({len(params)} tensors)",
        impl=impl,
        fn=step,
        nbytes=5 * nbytes(*params),
    )
