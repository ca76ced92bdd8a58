"""The CUDA translation units in kernels/ compile with plain nvcc, without torch.

kernels/ holds torch-free device code and launchers, so it must build on a machine whose torch
has no CUDA headers; these tests compile every *.cu there for sm_80 and sm_90 (warnings are
errors) and check that nothing in the folder includes a torch, ATen or c10 header. The compile
tests skip when no nvcc is found; the include check always runs.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
KERNELS_DIR = REPO_ROOT / "kernels"
CU_FILES = sorted(KERNELS_DIR.glob("*.cu"))
KERNEL_SOURCES = sorted(p for p in KERNELS_DIR.iterdir() if p.suffix in {".cu", ".cuh", ".h", ".hpp", ".cpp", ".cc"})
ARCHS = ["80", "90"]
COMPILE_TIMEOUT_S = 600

# `#include <torch/...>`, `#include "ATen/..."`, `#include <c10/...>` and the like.
_TORCH_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]\s*(torch|ATen|c10)\b', re.MULTILINE)


def _find_nvcc():
    """nvcc on PATH, else $CUDA_HOME/bin/nvcc, else None."""
    found = shutil.which("nvcc")
    if found:
        return found
    cuda_home = os.environ.get("CUDA_HOME")
    if cuda_home:
        candidate = Path(cuda_home) / "bin" / "nvcc"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def test_kernels_folder_has_sources():
    assert CU_FILES, f"no *.cu files in {KERNELS_DIR}"


@pytest.mark.parametrize("source", KERNEL_SOURCES, ids=lambda p: p.name)
def test_kernels_include_no_torch_headers(source):
    text = source.read_text()
    offending = [m.group(0).strip() for m in _TORCH_INCLUDE.finditer(text)]
    assert not offending, (
        f"{source.relative_to(REPO_ROOT)} includes torch headers {offending}; kernels/ must stay "
        "torch-free (put torch glue in csrc/)"
    )


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"sm_{a}")
@pytest.mark.parametrize("source", CU_FILES, ids=lambda p: p.name)
def test_nvcc_compiles(source, arch, tmp_path):
    nvcc = _find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found on PATH or at $CUDA_HOME/bin/nvcc")
    obj = tmp_path / f"{source.stem}.sm_{arch}.o"
    cmd = [
        nvcc,
        "-c",
        str(source),
        "-o",
        str(obj),
        "-std=c++17",
        f"-gencode=arch=compute_{arch},code=sm_{arch}",
        "-Werror",
        "all-warnings",
        "-I",
        str(REPO_ROOT),
        "-I",
        str(KERNELS_DIR),
    ]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"nvcc took over {COMPILE_TIMEOUT_S} s on {source.name} for sm_{arch}")
    assert result.returncode == 0, (
        f"nvcc failed on {source.relative_to(REPO_ROOT)} for sm_{arch} "
        f"(exit {result.returncode})\n$ {' '.join(cmd)}\n"
        f"--- stderr ---\n{result.stderr}\n--- stdout ---\n{result.stdout}"
    )
    assert obj.is_file(), f"nvcc reported success but wrote no {obj.name}"
