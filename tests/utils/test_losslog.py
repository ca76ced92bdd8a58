"""Tests for alae_fast.utils.losslog."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from alae_fast.utils.losslog import LossLog
from alae_fast.utils.losslog import RunningMeans


def test_append_rows_round_trip(tmp_path):
    log = LossLog(tmp_path / "sub" / "losses.csv")
    log.append(10, 0.5, {"loss_g": 1.25, "loss_d": -0.1})
    log.append(20, 1.0, {"loss_d": 0.3, "loss_g": torch.tensor(2.0)})
    assert log.rows() == [
        {"step": 10, "epoch": 0.5, "loss_d": -0.1, "loss_g": 1.25},
        {"step": 20, "epoch": 1.0, "loss_d": 0.3, "loss_g": 2.0},
    ]
    assert isinstance(log.rows()[0]["step"], int)
    lines = (tmp_path / "sub" / "losses.csv").read_text().splitlines()
    assert lines[0] == "step,epoch,loss_d,loss_g"
    assert len(lines) == 3


def test_rows_of_missing_file(tmp_path):
    assert LossLog(tmp_path / "none.csv").rows() == []


def test_resume_appends_single_header(tmp_path):
    path = tmp_path / "losses.csv"
    LossLog(path).append(1, 0.0, {"a": 1.0, "b": 2.0})
    resumed = LossLog(path)
    resumed.append(2, 0.1, {"b": 4.0, "a": 3.0})
    lines = path.read_text().splitlines()
    assert lines == ["step,epoch,a,b", "1,0.0,1.0,2.0", "2,0.1,3.0,4.0"]
    assert [r["step"] for r in resumed.rows()] == [1, 2]


def test_key_mismatch_raises(tmp_path):
    path = tmp_path / "losses.csv"
    log = LossLog(path)
    log.append(1, 0.0, {"a": 1.0})
    with pytest.raises(ValueError, match="do not match"):
        log.append(2, 0.0, {"a": 1.0, "b": 2.0})
    with pytest.raises(ValueError, match="do not match"):
        LossLog(path).append(2, 0.0, {"c": 1.0})
    assert len(log.rows()) == 1


def test_reserved_names_rejected(tmp_path):
    with pytest.raises(ValueError, match="step"):
        LossLog(tmp_path / "l.csv").append(1, 0.0, {"step": 1.0})


def test_truncate_after(tmp_path):
    log = LossLog(tmp_path / "losses.csv")
    for step in (10, 20, 30):
        log.append(step, step / 10, {"a": float(step)})
    log.truncate_after(20)
    assert [r["step"] for r in log.rows()] == [10, 20]
    log.append(30, 3.0, {"a": 99.0})
    assert log.rows()[-1] == {"step": 30, "epoch": 3.0, "a": 99.0}


def test_plot_writes_png(tmp_path):
    log = LossLog(tmp_path / "losses.csv")
    for step in range(5):
        log.append(step, step / 5, {"loss_d": 1.0 / (step + 1), "loss_g": float(step)})
    out = log.plot(tmp_path / "plots" / "losses.png")
    assert out == tmp_path / "plots" / "losses.png"
    with Image.open(out) as im:
        assert im.format == "PNG"
        width, height = im.size
    assert width > 100 and height > 100
    assert [p.name for p in out.parent.iterdir()] == ["losses.png"]  # no temp left
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []  # figure closed


def test_plot_empty_log(tmp_path):
    out = LossLog(tmp_path / "losses.csv").plot(tmp_path / "empty.png")
    with Image.open(out) as im:
        assert im.format == "PNG"


def test_running_means():
    rm = RunningMeans()
    rm.update({"a": 1.0, "b": 10.0})
    rm.update({"a": 2.0})
    rm.update({"a": torch.tensor(6.0), "b": 20.0})
    assert rm.means() == {"a": 3.0, "b": 15.0}
    assert rm.counts() == {"a": 3, "b": 2}
    rm.reset()
    assert rm.means() == {}
    rm.update({"b": -4.0})
    assert rm.means() == {"b": -4.0}
