"""One whole ALAE training iteration of a small StyleALAE (the parity tests' config: 4 levels,
32x32, 16-64 channels, batch 4; on GPU also a 128x128 model with batch 32): the D step with
R1, the G step and the AE step, each with its optimizer step.

Three ways to run it:
- ``ref``: the reference model and optimizer, eager;
- ``fast``: ``alae_fast.optimize`` (fused ops, automatic choice) and the fused optimizer;
- ``compile(ref)``: the reference networks under ``torch.compile`` where that works. AOTAutograd
  cannot differentiate a compiled graph twice, so the D step (R1 needs the gradient of the
  gradient through E and D) stays eager; the G and AE steps run compiled E, G, F and D.
"""

import os

import pytest
import torch

import alae_fast
from alae_fast import reference
from alae_fast.optim import LREQAdam as FusedLREQAdam

from .bench_support import DEVICE
from .bench_support import run_case

CONFIGS = {"32px-b4": (dict(startf=16, maxf=64, layer_count=4, latent_size=32, mapping_layers=3), 4)}
if DEVICE == "cuda":
    CONFIGS["128px-b32"] = (dict(startf=32, maxf=256, layer_count=6, latent_size=256, mapping_layers=8), 32)
MODES = ("ref", "fast", "compile(ref)")
# torch.compile of the reference takes minutes on a small CPU; ALAE_FAST_BENCH_COMPILE=0 skips
# those rows (they are then absent from RESULTS.md, not faked).
COMPILE = os.environ.get("ALAE_FAST_BENCH_COMPILE", "1") != "0"


class _Iteration:
    def __init__(self, mode, config):
        kwargs, self.batch = CONFIGS[config]
        torch.manual_seed(0)
        model = reference.StyleALAE(**kwargs).to(DEVICE)
        self.lod = kwargs["layer_count"] - 1
        opt_cls = reference.LREQAdam
        if mode == "fast":
            alae_fast.optimize(model)
            opt_cls = FusedLREQAdam
        self.model = model
        self.opt_e = opt_cls([*model.encoder.parameters(), *model.mapping_d.parameters()], lr=1e-3)
        self.opt_g = opt_cls([*model.decoder.parameters(), *model.mapping_f.parameters()], lr=1e-3)
        self.eager = {name: getattr(model, name) for name in ("encoder", "decoder", "mapping_f", "mapping_d")}
        self.compiled = None
        if mode == "compile(ref)":
            self.compiled = {name: torch.compile(m) for name, m in self.eager.items()}
        r = 4 * 2**self.lod
        self.x = torch.randn(self.batch, kwargs.get("channels", 3), r, r, device=DEVICE)

    def _use(self, modules):
        for name, m in modules.items():
            setattr(self.model, name, m)

    def d_step(self):
        self._use(self.eager)  # R1's double backward cannot run through a compiled graph
        m, x = self.model, self.x.detach().requires_grad_(True)
        self.opt_e.zero_grad(set_to_none=False)
        m.d_loss(x, self.lod, 1.0, 10.0).backward()
        self.opt_e.step()

    def g_step(self):
        self._use(self.compiled or self.eager)
        self.opt_g.zero_grad(set_to_none=False)
        self.model.g_loss(self.batch, self.lod, 1.0).backward()
        self.opt_g.step()

    def ae_step(self):
        self._use(self.compiled or self.eager)
        self.opt_e.zero_grad(set_to_none=False)
        self.opt_g.zero_grad(set_to_none=False)
        self.model.ae_loss(self.batch, self.lod, 1.0).backward()
        self.opt_e.step()
        self.opt_g.step()

    def whole(self):
        self.d_step()
        self.g_step()
        self.ae_step()


_CACHE = {}


def _iteration(mode, config):
    # One model per (mode, config), shared by the step benchmarks (compiling is the slow part).
    if (mode, config) not in _CACHE:
        _CACHE[(mode, config)] = _Iteration(mode, config)
    return _CACHE[(mode, config)]


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("step", ["whole", "d_step", "g_step", "ae_step"])
@pytest.mark.parametrize("mode", MODES)
def test_training_iteration(benchmark, mode, step, config):
    if mode == "compile(ref)" and not COMPILE:
        pytest.skip("ALAE_FAST_BENCH_COMPILE=0")
    it = _iteration(mode, config)
    fn = getattr(it, step)
    for _ in range(2):  # compile / warm up every step before timing
        it.whole()
    label = {"whole": "whole iteration", "d_step": "D step (R1)", "g_step": "G step", "ae_step": "AE step"}[step]
    run_case(benchmark, op="training iteration", mode=label, shape=config, impl=mode, fn=fn, nbytes=0)
