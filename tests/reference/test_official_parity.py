"""Parity of the reference model with the official ALAE code (podgorskiy/ALAE, master).

``data/official_golden.pt`` holds weights, inputs and outputs recorded by running the official
networks (see ``data/README.md``); here our modules load those weights with ``strict=True`` and
must reproduce the outputs, the three losses and every parameter gradient.

The goldens are float32 results of one CPU; ours are float32 results of whichever CPU runs the
tests, whose BLAS/oneDNN kernels sum in another order. Outputs and gradients are therefore
compared within the bound of two float32 evaluations of the same network (derived in
``tests/support.py``, ``ReductionBudget``): 2 * u * max|y| * S, S the sum of sqrt(K) over the
network's reductions of K terms, counted while it runs. A wrong layer, scale, eps or parameter
mapping changes the outputs by far more (the tests below compare to within 1e-5 to 1e-3 of the
tensors' scale depending on depth, against O(1) for such mistakes).
"""

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from support import ReductionBudget
from support import assert_reorder_close

from alae_fast.reference import EncoderFC
from alae_fast.reference import GeneratorFC
from alae_fast.reference import MappingDFC
from alae_fast.reference import MappingF
from alae_fast.reference import StyleALAE

GOLDEN = torch.load(Path(__file__).parent / "data" / "official_golden.pt", weights_only=True)
STYLE_CONFIGS = ["small", "fused"]


def seed_all(s):
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def build(name):
    rec = GOLDEN[name]
    m = StyleALAE(
        dlatent_avg_beta=0.995, truncation_psi=0.7, truncation_cutoff=4, style_mixing_prob=0.9, **rec["config"]
    )
    m.load_state_dict(rec["state_dict"], strict=True)
    return m, rec


@pytest.mark.parametrize("name", STYLE_CONFIGS)
def test_state_dict_names_and_shapes_match_official(name):
    m = StyleALAE(**GOLDEN[name]["config"])
    ours = {k: list(v.shape) for k, v in m.state_dict().items()}
    assert ours == GOLDEN[name]["shapes"]


@pytest.mark.parametrize("name", STYLE_CONFIGS)
def test_mappings_match_official(name):
    m, rec = build(name)
    with torch.no_grad():
        with ReductionBudget(m.mapping_f) as budget:
            w = m.mapping_f(rec["z"])
        assert_reorder_close(w, rec["mapping_f"], budget, "mapping_f")
        with ReductionBudget(m.mapping_d) as budget:
            d = m.mapping_d(rec["styles"][:, :1])
        assert_reorder_close(d, rec["mapping_d"], budget, "mapping_d")


@pytest.mark.parametrize("name", STYLE_CONFIGS)
def test_decoder_and_encoder_match_official_at_every_lod(name):
    m, rec = build(name)
    with torch.no_grad():
        for case in rec["cases"]:
            lod, blend = case["lod"], case["blend"]
            for noise, key in (
                (False, "decoder_det"),
                (True, "decoder_noise"),
                ("batch_constant", "decoder_batch_constant"),
            ):
                seed_all(5)
                with ReductionBudget(m.decoder) as budget:
                    y = m.decoder(rec["styles"], lod, blend, noise)
                assert_reorder_close(y, case[key], budget, f"{key} lod {lod} blend {blend}")
            with ReductionBudget(m.encoder) as budget:
                y = m.encoder(case["x"], lod, blend)
            assert_reorder_close(y, case["encoder"], budget, f"encoder lod {lod} blend {blend}")


@pytest.mark.parametrize("name", STYLE_CONFIGS)
def test_training_losses_and_gradients_match_official(name):
    """D loss with R1 (second-order path), G loss and AE loss, seeded as the official run."""
    m, rec = build(name)
    for case in rec["losses"]:
        lod, blend = case["lod"], case["blend"]
        # The running w average: a mean of mapping_f outputs (their budget).
        with torch.no_grad(), ReductionBudget(m.mapping_f) as w_budget:
            m.mapping_f(rec["z"])
        assert_reorder_close(m.dlatent_avg.buff, case["buff_before"], w_budget, "w average")
        x = case["x"].clone().requires_grad_(True)
        for kind, s in (("d", 7), ("g", 8), ("ae", 9)):
            seed_all(s)
            m.zero_grad(set_to_none=True)
            # The D loss differentiates R1's input gradient: two backward passes.
            with ReductionBudget(m, backward=2 if kind == "d" else 1) as budget:
                if kind == "d":
                    loss = m.d_loss(x, lod, blend)
                elif kind == "g":
                    loss = m.g_loss(x.shape[0], lod, blend)
                else:
                    loss = m.ae_loss(x.shape[0], lod, blend)
            loss.backward()
            assert_reorder_close(loss.detach(), case[kind], budget, f"{kind} loss lod {lod}")
            grads = {n: p.grad for n, p in m.named_parameters() if p.grad is not None}
            expected = case[f"{kind}_grads"]
            if kind == "g":  # the official G step leaves stale grads on D; ours freezes D too
                grads = {n: g for n, g in grads.items() if not n.startswith("mapping_d")}
                expected = {n: g for n, g in expected.items() if not n.startswith("mapping_d")}
            if kind == "ae":  # official AE grads of D are absent (D is not in the AE graph)
                expected = {n: g for n, g in expected.items() if not n.startswith("mapping_d")}
            assert sorted(grads) == sorted(expected)
            # A gradient's terms are of the size of its network's gradients; some cancel to ~0
            # (the bias before an instance norm), so each is held to its network's scale.
            scale = {}
            for n, g in expected.items():
                net = n.split(".")[0]
                scale[net] = max(scale.get(net, 0.0), g.abs().max().item())
            for n in expected:
                assert_reorder_close(grads[n], expected[n], budget, f"{kind} grad of {n}", scale=scale[n.split(".")[0]])
        assert_reorder_close(m.dlatent_avg.buff, case["buff_after"], w_budget, "w average")


def seeded_weights(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for v in module.state_dict().values():
            v.copy_(torch.randn(v.shape, generator=g) * 0.05)
    return module


def test_mlp_networks_match_official():
    rec = GOLDEN["mlp"]
    L = 50
    mods = {
        "mapping_f": MappingF(num_layers=8, mapping_layers=6, latent_size=L, dlatent_size=L, mapping_fmaps=L),
        "mapping_d": MappingDFC(mapping_layers=3, latent_size=L, dlatent_size=L, mapping_fmaps=L),
        "decoder": GeneratorFC(layer_count=4, latent_size=L, channels=1),
        "encoder": EncoderFC(layer_count=4, latent_size=L, channels=1),
    }
    for k, mod in mods.items():
        assert {n: list(v.shape) for n, v in mod.state_dict().items()} == rec["shapes"][k]
        seeded_weights(mod, rec["weight_seeds"][k])
        total = sum(float(v.double().sum()) for v in mod.state_dict().values())
        assert total == pytest.approx(rec["weight_sums"][k], rel=1e-9), "torch RNG stream changed"
    with torch.no_grad():
        # Each comparison's budget counts the networks its input has passed through: a
        # difference in w carries into the decoder's output.
        with ReductionBudget(mods["mapping_f"]) as budget:
            w = mods["mapping_f"](rec["z"])
        assert_reorder_close(w, rec["mapping_f"], budget, "mapping_f")
        with ReductionBudget(mods["mapping_f"]) as budget, ReductionBudget(mods["decoder"]) as b2:
            mods["mapping_f"](rec["z"])
            y = mods["decoder"](w, 3, 1.0, True)
        budget.total += b2.total
        assert_reorder_close(y, rec["decoder"], budget, "decoder")
        with ReductionBudget(mods["encoder"]) as budget:
            e = mods["encoder"](rec["x"], 3, 1.0)
        assert_reorder_close(e, rec["encoder"], budget, "encoder")
        with ReductionBudget(mods["encoder"]) as budget, ReductionBudget(mods["mapping_d"]) as b2:
            mods["encoder"](rec["x"], 3, 1.0)
            d = mods["mapping_d"](e)
        budget.total += b2.total
        assert_reorder_close(d, rec["mapping_d"], budget, "mapping_d")
