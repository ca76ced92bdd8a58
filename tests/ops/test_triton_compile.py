"""The compile check of scripts/triton_compile_check.py: log parsing, the limits, the
RESULTS.md section, and one real compile for sm_90 without a GPU (a subprocess, since the
check must run with TRITON_INTERPRET unset)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "triton_compile_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("triton_compile_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# A ptxas -v log of one kernel, in the layout of ptxas 12.x.
LOG = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_fwd_kernel' for 'sm_90a'
ptxas info    : Function properties for _fwd_kernel
    7232 bytes stack frame, 15852 bytes spill stores, 29516 bytes spill loads
ptxas info    : Used 168 registers, used 1 barriers, 7232 bytes cumulative stack size
"""


def test_parse_ptxas_log():
    check = _load()
    assert check.parse_ptxas_log(LOG) == (168, 15852, 29516)
    assert check.parse_ptxas_log("no log") == (None, None, None)


def test_planted_shared_memory_overflow_is_a_failure():
    check = _load()
    # 296960 bytes: the float32 128x128x64 3-stage tile that was in the forward's config list.
    over = check.Result("k", "float32", "cfg", 90, shared=296960, registers=32)
    assert check.failures(over) and "232448" in check.failures(over)[0]
    # sm_80's limit is lower than sm_90's: a size between them fails on sm_80 only.
    between = 200 * 1024
    assert check.failures(check.Result("k", "float32", "cfg", 80, shared=between))
    assert not check.failures(check.Result("k", "float32", "cfg", 90, shared=between))
    assert not check.failures(check.Result("k", "float32", "cfg", 90, shared=232448))
    assert check.failures(check.Result("k", "float32", "cfg", 90, error="PTXASError: x"))
    assert check.failures(check.Result("k", "float32", "cfg", 90, shared=None))


def test_results_section_is_replaced_and_the_rest_kept():
    check = _load()
    text = "# Benchmark results\n\nintro\n\n### CPU\n\n| a |\n"
    first = check.replace_section(text, check.SECTION + "\n\nold\n")
    assert first.startswith(text.rstrip("\n")) and first.endswith("old\n")
    second = check.replace_section(first + "\n## Next\n\nkept\n", check.SECTION + "\n\nnew\n")
    assert "old" not in second and "new" in second and second.endswith("## Next\n\nkept\n")
    assert second.startswith(text.rstrip("\n"))


def test_real_compile_for_sm90_without_a_gpu(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--arch",
            "90",
            "--quick",
            "--kernels",
            "latent_l2.bwd",
            "--dtypes",
            "float32",
            "--jobs",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = [line for line in proc.stdout.splitlines() if line.startswith("| latent_l2.bwd")]
    assert len(row) == 1 and row[0].endswith("| ok |")
    registers = int(row[0].split("|")[6])
    assert 0 < registers <= 255
