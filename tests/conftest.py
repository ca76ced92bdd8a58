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


@pytest.fixture(scope="session")
def style_run(tmp_path_factory):
    """A finished 16-step run of the tiny MNIST StyleALAE (support.style_cfg, lod 3 at the end):
    its output folder, holding checkpoint.pt."""
    from support import style_cfg

    from alae_fast.train.trainer import Trainer

    out = tmp_path_factory.mktemp("style_run")
    Trainer(style_cfg(out, f"data.path={MNIST_DIR}"), progress=False).run()
    return out


@pytest.fixture(scope="session")
def mnist_pngs(tmp_path_factory):
    """The first four MNIST test digits as 28x28 PNG files, and one RGB PNG of a digit."""
    import numpy as np
    from PIL import Image

    from alae_fast.data import load_mnist

    folder = tmp_path_factory.mktemp("digits")
    digits, _ = load_mnist("test", MNIST_DIR)
    paths = []
    for k in range(4):
        paths.append(folder / f"digit{k}.png")
        Image.fromarray(digits[k].numpy()).save(paths[-1])
    rgb = folder.parent / f"{folder.name}-rgb.png"
    Image.fromarray(np.repeat(digits[0].numpy()[:, :, None], 3, axis=2)).save(rgb)
    return paths, rgb
