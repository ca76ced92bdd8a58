"""The reference implementation stands alone: importing :mod:`alae_fast.reference` and training
a reference model imports nothing of the fast layer (ops, nn, models, the extension, Triton)."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import alae_fast

FAST_LAYER = ("alae_fast.ops", "alae_fast.nn", "alae_fast.models", "alae_fast._C", "triton")

# One training iteration of each reference model (the three losses and their backward), then
# the fast-layer modules found in sys.modules, as JSON on the last line.
REFERENCE_STEP = """
import json, sys
import torch
from alae_fast.reference import MLPALAE, StyleALAE
torch.manual_seed(0)
for model, shape in [
    (StyleALAE(startf=4, maxf=8, layer_count=2, latent_size=8, mapping_layers=2, channels=1,
               dlatent_avg_beta=0.99, style_mixing_prob=0.9), (2, 1, 8, 8)),
    (MLPALAE(latent_size=8, mapping_layers=2), (2, 1, 32, 32)),
]:
    x = torch.randn(shape, requires_grad=True)
    lod = 1 if isinstance(model, StyleALAE) else 3
    for loss in (model.d_loss(x, lod, 1.0), model.g_loss(2, lod, 1.0), model.ae_loss(2, lod, 1.0)):
        assert torch.isfinite(loss), loss
        loss.backward()
"""
REPORT = """
fast = [m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in {names})]
print(json.dumps(sorted(fast)))
"""


def fast_modules_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; return the fast-layer modules it left imported."""
    root = str(Path(alae_fast.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    script = code + REPORT.format(names=repr(FAST_LAYER))
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_reference_model_step_imports_no_fast_layer():
    assert fast_modules_after(REFERENCE_STEP) == []


def test_the_check_sees_a_fast_import():
    # The same check on a script that does import the fast models must report them, or the
    # test above could pass for a broken reason (a wrong name, another package imported).
    found = fast_modules_after(REFERENCE_STEP + "import alae_fast.models\n")
    assert {"alae_fast.models", "alae_fast.nn", "alae_fast.ops"} <= set(found)


def fast_imports(source: str, package: str = "alae_fast.reference") -> list[str]:
    """Every import of the fast layer in ``source`` (a module of ``package``), at any depth:
    imports made inside functions count too, since a reference run may reach them."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # resolve "from ..x import y" against the package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [n for n in names if any(n == f or n.startswith(f + ".") for f in FAST_LAYER)]
    return found


def test_reference_sources_import_no_fast_layer():
    ref_dir = Path(alae_fast.__file__).resolve().parent / "reference"
    sources = sorted(ref_dir.glob("*.py"))
    assert len(sources) >= 5, sources
    for path in sources:
        assert fast_imports(path.read_text()) == [], path


def test_fast_imports_finds_lazy_and_relative_imports():
    # The shape of the import that reference/model.py used to make inside a function.
    lazy = "def f():\n    from .. import ops\n    return ops\n"
    assert fast_imports(lazy) == ["alae_fast.ops"]
    assert fast_imports("import triton.language as tl\n") == ["triton.language"]
    assert fast_imports("from alae_fast.nn import optimize\n") == ["alae_fast.nn", "alae_fast.nn.optimize"]
    assert fast_imports("from . import losses\nfrom ..utils import x\n") == []
