"""The paper's MNIST model (official branch mnist_ref) and its evaluation protocol: the
same-writers split, the MLP model options, the mnist-mlp / mnist-mlp-master configs, and
``alae-fast eval-mnist --protocol paper``."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from alae_fast.checkpoints import build_model
from alae_fast.cli import main
from alae_fast.data import load_mnist
from alae_fast.data import load_mnist_split
from alae_fast.data import same_writers_order
from alae_fast.evaluate import encode_features
from alae_fast.nn.optimize import optimize
from alae_fast.reference.model import MLPALAE
from alae_fast.train.config import ConfigError
from alae_fast.train.config import load_config

ROOT = Path(__file__).resolve().parents[1]

GOLDEN = Path(__file__).parent / "data" / "mnist_mlp_master_golden.pt"


# -- the same-writers split -----------------------------------------------------------------


def test_same_writers_order_is_pythons_seeded_shuffle():
    state = random.getstate()
    expected = list(range(60000))
    random.seed(0)
    random.shuffle(expected)
    random.setstate(state)
    order = same_writers_order()
    assert order.tolist() == expected
    # known values of python's random.seed(0); random.shuffle(list(range(60000)))
    assert order[:5].tolist() == expected[:5]
    assert sorted(order.tolist()) == list(range(60000))


def test_same_writers_order_leaves_the_global_rng_alone():
    random.seed(123)
    a = random.random()
    random.seed(123)
    same_writers_order()
    assert random.random() == a


def test_load_mnist_split(mnist_dir):
    images, labels = load_mnist("train", mnist_dir)
    order = same_writers_order()
    tr, ytr = load_mnist_split("same-writers", "train", mnist_dir)
    te, yte = load_mnist_split("same-writers", "test", mnist_dir)
    assert tr.shape == (50000, 28, 28) and te.shape == (10000, 28, 28)
    assert torch.equal(tr[:3], images[order[:3]]) and torch.equal(yte[-3:], labels[order[-3:]])
    assert torch.equal(te[0], images[order[50000]])
    dtr, _ = load_mnist_split("different-writers", "train", mnist_dir)
    dte, _ = load_mnist_split("different-writers", "test", mnist_dir)
    assert torch.equal(dtr, images) and dte.shape == (10000, 28, 28)
    with pytest.raises(ValueError, match="split"):
        load_mnist_split("mixed", "train", mnist_dir)


# -- configs --------------------------------------------------------------------------------


def test_paper_config_values():
    cfg = load_config("mnist-mlp")
    m, d, t = cfg.model, cfg.data, cfg.train
    assert (m.kind, m.latent_size, m.layer_count, m.channels) == ("mlp", 50, 4, 1)
    assert (m.mlp_images, m.mapping_f) == ("raw28", "identity")
    assert m.mlp_encoder_slopes == [0.2, 0.2, 0.01] and m.mlp_generator_slopes == [0.01, 0.01]
    assert m.style_mixing_prob is None
    assert (d.dataset, d.resolution, d.split) == ("mnist", 28, "different-writers")
    assert (t.epochs, t.epochs_per_lod, t.lod_batch_sizes) == (400, 0, [128] * 4)
    assert t.learning_rates == [0.003, 0.003, 0.002, 0.002] and t.adam_betas == [0.0, 0.99]
    assert (t.r1_gamma, t.ema_half_life_images) == (10.0, 10000.0)


def test_master_config_is_todays_mnist_mlp():
    cfg = load_config("mnist-mlp-master")
    assert cfg.name == "mnist-mlp-master" and cfg.train.output_dir == "runs/mnist-mlp-master"
    m = cfg.model
    assert (m.mlp_images, m.mapping_f, m.mapping_layers) == ("pad32", "mlp", 6)
    assert m.mlp_encoder_slopes == [0.2] * 3 and m.mlp_generator_slopes == [0.2] * 2
    assert (cfg.data.resolution, cfg.data.split, cfg.train.epochs) == (32, "different-writers", 600)


@pytest.mark.parametrize(
    "override,key",
    [
        ("data.split=mixed-writers", "data.split"),
        ("model.mlp_images=raw32", "model.mlp_images"),
        ("model.mapping_f=none", "model.mapping_f"),
        ("model.mlp_encoder_slopes=[0.2,0.2]", "model.mlp_encoder_slopes"),
        ("model.mlp_generator_slopes=[0.2,1.5]", "model.mlp_generator_slopes[1]"),
        ("data.resolution=32", "data.resolution"),
        ("train.epochs_per_lod=10", "train.epochs_per_lod"),
    ],
)
def test_paper_config_bad_values_are_named(override, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[")):
        load_config("mnist-mlp", [override])


def test_mlp_options_refused_for_style_and_split_for_image_folders():
    with pytest.raises(ConfigError, match="model.mapping_f"):
        load_config("mnist-style", ["model.mapping_f=identity"])
    with pytest.raises(ConfigError, match="model.mlp_images"):
        load_config("mnist-style", ["model.mlp_images=raw28"])
    with pytest.raises(ConfigError, match="data.split"):
        load_config("smoke-rgb32", ["data.split=same-writers"])


# -- the models -----------------------------------------------------------------------------


def test_master_config_builds_todays_model_bit_for_bit():
    """State_dict keys, shapes and seeded initial values, and the float64 outputs of E, F, G and D,
    equal those of the code before the paper options (tests/data/mnist_mlp_master_golden.pt, made
    at commit b5d1315 by build_model(load_config("mnist-mlp").model) with torch seed 0, run in float64)."""
    golden = torch.load(GOLDEN)
    torch.manual_seed(0)
    m = build_model(load_config("mnist-mlp-master").model, truncation=False).eval()
    state = m.state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == golden["keys"]
    for k, v in state.items():
        assert v.double().sum() == golden["sums"][k], k
    # Another CPU sums the products in another order. Each network is a chain of at most 8
    # products of length K <= 1024 (+ bias, + a runtime weight scale); in float64 each rounds
    # within gamma = (K+2)u/(1-(K+2)u), u = 2^-53, of the sum of its terms' magnitudes, and the
    # activations (leaky ReLU, pixel norm, nearest resize) do not enlarge errors. So an output is
    # within 8 gamma M of the exact value, M being the network run on |weights| and |input| (every
    # value then >= 0: the terms' magnitudes); two runs are within twice that of each other.
    k = 1024 + 2
    gamma = k * 2.0**-53 / (1 - k * 2.0**-53)
    m = m.double()
    magnitude = copy.deepcopy(m)
    x, z = golden["x"], golden["z"]
    with torch.no_grad():
        for p in magnitude.parameters():
            p.abs_()
        bound = {
            "e": magnitude.encoder(x.abs(), 3, 1.0),
            "f": magnitude.mapping_f(z.abs()),
            "g": magnitude.decoder(golden["f"].abs(), 3, 1.0, True),
            "d": magnitude.discriminate(golden["e"].abs().unsqueeze(1)),
        }
        for model in (m, optimize(m, "ref")):
            got = {
                "e": model.encoder(x, 3, 1.0),
                "f": model.mapping_f(z),
                "g": model.decoder(golden["f"], 3, 1.0, True),
                "d": model.discriminate(golden["e"].unsqueeze(1)),
            }
            for key, value in got.items():
                tolerance = 2 * 8 * gamma * bound[key]
                assert ((value - golden[key]).abs() <= tolerance).all(), key
                # far below what a changed layer or slope moves (an output changes by a sizeable fraction)
                assert tolerance.max() < 1e-6 * golden[key].abs().max(), key


def test_paper_config_builds_the_mnist_ref_model():
    torch.manual_seed(0)
    m = build_model(load_config("mnist-mlp").model, truncation=False).eval()
    assert isinstance(m, MLPALAE)
    keys = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    # F is the identity (no parameters); E 784-1024-1024-50, G 50-1024-1024-784, D 50-50-50-50
    assert not any(k.startswith("mapping_f.") for k in keys)
    assert keys["encoder.fc_1.weight"] == (1024, 784) and keys["encoder.fc_3.weight"] == (50, 1024)
    assert keys["decoder.fc_1.weight"] == (1024, 50) and keys["decoder.fc_3.weight"] == (784, 1024)
    assert [keys[f"mapping_d.map_blocks.{i}.weight"] for i in range(3)] == [(50, 50)] * 3
    z = torch.randn(3, 50)
    assert torch.equal(m.mapping(z), z)  # w = z, no pixel norm
    with torch.no_grad():
        x = m.generate(3, 1.0, z=z, noise=True)
        assert x.shape == (3, 1, 28, 28)
        w, h = m.encoder.features(torch.rand(3, 1, 28, 28))
        assert w.shape == (3, 50) and h.shape == (3, 1024)
    with pytest.raises(ValueError, match="28x28"):
        m.encoder(torch.rand(2, 1, 32, 32))


def _by_hand(enc, x, slopes):
    """E's output and hidden layer h from its weights, in float64 (a reference Linear stores
    its weight already scaled: y = x W^T + b)."""
    a = x.flatten(1).double()
    outs = []
    for fc, slope in zip((enc.fc_1, enc.fc_2, enc.fc_3), slopes, strict=True):
        a = F.leaky_relu(F.linear(a, fc.weight.double(), fc.bias.double()), slope)
        outs.append(a)
    return outs[2], outs[1]


@pytest.mark.parametrize("fast", [False, True])
def test_h_features_equal_the_hidden_activations_by_hand(fast):
    torch.manual_seed(1)
    m = build_model(load_config("mnist-mlp").model).eval()
    if fast:
        optimize(m, "ref")
    x = torch.rand(5, 1, 28, 28)
    w_hand, h_hand = _by_hand(m.encoder, x, (0.2, 0.2, 0.01))
    w, h = encode_features(m, x, batch_size=2)
    torch.testing.assert_close(h.double(), h_hand, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w.double(), w_hand, rtol=1e-5, atol=1e-5)
    # E's output is w
    torch.testing.assert_close(m.encoder(x), w)


def test_raw28_training_feeds_unit_range_28x28_images(tmp_path, mnist_dir):
    from alae_fast.train.trainer import Trainer

    cfg = load_config(
        "mnist-mlp",
        [
            f"train.output_dir={tmp_path}",
            "data.limit=64",
            "data.split=same-writers",
            "train.lod_batch_sizes=[32]",
            "train.grid_size=4",
            "train.device=cpu",
            "train.impl=ref",
        ],
    )
    t = Trainer(cfg, progress=False, log=lambda msg: None)
    x = t._to_device(t.data.images[:4], 0)
    assert x.shape == (4, 1, 28, 28) and float(x.min()) == 0.0 and float(x.max()) == 1.0
    order = same_writers_order()
    images, _ = load_mnist("train", mnist_dir)
    assert torch.equal(t.data.images[:5, 0], images[order[:5]])
    assert torch.equal(t.data.fixed[:2, 0], images[order[50000:50002]])
    assert t.data.size == 64


# -- eval-mnist --protocol paper ------------------------------------------------------------


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """Two steps of the paper model (latent 16) on 64 same-writers images: its checkpoint."""
    from conftest import MNIST_DIR

    from alae_fast.train.trainer import Trainer

    out = tmp_path_factory.mktemp("paper_run")
    cfg = load_config(
        "mnist-mlp",
        [
            f"train.output_dir={out}",
            "data.limit=64",
            "data.split=same-writers",
            "model.latent_size=16",
            "train.lod_batch_sizes=[32]",
            "train.max_steps=2",
            "train.grid_size=4",
            "train.device=cpu",
            f"data.path={MNIST_DIR}",
        ],
    )
    Trainer(cfg, progress=False, log=lambda msg: None).run()
    return out / "checkpoint.pt"


def test_eval_paper_protocol_end_to_end(paper_run, mnist_dir, tmp_path, capsys):
    out_json, dump = tmp_path / "r.json", tmp_path / "f.npz"
    args = ["eval-mnist", str(paper_run), "--protocol", "paper", "--limit", "40"]
    assert main([*args, "--json", str(out_json), "--dump", str(dump)]) == 0
    printed = capsys.readouterr().out
    assert "| w (E's output) |" in printed and "same writers linear SVM" in printed and "model weights" in printed
    result = json.loads(out_json.read_text())
    assert set(result) == {"different", "same"}
    for split in result.values():
        assert set(split) == {"w", "h"}
        for accs in split.values():
            assert set(accs) == {"1nn", "svm"} and all(0.0 <= a <= 100.0 for a in accs.values())
    arrays = np.load(dump)
    expected = {f"{s}_{f}_{p}" for s in ("different", "same") for f in ("w", "h") for p in ("train", "test")}
    expected |= {f"{s}_{p}_labels" for s in ("different", "same") for p in ("train", "test")}
    assert set(arrays.files) == expected
    for s in ("different", "same"):
        assert arrays[f"{s}_w_train"].shape == (40, 16) and arrays[f"{s}_h_test"].shape == (40, 1024)
        assert arrays[f"{s}_train_labels"].shape == (40,)
    # the labels are the split's, the codes those of the live encoder
    _, same_test_y = load_mnist_split("same-writers", "test", mnist_dir)
    assert np.array_equal(arrays["same_test_labels"], same_test_y[:40].numpy())
    ckpt = torch.load(paper_run, weights_only=False)
    model = build_model(load_config("mnist-mlp", ["model.latent_size=16"]).model).eval()
    model.load_state_dict(ckpt["model"])
    te, _ = load_mnist_split("same-writers", "test", mnist_dir)
    w, h = encode_features(model, te[:40].unsqueeze(1).float() / 255)
    np.testing.assert_allclose(arrays["same_w_test"], w.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(arrays["same_h_test"], h.numpy(), rtol=1e-5, atol=1e-6)
    # an independent 1-NN (scikit-learn) on the dumped features agrees with the JSON
    from sklearn.neighbors import KNeighborsClassifier

    for s in ("different", "same"):
        for f in ("w", "h"):
            knn = KNeighborsClassifier(n_neighbors=1).fit(arrays[f"{s}_{f}_train"], arrays[f"{s}_train_labels"])
            acc = 100.0 * np.mean(knn.predict(arrays[f"{s}_{f}_test"]) == arrays[f"{s}_test_labels"])
            assert result[s][f]["1nn"] == pytest.approx(acc)


def _recompute_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("recompute", ROOT / "scripts" / "mnist_paper_recompute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_one_split_equals_that_column_of_both(paper_run, mnist_dir, tmp_path, capsys):
    both, same = tmp_path / "both.json", tmp_path / "same.json"
    args = ["eval-mnist", str(paper_run), "--protocol", "paper", "--limit", "30"]
    assert main([*args, "--json", str(both)]) == 0
    capsys.readouterr()
    assert main([*args, "--splits", "same", "--json", str(same), "--dump", str(tmp_path / "same.npz")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(same.read_text()) == {"same": json.loads(both.read_text())["same"]}
    assert "| w (E's output) | - | - |" in out and "Note:" not in out  # the model's own split: no warning
    assert sorted(line.split(":")[0] for line in err.splitlines() if "writers," in line) == sorted(
        f"same writers, {f}, {c}" for f in ("w", "h") for c in ("1nn", "svm")
    )
    assert all(k.startswith("same_") for k in np.load(tmp_path / "same.npz").files)
    recompute = _recompute_script()
    assert recompute.main([str(tmp_path / "same.npz"), str(same), "--data", str(mnist_dir), "--tolerance", "1"]) == 0
    assert capsys.readouterr().out.count("labels match") == 2


def test_recompute_script_agrees_with_the_evaluation(paper_run, mnist_dir, tmp_path, capsys):
    """scripts/mnist_paper_recompute.py (numpy 1-NN, a Newton-CG primal SVM, the split from the IDX
    files by hand) against eval-mnist; on 40 images liblinear's dual solver converges, so the
    predictions, not only the rates, must be the same: the tolerance is below one image (2.5 points)."""
    recompute = _recompute_script()
    out_json, dump = tmp_path / "r.json", tmp_path / "f.npz"
    assert (
        main(
            [
                "eval-mnist",
                str(paper_run),
                "--protocol",
                "paper",
                "--limit",
                "40",
                "--json",
                str(out_json),
                "--dump",
                str(dump),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert recompute.main([str(dump), str(out_json), "--data", str(mnist_dir), "--tolerance", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("labels match") == 4 and "all within tolerance" in out
    # a wrong number is caught
    result = json.loads(out_json.read_text())
    result["same"]["h"]["svm"] += 5.0
    out_json.write_text(json.dumps(result))
    assert recompute.main([str(dump), str(out_json), "--data", str(mnist_dir), "--tolerance", "1"]) == 1


def test_eval_weights_default_follows_the_protocol(paper_run, mnist_dir, capsys):
    assert main(["eval-mnist", str(paper_run), "--protocol", "paper", "--limit", "20", "--weights", "ema"]) == 0
    assert "ema weights" in capsys.readouterr().out
    # the master protocol (the default) still runs, on the raw28 model's own image convention
    assert main(["eval-mnist", str(paper_run), "--limit", "20"]) == 0
    assert "ema weights" in capsys.readouterr().out
    assert main(["eval-mnist", str(paper_run), "--limit", "20", "--dump", "x.npz"]) == 2
    assert "--dump and --splits need --protocol paper" in capsys.readouterr().err


@pytest.mark.parametrize("splits", [(), ("other",), ("same", "writers")])
def test_paper_protocol_bad_splits_are_named(paper_run, splits):
    from alae_fast.evaluate import evaluate_mnist_paper

    with pytest.raises(ValueError, match=r"splits must be a non-empty subset of \['different', 'same'\]"):
        evaluate_mnist_paper(paper_run, limit=4, splits=splits)


def test_paper_protocol_needs_the_mlp_model(style_run, mnist_dir):
    from alae_fast.evaluate import evaluate_mnist_paper

    with pytest.raises(ValueError, match="MLP model"):
        evaluate_mnist_paper(style_run / "checkpoint.pt", limit=4)
