"""``alae-fast doctor``: passes on this machine, catches a planted wrong kernel, usage errors."""

import json

import pytest
import torch

from alae_fast import doctor
from alae_fast import verified
from alae_fast.cli import main
from alae_fast.ops._spec import STAGES


@pytest.fixture(autouse=True)
def _no_interpreter(monkeypatch):
    # Only the C++ kernels here: interpreted Triton belongs to the TRITON_INTERPRET=1 process.
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("ALAE_FAST_IMPL", raising=False)


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _row(out, case, impl):
    lines = [ln for ln in out.splitlines() if ln.split()[:2] == [case, impl]]
    assert len(lines) == 1, (case, impl, out)
    return lines[0]


def test_doctor_passes_on_cpu_and_writes_json(tmp_path, capsys):
    path = tmp_path / "doctor.json"
    code, out, err = _run(["doctor", "--device", "cpu", "--json", str(path)], capsys)
    assert code == 0, out + err
    for needle in (
        "python",
        "torch",
        "triton",
        "extension  alae_fast._C loads",
        "CUDA kernels: no",
        "verified GPU kernel record",
    ):
        assert needle in out, needle
    # one choice line per op, one PASS line per case (the C++ kernels are the only ones here)
    for op in verified.OPS:
        assert any(ln.split()[:2] == [op, "->"] for ln in out.splitlines()), op
    for case in doctor.CASES:
        assert _row(out, case.name, "cpu").endswith("PASS")
    assert "all 14 checks PASS" in out
    result = json.loads(path.read_text())
    assert result["passed"] and result["device"] == "cpu"
    assert len(result["checks"]) == len(doctor.CASES) == 14
    second = {r["case"] for r in result["checks"] if r["second_order"] is not None}
    assert second == {
        "r1_penalty",
        "bias_act",
        "blur",
        "encode_norm",
        "linear_act",
        "d_loss_r1",
        "d_adv_loss",
        "g_adv_loss",
        "latent_l2",
    }
    assert {r["op"]: r["chosen"] for r in result["ops"]}["d_adv_loss"] == "ref"


def test_planted_wrong_kernels_fail_and_are_named(tmp_path, monkeypatch, capsys):
    # blur's forward kernel off by 1e-3 (its gradient is the same kernel); bias_act's backward
    # kernel off by 1e-3 (forward right: only the gradient checks can see it); adain raising.
    def planted(stage_name):
        stage = STAGES[stage_name]
        real = stage.kernel

        def wrong(*args):
            out = real(*args)
            if isinstance(out, (tuple, list)):
                return type(out)(o * (1 + 1e-3) for o in out)
            return out * (1 + 1e-3)

        monkeypatch.setattr(stage, "kernel", wrong)

    def launch_failure(*args):
        raise RuntimeError("planted launch failure")

    planted("blur")
    planted("bias_act_backward")
    monkeypatch.setattr(STAGES["adain"], "kernel", launch_failure)
    path = tmp_path / "doctor.json"
    code, out, _ = _run(["doctor", "--device", "cpu", "--json", str(path)], capsys)
    assert code == 1
    assert _row(out, "blur", "cpu").endswith("FAIL")
    bias_act = _row(out, "bias_act", "cpu")
    assert bias_act.endswith("FAIL")
    assert "planted launch failure" in _row(out, "adain", "cpu")
    assert _row(out, "encode_norm", "cpu").endswith("PASS")
    # linear_act's backward is bias_act's backward op: the planted kernel shows there too.
    failed = next(ln for ln in out.splitlines() if ln.startswith("FAIL: 4 of 14 checks: "))
    assert sorted(failed.split(": ", 2)[2].split(", ")) == [
        "adain (cpu)",
        "bias_act (cpu)",
        "blur (cpu)",
        "linear_act (cpu)",
    ]
    rows = {r["case"]: r for r in json.loads(path.read_text())["checks"]}
    assert rows["bias_act"]["forward"] <= doctor.OUT_TOL < 1e-3 / 2
    assert rows["bias_act"]["backward"] > 1e-3 / 2
    assert rows["blur"]["forward"] > 1e-3 / 2
    assert not rows["adain"]["passed"] and "planted" in rows["adain"]["error"]


def test_cuda_requested_without_a_gpu_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = _run(["doctor", "--device", "cuda"], capsys)
    assert code == 2 and out == ""
    assert "--device cuda" in err and "torch.cuda.is_available() is False" in err


def test_bad_device_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["doctor", "--device", "tpu"])
    assert info.value.code == 2
    assert "invalid choice: 'tpu'" in capsys.readouterr().err


def test_a_malformed_record_fails_the_doctor_and_is_named(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "verified_kernels.json"
    bad.write_text('{"format": 1, "records": [{"op": "blur"}]}')
    monkeypatch.setattr(verified, "RECORD_PATH", bad)
    monkeypatch.setattr(doctor, "CASES", doctor.CASES[:1])  # the record is what is tested
    verified.clear_cache()
    try:
        code, out, _ = _run(["doctor", "--device", "cpu"], capsys)
    finally:
        verified.clear_cache()
    assert code == 1
    assert f"FAIL: {bad}: records[0] needs a non-empty string 'impl'" in out
