"""Build script: the package plus one extension, ``alae_fast._C``.

The C++ CPU kernels (``csrc/*.cpp``, ``csrc/cpu/``) are always built. The CUDA sources (launch
code in ``csrc/cuda/``, device code in ``kernels/``) are added when torch is a CUDA build and
the CUDA toolkit is found. Environment:

* ``ALAE_FAST_CUDA=0|1``: force the CUDA part off, or on (an error if it cannot be built);
* ``TORCH_CUDA_ARCH_LIST``: GPU architectures (default ``8.0;9.0``);
* ``MAX_JOBS``: parallel compile jobs (ninja honours it; without ninja it sets build_ext's
  ``--parallel``).
"""

import glob
import os
import sys

from setuptools import setup

try:
    import torch
    from torch.utils import cpp_extension
except ImportError:  # pragma: no cover - a build needs torch installed (--no-build-isolation)
    sys.exit(
        "alae_fast: building the extension needs torch installed first: "
        "pip install torch, then pip install --no-build-isolation ."
    )

ROOT = os.path.dirname(os.path.abspath(__file__))


def _sources(*patterns):
    # setuptools wants paths relative to setup.py.
    found = []
    for pattern in patterns:
        found += sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))
    return found


def _want_cuda():
    flag = os.environ.get("ALAE_FAST_CUDA", "").strip()
    if flag not in ("", "0", "1"):
        sys.exit(f"alae_fast: ALAE_FAST_CUDA must be 0 or 1, got {flag!r}")
    possible = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    if flag == "1" and not possible:
        sys.exit(
            "alae_fast: ALAE_FAST_CUDA=1 but the CUDA part cannot be built: "
            f"torch.version.cuda={torch.version.cuda!r}, "
            f"CUDA_HOME={cpp_extension.CUDA_HOME!r}"
        )
    return possible if flag == "" else flag == "1"


def _extension():
    # -fopenmp at compile time only: at::parallel_for then uses OpenMP, and the GOMP symbols
    # resolve to the libgomp torch already loads instead of a second OpenMP runtime.
    cxx_flags = ["-O3"]
    if sys.platform.startswith("linux"):
        cxx_flags.append("-fopenmp")
    sources = _sources("csrc/*.cpp", "csrc/cpu/*.cpp")
    if not _want_cuda():
        return cpp_extension.CppExtension(
            "alae_fast._C", sources, include_dirs=[ROOT], extra_compile_args={"cxx": cxx_flags}
        )
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    sources += _sources("csrc/cuda/*.cpp", "kernels/*.cu")
    return cpp_extension.CUDAExtension(
        "alae_fast._C",
        sources,
        include_dirs=[ROOT, os.path.join(ROOT, "kernels")],
        define_macros=[("ALAE_FAST_WITH_CUDA", "1")],
        extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo"]},
    )


class BuildExtension(cpp_extension.BuildExtension):
    def finalize_options(self):
        super().finalize_options()
        # Without ninja, MAX_JOBS still parallelises the compile through build_ext.
        jobs = os.environ.get("MAX_JOBS", "")
        if jobs.isdigit() and int(jobs) > 0 and not self.parallel:
            self.parallel = int(jobs)


setup(ext_modules=[_extension()], cmdclass={"build_ext": BuildExtension})
