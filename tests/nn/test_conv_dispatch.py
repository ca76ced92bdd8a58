"""The generator's two convolution paths (fused AdaIN convolution, or adain + library conv)
against the reference generator, and the per-layer dispatcher that picks between them."""

import copy

import pytest
import torch
from support import impl_device
from support import require

import alae_fast
from alae_fast import ops
from alae_fast import reference
from alae_fast.nn import blocks
from alae_fast.nn import conv_dispatch

RTOL = 1e-4  # whole-generator float32 parity, relative to each tensor's largest value


def _assert_close(ours, ref, what):
    scale = ref.abs().max().item()
    torch.testing.assert_close(ours, ref, rtol=RTOL, atol=RTOL * scale + 1e-7, msg=lambda m: f"{what}: {m}")


def _generators(impl, device, **config):
    """(fast, reference) generators from one initialisation, with non-zero biases, noise
    weights and constant (all start at constants that would hide their paths)."""
    torch.manual_seed(0)
    ref = reference.Generator(**config)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "bias" in name or "noise_weight" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
        ref.const.normal_(generator=g)
    ref = ref.to(device)
    return alae_fast.optimize(copy.deepcopy(ref), impl), ref


SMALL = dict(startf=16, maxf=64, layer_count=4, latent_size=32, channels=3)
# Level 5 is 128x128: the fused stride-2 transposed up-sampling conv of the reference.
FUSED_SCALE = dict(startf=4, maxf=8, layer_count=6, latent_size=8, channels=3)
CASES = [(SMALL, 3, 1.0, 3), (SMALL, 2, 0.5, 3), (SMALL, 1, 1.0, 3), (FUSED_SCALE, 5, 1.0, 1)]


@pytest.fixture(params=["fused", "separate"])
def path(request, monkeypatch):
    monkeypatch.setenv(conv_dispatch.ENV_VAR, request.param)
    return request.param


@impl_device
@pytest.mark.parametrize("config,lod,blend,batch", CASES, ids=["lod3", "lod2-blend0.5", "lod1", "lod5-fused-scale"])
def test_generator_output_and_every_gradient(impl, device, path, config, lod, blend, batch):
    require(impl, device)
    fast, ref = _generators(impl, device, **config)
    g = torch.Generator().manual_seed(3)
    styles = torch.randn((batch, 2 * config["layer_count"], config["latent_size"]), generator=g).to(device)
    outs, grads = [], []
    for m in (fast, ref):
        s = styles.clone().requires_grad_()
        torch.manual_seed(11)  # the same noise images for both
        out = m(s, lod, blend, noise=True)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(4)).to(device)
        params = [p for _, p in m.named_parameters()]
        grads.append(torch.autograd.grad(out, [s] + params, upstream, allow_unused=True))
        outs.append(out)
    _assert_close(outs[0], outs[1], "generator output")
    names = ["styles"] + [n for n, _ in ref.named_parameters()]
    for name, gf, gr in zip(names, *grads):
        if gr is None:
            assert gf is None or not gf.any(), name
            continue
        _assert_close(gf, gr, f"gradient of {name}")


def _count_adain_calls(monkeypatch, impl):
    """How often one forward of the SMALL generator calls ops.adain and ops.adain_conv2d."""
    fast, _ = _generators(impl, "cpu", **SMALL)
    calls = {"adain": 0, "adain_conv2d": 0}
    for name in calls:
        original = getattr(ops, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(ops, name, counted)
    fast(torch.randn(2, 8, 32), 3, 1.0, noise=True)
    return calls


# 4 blocks of 2 AdaINs. Fused: conv_2 of each and conv_1 of blocks 1-3 read deferred AdaIN
# outputs; only the last block's output AdaIN (read by ToRGB) is materialised.
FUSED_CALLS = {"adain": 1, "adain_conv2d": 7}
SEPARATE_CALLS = {"adain": 8, "adain_conv2d": 0}


def test_fused_path_never_writes_an_inner_adain_output(monkeypatch):
    monkeypatch.setenv(conv_dispatch.ENV_VAR, "fused")
    assert _count_adain_calls(monkeypatch, "cpu") == FUSED_CALLS


def test_dispatcher_rule_and_override(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv(conv_dispatch.ENV_VAR, "fused")
    assert conv_dispatch.use_fused_adain_conv(cpu, 512, 512, 4, False, "ref")
    monkeypatch.setenv(conv_dispatch.ENV_VAR, "separate")
    assert not conv_dispatch.use_fused_adain_conv(cpu, 8, 8, 64, True, "cpu")
    monkeypatch.setenv(conv_dispatch.ENV_VAR, "auto")
    # The reference implementation gains nothing from the fused path.
    assert not conv_dispatch.use_fused_adain_conv(cpu, 8, 8, 64, False, "ref")
    monkeypatch.setenv(conv_dispatch.ENV_VAR, "sometimes")
    with pytest.raises(ValueError, match=r"ALAE_FAST_ADAIN_CONV must be one of"):
        conv_dispatch.use_fused_adain_conv(cpu, 8, 8, 8, False, "cpu")


@pytest.mark.parametrize("cpu_fused", [False, True])
def test_auto_mode_on_cpu_follows_the_cpu_rule(monkeypatch, cpu_fused):
    # Either value of the measured CPU rule must reach every layer, for the C++ impl chosen
    # explicitly or automatically; the reference impl stays separate whatever the rule says.
    cpu = torch.device("cpu")
    monkeypatch.setenv(conv_dispatch.ENV_VAR, "auto")
    monkeypatch.delenv("ALAE_FAST_IMPL", raising=False)
    monkeypatch.setattr(conv_dispatch, "CPU_FUSED", cpu_fused)
    for shape in [(8, 8, 64, True), (512, 512, 4, False), (64, 64, 256, False)]:
        assert conv_dispatch.use_fused_adain_conv(cpu, *shape, "cpu") is cpu_fused
        assert conv_dispatch.use_fused_adain_conv(cpu, *shape, None) is cpu_fused
        assert conv_dispatch.use_fused_adain_conv(cpu, *shape, "ref") is False
    # The generator, with the automatic impl, asks the dispatcher at every layer.
    assert _count_adain_calls(monkeypatch, None) == (FUSED_CALLS if cpu_fused else SEPARATE_CALLS)


def test_generator_is_swapped_and_keeps_its_state():
    fast, ref = _generators("cpu", "cpu", **SMALL)
    assert type(fast) is blocks.Generator and isinstance(fast, reference.Generator)
    assert fast.state_dict().keys() == ref.state_dict().keys()


def test_cuda_rule_needs_both_fused_ops_verified_for_the_chosen_impl(monkeypatch, tmp_path):
    import json
    import warnings

    from alae_fast import verified
    from alae_fast.ops import _dispatch
    from alae_fast.ops import _extension

    cuda = torch.device("cuda")
    monkeypatch.setenv(conv_dispatch.ENV_VAR, "auto")
    monkeypatch.delenv("ALAE_FAST_IMPL", raising=False)
    monkeypatch.setattr(_dispatch, "gpu_capability", lambda: (9, 0))
    monkeypatch.setattr(_extension, "has_cuda_kernels", lambda: True)  # a pretended GPU build
    monkeypatch.setattr(_dispatch, "_warned", {_dispatch._UNVERIFIED_WARNING})
    path = tmp_path / "verified_kernels.json"
    monkeypatch.setattr(verified, "RECORD_PATH", path)

    def write(*pairs):
        records = [
            dict(
                op=op,
                impl=impl,
                device="NVIDIA H100",
                capability="9.0",
                torch="2.11",
                triton="3.6",
                cuda="13.0",
                date="2026-12-01",
            )
            for op, impl in pairs
        ]
        path.write_text(json.dumps(dict(format=1, records=records)))
        verified.clear_cache()

    def fused(impl):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return conv_dispatch.use_fused_adain_conv(cuda, 64, 64, 32, False, impl)

    try:
        # No GPU measurement yet: the separate path even with both ops verified.
        write(("adain_conv2d", "cuda"), ("adain_stats", "cuda"))
        assert not fused(None) and not fused("cuda")
        # Pretend the measured rule says fused wins: now only the verification decides.
        monkeypatch.setattr(conv_dispatch, "cuda_fused_wins", lambda *shape: True)
        assert fused(None) and fused("cuda")
        assert not fused("triton")  # explicit, runs, but Triton's fused ops are unverified
        write(("adain_conv2d", "cuda"))  # adain_stats unverified
        assert not fused("cuda")
        assert not fused(None)  # automatic: adain_conv2d's CUDA kernel is chosen, stats aren't
        write(("adain_conv2d", "triton"), ("adain_stats", "triton"))
        assert fused(None) and fused("triton") and not fused("cuda")
        write()
        assert not fused(None)  # unverified: the automatic choice is the reference
    finally:
        verified.clear_cache()
