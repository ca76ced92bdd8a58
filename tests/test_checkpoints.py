"""Checkpoint files: atomic writes, reading errors, official ALAE checkpoints."""

from pathlib import Path

import pytest
import torch
from support import official_file

from alae_fast.checkpoints import CheckpointError
from alae_fast.checkpoints import atomic_save
from alae_fast.checkpoints import load_checkpoint
from alae_fast.checkpoints import load_official
from alae_fast.reference import MLPALAE
from alae_fast.reference import StyleALAE

GOLDEN = torch.load(Path(__file__).parent / "reference" / "data" / "official_golden.pt", weights_only=True)


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_save({"a": torch.ones(2)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"a": Unpicklable()}, path)
    assert torch.equal(torch.load(path)["a"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]  # no temp file left


@pytest.mark.parametrize("name", ["small", "fused"])
def test_load_official_reproduces_official_outputs(tmp_path, name):
    rec = GOLDEN[name]
    path = official_file(tmp_path / "model.pth", rec["state_dict"])
    model = load_official(path, truncation_psi=0.7, truncation_cutoff=4)
    assert isinstance(model, StyleALAE)
    assert model.layer_count == rec["config"]["layer_count"]
    assert model.truncation_psi == 0.7
    case = rec["cases"][-1]
    with torch.no_grad():
        out = model.decoder(rec["styles"], case["lod"], case["blend"], False)
    torch.testing.assert_close(out, case["decoder_det"], rtol=1e-5, atol=1e-6)


def test_load_official_ema_and_missing_module(tmp_path):
    rec = GOLDEN["small"]
    path = official_file(tmp_path / "m.pth", rec["state_dict"], with_ema=True)
    ema = load_official(path, ema=True)
    w = rec["state_dict"]["decoder.const"]
    torch.testing.assert_close(ema.decoder.const, w * 0.5)
    bare = official_file(tmp_path / "bare.pth", rec["state_dict"])
    with pytest.raises(CheckpointError, match="generator_s"):
        load_official(bare, ema=True)


def test_load_official_mlp(tmp_path):
    torch.manual_seed(0)
    src = MLPALAE(latent_size=12, mapping_layers=3)
    path = official_file(tmp_path / "fc.pth", src.state_dict())
    model = load_official(path)
    assert isinstance(model, MLPALAE) and model.latent_size == 12
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encoder(x, 3, 1.0), src.encoder(x, 3, 1.0))


def test_reading_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    official = official_file(tmp_path / "o.pth", GOLDEN["small"]["state_dict"])
    with pytest.raises(CheckpointError, match="use load_official"):
        load_checkpoint(official)
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an official ALAE checkpoint"):
        load_official(tmp_path / "other.pt")
