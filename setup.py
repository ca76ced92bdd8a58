"""Build script. The package is pure Python for now; the C++/CUDA extension ``alae_fast._C``
will be declared here (with torch.utils.cpp_extension) when its sources land."""

from setuptools import setup

setup()
