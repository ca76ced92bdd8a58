"""The top-level package: submodules as lazy attributes, nothing heavy loaded on the way, and one
version number."""

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import alae_fast


def run_fresh(code: str) -> dict:
    """Run ``code`` in a fresh interpreter importing this checkout; return the JSON it prints
    on its last line."""
    root = str(Path(alae_fast.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


HEAVY = """
import json, sys
heavy = sorted(m for m in sys.modules
               if m == "triton" or m.startswith("triton.") or m.startswith("alae_fast._C"))
print(json.dumps({"heavy": heavy, "loaded": sorted(m for m in sys.modules
                                                   if m.startswith("alae_fast"))}))
"""


def test_submodules_are_attributes_without_loading_extension_or_triton():
    out = run_fresh("import alae_fast\nalae_fast.ops.blur; alae_fast.reference.StyleALAE; alae_fast.models\n" + HEAVY)
    assert out["heavy"] == []
    assert {"alae_fast.ops", "alae_fast.reference", "alae_fast.models"} <= set(out["loaded"])


def test_import_alae_fast_imports_no_submodule():
    out = run_fresh("import alae_fast\n" + HEAVY)
    assert out["heavy"] == []
    assert out["loaded"] == ["alae_fast"]


@pytest.mark.parametrize("name", alae_fast.SUBMODULES)
def test_each_submodule_attribute_is_the_module(name):
    module = getattr(alae_fast, name)
    assert module is sys.modules[f"alae_fast.{name}"]
    assert name in dir(alae_fast)


def test_submodules_lists_every_public_module():
    pkg = Path(alae_fast.__file__).parent
    found = {p.stem for p in pkg.glob("*.py")} | {p.parent.name for p in pkg.glob("*/__init__.py")}
    public = {n for n in found if not n.startswith("_")}
    assert public == set(alae_fast.SUBMODULES)


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_module"):
        alae_fast.no_such_module  # noqa: B018
    assert not hasattr(alae_fast, "_C_typo")


def test_installed_metadata_version_is_the_package_version():
    # pyproject.toml reads the version from alae_fast.__version__ (dynamic), so the two agree
    # unless the installed metadata is stale or comes from another version.
    assert importlib.metadata.version("alae_fast") == alae_fast.__version__
