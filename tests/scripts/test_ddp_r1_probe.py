"""scripts/ddp_r1_probe.py under torchrun (2 gloo ranks on CPU): the manual all_reduce of the E,D
gradients, R1 double backward included, equals the single-process full-batch float64 gradient,
its no-divide control does not, and every DDP variant gets a verdict."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "ddp_r1_probe.py"

_spec = importlib.util.spec_from_file_location("ddp_r1_probe", SCRIPT)
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)

VERDICTS = {"right", "wrong", "raised", "hung"}


def tolerance(res: dict) -> float:
    """Bound on the normwise error max_j |g_j - truth_j| / max_j S_j, S_j = mean_i |g_ij| over the
    per-sample gradients (the probe's error measure), from float64 rounding alone.

    A computed sum of n terms differs from the exact one by at most n * eps * sum|terms|
    (gamma_n), so two summation orders differ by at most 2 * n * eps * sum|terms|. The two ways
    differ only in order: the batch is split between ranks (then summed by the all_reduce) and
    the per-rank kernels may block differently. Every gradient element is reached through at
    most 3 passes (forward, backward, the R1 double backward) of at most P stages (P = the
    number of E,D parameter tensors bounds the number of parametrised layers); no stage sums
    more than n = batch * R^2 * maxf * 9 terms (batch x pixels x channels x 3x3 taps bounds every
    contraction in E and in D's small linears). To first order the stage errors add, each
    scaled by its own sum|terms|, which we bound by max_j S_j (the batch-level sum|terms| of
    the final reduction; no stage of these tiny float64 nets amplifies beyond the counting
    factors). Hence tol = 2 * 3 * P * n * eps64 (about 3e-9 here; measured ~1e-15). A scheme that
    forgets the division by the world size, or a rank's share, is off by O(max|truth| / max S),
    about 1 here.
    """
    c = res["config"]
    n = c["batch"] * res["resolution"] ** 2 * c["maxf"] * 9
    return 2 * 3 * res["ed_param_tensors"] * n * torch.finfo(torch.float64).eps


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "probe.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT)]
    cmd += ["--no-timing", "--json", str(out), "--variant-timeout", "30"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def _variant(res: dict, name: str) -> dict:
    found = [v for v in res["variants"] if v["name"] == name]
    assert len(found) == 1, f"{name}: {len(found)} records"
    return found[0]


@pytest.mark.parametrize("name", ["manual", "manual_accum"])
def test_manual_all_reduce_matches_full_batch(result, name):
    v = _variant(result, name)
    tol = tolerance(result)
    assert v["verdict"] == "right"
    assert len(v["errors_per_iteration"]) == 2
    assert max(v["errors_per_iteration"]) <= tol, (v["errors_per_iteration"], tol)


@pytest.mark.parametrize("name", ["manual_no_divide", "manual_no_divide_accum"])
def test_no_divide_control_is_caught(result, name):
    # The same check must reject an all_reduce without the 1/world factor.
    v = _variant(result, name)
    assert v["verdict"] == "wrong"
    assert min(v["errors_per_iteration"]) > 1e3 * tolerance(result)


def test_truth_is_not_trivial(result):
    # A zero truth would make every comparison pass; the scale S bounds |truth| from above.
    assert result["truth_max_abs"] > 0
    assert result["truth_max_abs"] <= result["scale_max"] * (1 + 1e-12)


def test_every_ddp_variant_has_a_verdict(result):
    expected = []
    for name, (_, _, sync_it1) in probe.DDP_VARIANTS.items():
        for sfx in ("", "_accum"):
            if sync_it1 and not sfx:
                continue  # with one micro-batch it is the same run as its plain twin
            expected += [name + sfx, name + sfx + "_no_r1"]
    tol = tolerance(result)
    for name in expected:
        v = _variant(result, name)
        assert v["verdict"] in VERDICTS, (name, v["verdict"])
        if v["verdict"] in ("raised", "hung"):
            assert v["message"] and v["where"], name
        else:
            assert len(v["errors_per_iteration"]) == 2, name
        if v["verdict"] == "right":  # the probe's verdict agrees with the derived bound
            assert max(v["errors_per_iteration"]) <= tol, (name, v["errors_per_iteration"], tol)


def test_hang_is_caught(result):
    # rank 0 all_reduces alone: the per-variant group timeout must report it, not stall the probe.
    v = _variant(result, "control_hang")
    assert v["verdict"] == "hung"
    assert v["where"]["stage"] == "all_reduce on rank 0 only"
