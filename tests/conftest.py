import os
from pathlib import Path

import pytest
import torch

# Triton decides when a kernel is jitted whether it is interpreted, so interpreted Triton (on
# CPU tensors) and compiled Triton (on CUDA) cannot share a process. The suite therefore runs
# twice: a plain process runs everything but the interpreted-Triton cases (the Triton-on-CUDA
# cases included, where CUDA exists), and a process started with TRITON_INTERPRET=1 runs only
# those cases. A case is an interpreted-Triton case when it is parametrised with impl "triton"
# and CPU tensors (a device parameter of "cpu", or none), or marked triton_interpreted.
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "triton_interpreted: runs Triton kernels on CPU tensors (only in a process started with TRITON_INTERPRET=1)",
    )


def runs_interpreted_triton(item) -> bool:
    if item.get_closest_marker("triton_interpreted") is not None:
        return True
    params = getattr(item, "callspec", None)
    params = params.params if params is not None else {}
    return params.get("impl") == "triton" and params.get("device", "cpu") == "cpu"


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        (keep if runs_interpreted_triton(item) == INTERPRETED else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True)
def _no_tf32():
    """Float32 parity is judged with TF32 off (cuBLAS and cuDNN would otherwise round inputs to
    10 mantissa bits on Ampere and later)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture
def mnist_dir(monkeypatch):
    """The shared MNIST files, also exported as ALAE_FAST_DATA (no downloads in tests)."""
    assert MNIST_DIR.is_dir(), f"tests need the MNIST files at {MNIST_DIR}"
    monkeypatch.setenv("ALAE_FAST_DATA", str(MNIST_DIR))
    monkeypatch.setenv("XDG_CACHE_HOME", os.devnull + "-nonexistent-cache")
    return MNIST_DIR
