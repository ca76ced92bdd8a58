"""The network adapters without their libraries: weights in torch.hub's cache, offline mode,
failed downloads, and the message when torch-fidelity / lpips cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from alae_fast.metrics import MetricsSetupError
from alae_fast.metrics import ensure_weights
from alae_fast.metrics import inception_features
from alae_fast.metrics import lpips_distance

URL = "https://example.invalid/weights/model-123.pth"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A temporary TORCH_HOME; returns the checkpoints folder torch.hub uses under it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("ALAE_FAST_OFFLINE", raising=False)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def no_download(url, dst, *args, **kwargs):
    raise AssertionError(f"tried to download {url}")


def test_present_file_is_returned_without_network(hub, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    hub.mkdir(parents=True)
    (hub / "model-123.pth").write_bytes(b"weights")
    path = ensure_weights("model-123.pth", URL)
    assert path == hub / "model-123.pth"
    assert path.read_bytes() == b"weights"


def test_offline_missing_file_names_file_url_and_folder(hub, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setenv("ALAE_FAST_OFFLINE", "1")
    with pytest.raises(MetricsSetupError) as info:
        ensure_weights("model-123.pth", URL)
    msg = str(info.value)
    assert "model-123.pth" in msg and URL in msg and str(hub) in msg and "TORCH_HOME" in msg
    assert isinstance(info.value, RuntimeError)


def test_failed_download_raises_and_leaves_no_partial_file(hub, monkeypatch):
    def broken(url, dst, *args, **kwargs):
        Path(dst).write_bytes(b"half a file")
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", broken)
    with pytest.raises(MetricsSetupError) as info:
        ensure_weights("model-123.pth", URL)
    msg = str(info.value)
    assert "network unreachable" in msg and "model-123.pth" in msg and URL in msg and str(hub) in msg
    assert list(hub.iterdir()) == []


def test_download_lands_in_the_cache(hub, monkeypatch):
    calls = []

    def fake(url, dst, *args, **kwargs):
        calls.append(url)
        Path(dst).write_bytes(b"downloaded")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    monkeypatch.setenv("ALAE_FAST_OFFLINE", "0")  # "0" is not offline
    path = ensure_weights("model-123.pth", URL)
    assert calls == [URL]
    assert path == hub / "model-123.pth" and path.read_bytes() == b"downloaded"
    assert [p.name for p in hub.iterdir()] == ["model-123.pth"]
    assert ensure_weights("model-123.pth", URL) == path and calls == [URL]  # second call: cached


def check_setup_message(err: MetricsSetupError, original: str) -> None:
    msg = str(err)
    assert 'pip install "alae_fast[metrics]"' in msg
    assert torch.__version__ in msg and "torchvision" in msg
    assert original in msg


def test_missing_torch_fidelity(monkeypatch, hub):
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    with pytest.raises(MetricsSetupError) as info:
        inception_features("cpu")
    check_setup_message(info.value, "torch_fidelity")
    assert isinstance(info.value.__cause__, ImportError)


def test_missing_lpips(monkeypatch, hub):
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setitem(sys.modules, "lpips", None)
    with pytest.raises(MetricsSetupError) as info:
        lpips_distance("cpu")
    check_setup_message(info.value, "lpips")


class BrokenTorchvision:
    """An import hook that fails like a torchvision built for another torch does."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("lpips", "torch_fidelity", "torchvision"):
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


@pytest.mark.parametrize("make", [inception_features, lpips_distance])
def test_broken_torchvision_build(monkeypatch, hub, make):
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    for name in ("lpips", "torch_fidelity", "torch_fidelity.feature_extractor_inceptionv3", "torchvision"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, "meta_path", [BrokenTorchvision(), *sys.meta_path])
    with pytest.raises(MetricsSetupError) as info:
        make("cpu")
    check_setup_message(info.value, "torchvision::nms does not exist")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_package_import_stays_light():
    code = (
        "import sys, alae_fast.metrics; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch_fidelity', 'lpips', 'torchvision') "
        "or m.startswith('scipy.linalg')))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"


def fake_module(monkeypatch, name: str, **attrs) -> None:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


def test_inception_adapter_wiring(monkeypatch, hub):
    """With a fake torch-fidelity: the extractor is built as documented, from the cached weights,
    in eval mode, and the adapter repeats grey images to RGB and returns [N, 2048]."""
    built = {}

    class FakeInception(torch.nn.Module):
        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__()
            built.update(name=name, features_list=features_list, path=feature_extractor_weights_path)
            assert Path(feature_extractor_weights_path).read_bytes() == b"inception"
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            assert x.dtype == torch.uint8 and x.shape[1] == 3 and not self.training
            return (x.float().mean(dim=(1, 2, 3))[:, None].expand(-1, 2048) * self.scale,)

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    fake_module(monkeypatch, "torch_fidelity")
    fake_module(monkeypatch, "torch_fidelity.feature_extractor_inceptionv3", FeatureExtractorInceptionV3=FakeInception)
    hub.mkdir(parents=True)
    (hub / "weights-inception-2015-12-05-6726825d.pth").write_bytes(b"inception")
    features = inception_features("cpu")
    assert built == dict(
        name="inception-v3-compat", features_list=["2048"], path=str(hub / "weights-inception-2015-12-05-6726825d.pth")
    )
    grey = torch.full((5, 1, 8, 8), 7, dtype=torch.uint8)
    out = features(grey)
    assert out.shape == (5, 2048) and torch.all(out == 7)
    with pytest.raises(ValueError, match="uint8"):
        features(grey.float())


def test_inception_adapter_offline_without_weights(monkeypatch, hub):
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setenv("ALAE_FAST_OFFLINE", "1")
    fake_module(monkeypatch, "torch_fidelity")
    fake_module(monkeypatch, "torch_fidelity.feature_extractor_inceptionv3", FeatureExtractorInceptionV3=object)
    with pytest.raises(MetricsSetupError, match="weights-inception-2015-12-05-6726825d.pth"):
        inception_features("cpu")


def test_lpips_adapter_wiring(monkeypatch, hub):
    """With a fake lpips: the VGG16 file is in torch.hub's cache before LPIPS(net="vgg") is built
    (torchvision looks there), and the adapter gives one distance per pair from RGB inputs."""
    built = {}

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, net="alex", verbose=True, **kwargs):
            super().__init__()
            built.update(net=net, verbose=verbose, vgg_cached=(hub / "vgg16-397923af.pth").is_file())

        def forward(self, a, b):
            assert a.shape[1] == 3 and b.shape[1] == 3 and not self.training
            return (a - b).pow(2).mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)

    downloads = []

    def fake_download(url, dst, *args, **kwargs):
        downloads.append(url)
        Path(dst).write_bytes(b"vgg")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    fake_module(monkeypatch, "lpips", LPIPS=FakeLPIPS)
    distance = lpips_distance("cpu")
    assert downloads == ["https://download.pytorch.org/models/vgg16-397923af.pth"]
    assert built == dict(net="vgg", verbose=False, vgg_cached=True)
    a = torch.zeros(4, 1, 6, 6)
    b = torch.full((4, 1, 6, 6), 0.5)
    d = distance(a, b)
    assert d.shape == (4,) and torch.allclose(d, torch.full((4,), 0.25))
