import os
from pathlib import Path

import pytest
import torch

# Without a GPU the Triton kernels run in Triton's interpreter; it must be switched on before
# any kernel module is imported (the ops import them lazily, on first use).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture
def mnist_dir(monkeypatch):
    """The shared MNIST files, also exported as ALAE_FAST_DATA (no downloads in tests)."""
    assert MNIST_DIR.is_dir(), f"tests need the MNIST files at {MNIST_DIR}"
    monkeypatch.setenv("ALAE_FAST_DATA", str(MNIST_DIR))
    monkeypatch.setenv("XDG_CACHE_HOME", os.devnull + "-nonexistent-cache")
    return MNIST_DIR
