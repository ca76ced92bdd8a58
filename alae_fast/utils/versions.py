"""The software versions a measurement or a GPU record is stamped with."""

from __future__ import annotations

import platform

__all__ = ["software_versions"]


def software_versions() -> dict[str, str]:
    """torch, Triton ("not installed" without it), the CUDA torch was built with ("none" for a
    CPU build) and Python. Imports Triton only when called."""
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    return dict(
        torch=torch.__version__,
        triton=triton_version,
        cuda=torch.version.cuda or "none",
        python=platform.python_version(),
    )
