import json
import os
import subprocess
import sys
import warnings

import pytest
import torch
from support import verified_record

from alae_fast import ops
from alae_fast import verified
from alae_fast.ops import _dispatch
from alae_fast.ops import _extension
from alae_fast.ops._dispatch import ImplUnavailableError
from alae_fast.ops._dispatch import resolve_impl


def test_the_extension_was_built_and_loads():
    # `pip install` builds alae_fast._C; the CPU kernels must be there in every test run.
    assert _extension.load(), _extension.error()
    assert hasattr(torch.ops.alae_fast_C, "r1_penalty_fwd")


def test_importing_the_package_loads_neither_extension_nor_kernels():
    code = (
        "import sys, alae_fast, alae_fast.ops, alae_fast.train.trainer; "
        "print([m for m in sys.modules if m == 'alae_fast._C' or "
        "m.startswith('alae_fast.ops._triton.')])"
    )
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


def test_environment_variable_overrides_the_default_but_not_the_argument(monkeypatch):
    monkeypatch.setenv("ALAE_FAST_IMPL", "cpu")
    assert resolve_impl("d_adv_loss", None, "cpu") == "cpu"
    assert resolve_impl("d_adv_loss", "ref", "cpu") == "ref"
    monkeypatch.setenv("ALAE_FAST_IMPL", "auto")
    assert resolve_impl("r1_penalty", None, "cpu") == "cpu"
    assert resolve_impl("d_adv_loss", None, "cpu") == "ref"


@pytest.mark.triton_interpreted
def test_environment_variable_selects_triton(monkeypatch):
    monkeypatch.setenv("ALAE_FAST_IMPL", "triton")
    assert resolve_impl("d_adv_loss", None, "cpu") == "triton"
    f, r = torch.randn(9), torch.randn(9)
    torch.testing.assert_close(ops.d_adv_loss(f, r), ops.d_adv_loss_ref(f, r))


def test_explicit_unavailable_implementation_raises(monkeypatch):
    monkeypatch.delenv("ALAE_FAST_IMPL", raising=False)
    with pytest.raises(ImplUnavailableError, match=r"impl='cuda' was requested but is unavailable: .*these are on cpu"):
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
    with pytest.raises(
        ImplUnavailableError,
        match=r"impl='cpu' was requested but is "
        r"unavailable: the extension alae_fast._C",
    ):
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


# ---- the GPU verification gate (on this CPU machine: a pretended H100 and a written record) --

H100 = (9, 0)


@pytest.fixture
def gpu(monkeypatch, tmp_path):
    """A pretended CUDA device of capability 9.0 whose record file is ``gpu.write(records)``;
    every warning is collected in ``gpu.warnings``."""
    monkeypatch.delenv("ALAE_FAST_IMPL", raising=False)
    monkeypatch.setattr(_dispatch, "gpu_capability", lambda: H100)
    monkeypatch.setattr(_dispatch, "_warned", set())
    path = tmp_path / "verified_kernels.json"
    monkeypatch.setattr(verified, "RECORD_PATH", path)
    verified.clear_cache()

    class Gpu:
        def write(self, records, **extra):
            path.write_text(json.dumps(dict(format=1, records=records, **extra)))
            verified.clear_cache()

        def resolve(self, op, impl=None, supported=_dispatch.IMPLS):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                chosen = resolve_impl(op, impl, "cuda", supported)
            self.warnings += [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
            return chosen

    g = Gpu()
    g.path, g.warnings = path, []
    yield g
    verified.clear_cache()


def test_the_committed_record_parses_and_is_in_the_package_data():
    verified.clear_cache()
    records = verified.load_records()
    assert isinstance(records, list)
    assert verified.RECORD_PATH.name == "verified_kernels.json"
    assert (
        '"alae_fast" = ["verified_kernels.json"]'
        in open(os.path.join(os.path.dirname(__file__), "..", "..", "pyproject.toml")).read()
    )


def test_unverified_gpu_kernels_fall_back_to_the_reference_with_one_warning(gpu):
    gpu.write([])
    # Triton is importable here and the extension has no CUDA kernels: only the missing
    # record can make the choice "ref" for Triton (and "triton" below, once recorded).
    assert _dispatch.unavailable_reason("triton", "cuda") is None
    for op in verified.OPS:
        supported = ("ref", "triton", "cpu") if op == "linear_act" else _dispatch.IMPLS
        assert gpu.resolve(op, supported=supported) == "ref", op
        assert gpu.resolve(op, supported=supported) == "ref", op
    assert len(gpu.warnings) == 1, gpu.warnings
    message = gpu.warnings[0]
    for hint in (
        "scripts/gpu_check.sh",
        "alae-fast doctor --device cuda",
        "impl='cuda'",
        "impl='triton'",
        "ALAE_FAST_IMPL=cuda|triton",
        "verified_kernels.json",
    ):
        assert hint in message, (hint, message)


def test_a_verified_record_selects_the_kernel(gpu, monkeypatch):
    monkeypatch.setattr(_extension, "has_cuda_kernels", lambda: False)  # as on a CPU build
    pairs = [("blur", "triton"), ("bias_act", "cuda"), ("adain", "cuda"), ("adain", "triton")]
    gpu.write([verified_record(op, impl) for op, impl in pairs])
    assert gpu.resolve("blur") == "triton"  # 'cuda' is unverified: skipped, Triton verified
    assert gpu.warnings == []  # a verified kernel runs: nothing to warn about
    # 'cuda' verified but the extension has no CUDA kernels here: Triton is unverified -> ref
    assert gpu.resolve("bias_act") == "ref"
    assert any("'cuda' kernels are unavailable" in w for w in gpu.warnings), gpu.warnings
    monkeypatch.setattr(_dispatch, "unavailable_reason", lambda impl, device_type: None)
    assert gpu.resolve("bias_act") == "cuda"
    assert gpu.resolve("adain") == "cuda"
    assert gpu.resolve("encode_norm") == "ref"


def test_a_record_covers_the_same_major_compute_capability_only(gpu, monkeypatch):
    gpu.write([verified_record("blur", "triton", capability="9.0")])
    assert gpu.resolve("blur") == "triton"
    monkeypatch.setattr(_dispatch, "gpu_capability", lambda: (9, 2))
    assert gpu.resolve("blur") == "triton"
    monkeypatch.setattr(_dispatch, "gpu_capability", lambda: (8, 0))
    assert gpu.resolve("blur") == "ref"
    gpu.write([verified_record("blur", "triton", capability="8.6")])
    assert gpu.resolve("blur") == "triton"
    assert verified.find_record("blur", "triton", (10, 0)) is None


def test_explicit_requests_are_not_gated(gpu, monkeypatch):
    monkeypatch.setattr(_extension, "has_cuda_kernels", lambda: False)  # as on a CPU build
    gpu.write([])
    assert gpu.resolve("blur", "triton") == "triton"
    monkeypatch.setenv("ALAE_FAST_IMPL", "triton")
    assert gpu.resolve("adain") == "triton"
    monkeypatch.delenv("ALAE_FAST_IMPL")
    with pytest.raises(
        ImplUnavailableError,
        match=r"impl='cuda' was requested but is "
        r"unavailable: .*without its CUDA kernels",
    ):
        gpu.resolve("blur", "cuda")
    monkeypatch.setattr(_dispatch, "unavailable_reason", lambda impl, device_type: None)
    assert gpu.resolve("blur", "cuda") == "cuda"
    assert gpu.warnings == []


@pytest.mark.parametrize(
    "content,match",
    [
        ("{not json", r"not valid JSON"),
        ('{"format": 1}', r"expected an object with a 'records' list"),
        ('{"format": 7, "records": []}', r"unknown format 7"),
        ('{"format": 1, "records": [{"op": "blur"}]}', r"records\[0\] needs .* 'impl'"),
        (json.dumps({"format": 1, "records": [verified_record("fuse", "cuda")]}), r"unknown op"),
        (json.dumps({"format": 1, "records": [verified_record("blur", "cpu")]}), r"impl 'cpu'"),
        (json.dumps({"format": 1, "records": [verified_record("blur", "cuda", "sm90")]}), r"capability 'sm90'"),
    ],
)
def test_record_file_errors_name_the_file(gpu, content, match):
    gpu.path.write_text(content)
    verified.clear_cache()
    with pytest.raises(verified.VerifiedRecordError, match=match) as info:
        gpu.resolve("blur")
    assert str(gpu.path) in str(info.value)


def test_a_missing_record_file_is_named(gpu):
    with pytest.raises(verified.VerifiedRecordError, match=r"cannot read") as info:
        gpu.resolve("blur")
    assert str(gpu.path) in str(info.value)


def test_the_cpu_choice_is_not_gated(gpu):
    gpu.write([])
    assert _dispatch.auto_order("blur", "cpu") == ("cpu", "ref")
    assert resolve_impl("blur", None, "cpu") == "cpu"
    assert resolve_impl("d_adv_loss", None, "cpu") == "ref"
    assert _dispatch.verification("blur", "cpu", "cpu") == (True, "not gated")
