"""scripts/record_verified.py: the GPU test run's JUnit XML -> verified-kernels records."""

import importlib.util
import json
from pathlib import Path

import pytest
from support import verified_record

from alae_fast import verified

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "record_verified.py"
spec = importlib.util.spec_from_file_location("record_verified", SCRIPT)
record_verified = importlib.util.module_from_spec(spec)
spec.loader.exec_module(record_verified)

H100 = ["--device", "NVIDIA H100 80GB HBM3", "--capability", "9.0", "--date", "2026-12-01"]


def _case(cls, name, outcome="passed"):
    inner = {
        "passed": "",
        "failed": '<failure message="assert">trace</failure>',
        "error": '<error message="setup">trace</error>',
        "skipped": '<skipped message="no GPU"/>',
    }[outcome]
    return f'<testcase classname="{cls}" name="{name}" time="0.1">{inner}</testcase>'


OPS_CASES = [
    ("tests.ops.test_blur", "test_known_values[cuda-cuda]", "passed"),
    ("tests.ops.test_blur", "test_layouts[1-contiguous-cuda-cuda]", "passed"),
    ("tests.ops.test_blur", "test_known_values[triton-cuda]", "passed"),
    ("tests.ops.test_blur", "test_layouts[1-contiguous-triton-cuda]", "failed"),
    ("tests.ops.test_blur", "test_known_values[cpu-cpu]", "passed"),
    ("tests.ops.test_bias_act", "test_known_values[cuda-cuda]", "passed"),
    ("tests.ops.test_bias_act", "test_known_values[triton-cuda]", "skipped"),
    ("tests.ops.test_adain_conv2d", "test_stats_match_reference[2x3x5x5-cuda-cuda]", "passed"),
    ("tests.ops.test_adain_conv2d", "test_known_values[cuda-cuda]", "error"),
    ("tests.ops.test_adain_conv2d", "test_stats_scale_shift_conv_is_adain_then_conv[up-triton-cuda]", "passed"),
    ("tests.ops.test_lreq_adam", "test_opcheck[triton-cuda]", "passed"),
    ("tests.ops.test_encode_norm", "test_known_values[triton-cpu]", "failed"),
    ("tests.ops.test_dispatch", "test_available_impls_on_cpu", "failed"),
    ("tests.nn.test_modules", "test_blocks[cuda-cuda]", "passed"),
]


def _xml(path, cases):
    body = "".join(_case(*c) for c in cases)
    path.write_text(
        f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest"'
        f' tests="{len(cases)}">{body}</testsuite></testsuites>'
    )
    return path


def _run(tmp_path, cases, *extra, old=None):
    out = tmp_path / "verified_kernels.json"
    if old is not None:
        out.write_text(json.dumps(dict(format=1, records=old)))
    code = record_verified.main(["--junit", str(_xml(tmp_path / "junit.xml", cases)), "--out", str(out), *H100, *extra])
    verified.clear_cache()
    records = verified.load_records(out) if out.exists() else None
    verified.clear_cache()
    return code, records


def _pairs(records, capability="9.0"):
    return {(r["op"], r["impl"]) for r in records if r["capability"] == capability}


EXPECTED = {
    ("blur", "cuda"),
    ("bias_act", "cuda"),
    ("adain_stats", "cuda"),
    ("adain_stats", "triton"),
    ("adain_conv2d", "triton"),
    ("lreq_adam_step_", "triton"),
}


def test_passed_and_failed_cases_give_exactly_the_right_records(tmp_path, capsys):
    code, records = _run(tmp_path, OPS_CASES)
    assert code == 0
    assert _pairs(records) == EXPECTED
    blur = next(r for r in records if (r["op"], r["impl"]) == ("blur", "cuda"))
    assert blur["device"] == "NVIDIA H100 80GB HBM3" and blur["date"] == "2026-12-01"
    assert blur["tests"] == 2 and blur["torch"] and blur["triton"] and blur["cuda"]
    out = capsys.readouterr().out
    assert "blur             triton  not verified: 1 failed" in out
    assert "adain_conv2d     cuda    not verified: 1 failed" in out


def test_existing_records_are_merged_by_gpu_generation(tmp_path):
    def rec(op, impl, capability):
        return verified_record(op, impl, capability, date="2026-11-01", device="x", torch="2.11", triton="3.6")

    old = [
        rec("blur", "cuda", "8.0"),  # another generation: kept
        rec("blur", "triton", "9.0"),  # tested again and failed now: dropped
        rec("g_adv_loss", "cuda", "9.0"),  # not tested in this run: kept
        rec("bias_act", "cuda", "9.0"),
    ]  # tested again, passed: replaced by the new one
    code, records = _run(tmp_path, OPS_CASES, old=old)
    assert code == 0
    assert _pairs(records) == EXPECTED | {("g_adv_loss", "cuda")}
    assert _pairs(records, "8.0") == {("blur", "cuda")}
    assert [r["date"] for r in records if (r["op"], r["impl"]) == ("bias_act", "cuda")] == ["2026-12-01"]


def test_a_failed_model_test_withholds_every_record_of_its_impl(tmp_path):
    cases = OPS_CASES + [("tests.test_models", "test_iteration[lod3-triton-cuda]", "failed")]
    code, records = _run(tmp_path, cases)
    assert code == 0
    assert _pairs(records) == {p for p in EXPECTED if p[1] == "cuda"}


def test_doctor_failures_and_an_interrupted_run_withhold(tmp_path):
    doctor = tmp_path / "doctor.json"
    doctor.write_text(
        json.dumps(
            dict(
                checks=[
                    dict(case="bias_act", op="bias_act", impl="cuda", passed=False),
                    dict(case="blur", op="blur", impl="cuda", passed=True),
                ]
            )
        )
    )
    code, records = _run(tmp_path, OPS_CASES, "--doctor", str(doctor), "--partial")
    assert code == 0
    # bias_act: the doctor failed it; lreq_adam: its file was the last one, maybe cut short.
    assert _pairs(records) == EXPECTED - {("bias_act", "cuda"), ("lreq_adam_step_", "triton")}


def test_no_gpu_case_writes_nothing(tmp_path):
    code, records = _run(tmp_path, [c for c in OPS_CASES if "cuda]" not in c[1]])
    assert code == 1 and records is None


def test_unreadable_xml_is_named(tmp_path):
    bad = tmp_path / "junit.xml"
    bad.write_text("<testsuites>")
    with pytest.raises(SystemExit, match=r"cannot read the JUnit XML .*junit.xml"):
        record_verified.main(["--junit", str(bad), *H100])


def test_gpu_check_script_parses_and_rejects_unknown_options(tmp_path):
    import subprocess

    script = SCRIPT.with_name("gpu_check.sh")
    subprocess.run(["bash", "-n", str(script)], check=True)
    env = {"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")}
    bad = subprocess.run(["bash", str(script), "--fast"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "unknown option '--fast'" in bad.stderr
    assert not (tmp_path / "out").exists()
    usage = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, env=env)
    assert usage.returncode == 0 and "--quick" in usage.stdout and "--dry-run" in usage.stdout
