"""scripts/check_cuda_extension.py: its verdict on made-up op tables, and on the real CPU-only
extension of this environment, which must fail for every op but the allowed exceptions."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "check_cuda_extension.py"

_spec = importlib.util.spec_from_file_location("check_cuda_extension", SCRIPT)
check = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = check  # dataclasses look their module up there
_spec.loader.exec_module(check)


def _op(name, cpu=True, cuda=True):
    return check.OpStatus(name, {"CPU": cpu, "CUDA": cuda})


def _schema_names():
    """The op names defined in csrc/ops.cpp, read from the source, not from the library."""
    text = (REPO_ROOT / "csrc" / "ops.cpp").read_text()
    return set(re.findall(r'm\.def\(\s*"(\w+)\(', text))


def test_all_kernels_present_passes():
    ops = [_op("a_fwd"), _op("b_fwd"), _op("lin_fwd", cuda=False)]
    lines, problems = check.evaluate(ops, {"lin_fwd": "Triton only"})
    assert problems == []
    assert len(lines) == 1 + len(ops)  # header, then one line per op
    assert "allowed: Triton only" in lines[-1]


def test_missing_cuda_kernel_fails_and_names_the_op():
    _, problems = check.evaluate([_op("a_fwd"), _op("b_bwd", cuda=False)], {})
    assert problems == ["b_bwd: no CUDA kernel"]


def test_missing_cpu_kernel_fails():
    _, problems = check.evaluate([_op("a_fwd", cpu=False)], {})
    assert problems == ["a_fwd: no CPU kernel"]


def test_stale_exceptions_fail():
    # An allowed op that gained a CUDA kernel, and one that is no longer registered.
    _, problems = check.evaluate([_op("lin_fwd")], {"lin_fwd": "x", "gone_fwd": "y"})
    assert len(problems) == 2
    assert problems[0].startswith("lin_fwd: has a CUDA kernel now")
    assert problems[1].startswith("gone_fwd: listed in CUDA_EXCEPTIONS but not registered")


def test_no_ops_fails():
    _, problems = check.evaluate([], {})
    assert problems == ["no op registered in the alae_fast_C namespace"]


def test_exceptions_are_only_linear_act():
    # By design only linear_act is Triton-only on GPU; widening the list must be deliberate.
    assert set(check.CUDA_EXCEPTIONS) == {"linear_act_fwd"}
    assert set(check.CUDA_EXCEPTIONS) <= _schema_names()


def test_cpu_only_extension_is_reported_missing_cuda():
    # This environment's extension is a CPU build (torch is a CPU build), so every op but the
    # allowed exceptions must be reported without a CUDA kernel, and the exit status is 1.
    so = check.find_library(REPO_ROOT)
    result = subprocess.run([sys.executable, str(SCRIPT), "--so", str(so)], capture_output=True, text=True, timeout=120)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    expected = _schema_names()
    assert len(expected) >= 20  # the 20 ops of csrc/ops.cpp when this test was written
    reported = set(re.findall(r"^PROBLEM: (\w+): no CUDA kernel$", out, re.MULTILINE))
    assert reported == expected - {"linear_act_fwd"}
    assert f"check_cuda_extension: FAIL: {len(expected)} ops, 0 with a CUDA kernel" in out


def test_missing_library_exits_2(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--so", str(tmp_path / "none.so")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "cannot load the extension" in result.stdout
