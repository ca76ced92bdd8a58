import subprocess
import sys
import warnings

import pytest
import torch

from alae_fast import ops
from alae_fast.ops import _dispatch, _extension
from alae_fast.ops._dispatch import ImplUnavailableError, resolve_impl


def test_the_extension_was_built_and_loads():
    # `pip install` builds alae_fast._C; the CPU kernels must be there in every test run.
    assert _extension.load(), _extension.error()
    assert hasattr(torch.ops.alae_fast_C, "r1_penalty_fwd")


def test_importing_the_package_loads_neither_extension_nor_kernels():
    code = ("import sys, alae_fast, alae_fast.ops, alae_fast.train.trainer; "
            "print([m for m in sys.modules if m == 'alae_fast._C' or "
            "m.startswith('alae_fast.ops._triton.')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_automatic_choice_on_cpu_follows_the_measured_order(monkeypatch):
    monkeypatch.delenv("ALAE_FAST_IMPL", raising=False)
    assert resolve_impl("r1_penalty", None, "cpu") == "cpu"
    assert resolve_impl("latent_l2", None, "cpu") == "cpu"
    # PyTorch's vectorised softplus beats the C++ loss kernels on CPU (benchmarks/RESULTS.md).
    assert resolve_impl("d_adv_loss", None, "cpu") == "ref"
    assert resolve_impl("g_adv_loss", None, "cpu") == "ref"
    assert _dispatch.auto_order("d_adv_loss", "cuda") == ("cuda", "triton", "ref")


@pytest.mark.triton_interpreted
def test_environment_variable_overrides_the_default_but_not_the_argument(monkeypatch):
    monkeypatch.setenv("ALAE_FAST_IMPL", "triton")
    assert resolve_impl("d_adv_loss", None, "cpu") == "triton"
    assert resolve_impl("d_adv_loss", "ref", "cpu") == "ref"
    monkeypatch.setenv("ALAE_FAST_IMPL", "auto")
    assert resolve_impl("r1_penalty", None, "cpu") == "cpu"
    f, r = torch.randn(9), torch.randn(9)
    monkeypatch.setenv("ALAE_FAST_IMPL", "triton")
    torch.testing.assert_close(ops.d_adv_loss(f, r), ops.d_adv_loss_ref(f, r))


def test_explicit_unavailable_implementation_raises(monkeypatch):
    monkeypatch.delenv("ALAE_FAST_IMPL", raising=False)
    with pytest.raises(ImplUnavailableError, match=r"impl='cuda' was requested but is "
                                                   r"unavailable: .*these are on cpu"):
        ops.g_adv_loss(torch.randn(3), impl="cuda")
    monkeypatch.setenv("ALAE_FAST_IMPL", "cuda")
    with pytest.raises(ImplUnavailableError, match=r"ALAE_FAST_IMPL='cuda' was requested"):
        ops.g_adv_loss(torch.randn(3))


def test_unknown_implementation_names_are_rejected(monkeypatch):
    monkeypatch.delenv("ALAE_FAST_IMPL", raising=False)
    with pytest.raises(ValueError, match=r"impl must be one of .* got 'fast'"):
        ops.latent_l2(torch.randn(3), torch.randn(3), impl="fast")
    monkeypatch.setenv("ALAE_FAST_IMPL", "gpu")
    with pytest.raises(ValueError, match=r"ALAE_FAST_IMPL must be one of .* got 'gpu'"):
        ops.latent_l2(torch.randn(3), torch.randn(3))


def test_missing_build_falls_back_with_one_warning_and_explicit_request_raises(monkeypatch):
    monkeypatch.delenv("ALAE_FAST_IMPL", raising=False)
    monkeypatch.setattr(_extension, "_loaded", False)
    monkeypatch.setattr(_extension, "_error", "the extension alae_fast._C is not built (test)")
    monkeypatch.setattr(_dispatch, "_warned", set())
    f, r = torch.randn(5), torch.randn(5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            torch.testing.assert_close(ops.latent_l2(f, r), ops.latent_l2_ref(f, r))
            ops.r1_penalty(torch.randn(2, 3), 1.0)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1, messages
    assert "'cpu' kernels are unavailable" in messages[0] and "fall back to 'ref'" in messages[0]
    with pytest.raises(ImplUnavailableError, match=r"impl='cpu' was requested but is "
                                                   r"unavailable: the extension alae_fast._C"):
        ops.d_adv_loss(f, r, impl="cpu")


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "TRITON_INTERPRET=1" in _dispatch.unavailable_reason("triton", "cpu")
    with pytest.raises(ImplUnavailableError, match=r"TRITON_INTERPRET=1"):
        ops.d_adv_loss(torch.randn(3), torch.randn(3), impl="triton")


def test_available_impls_on_cpu(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert ops.available_impls("cpu") == ["ref", "triton", "cpu"]
    monkeypatch.delenv("TRITON_INTERPRET")
    assert ops.available_impls("cpu") == ["ref", "cpu"]
