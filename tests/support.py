"""Shared checks of the op, module and model tests: which implementations to test, tolerances."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alae_fast.ops import _dispatch

# (impl, device) pairs under test. The C++ CPU kernels are required (the package build makes
# them), Triton runs interpreted on CPU; the CUDA pairs join when a GPU is present.
IMPL_DEVICES = [("cpu", "cpu"), ("triton", "cpu")]
if torch.cuda.is_available():
    IMPL_DEVICES += [("cuda", "cuda"), ("triton", "cuda")]

impl_device = pytest.mark.parametrize("impl,device", IMPL_DEVICES, ids=[f"{i}-{d}" for i, d in IMPL_DEVICES])

# Float32 parity with TF32 off: outputs 1e-5 relative, gradients 1e-4 (the project standard).
FP32_OUT = dict(rtol=1e-5, atol=1e-6)
FP32_GRAD = dict(rtol=1e-4, atol=1e-6)


def op_overloads(name: str) -> tuple:
    """The registered overloads of op ``name`` and of its backward op."""
    return getattr(torch.ops.alae_fast, name).default, getattr(torch.ops.alae_fast, f"{name}_backward").default


def require(impl: str, device: str) -> None:
    """Fail (not skip) when an implementation that must exist here is missing."""
    reason = _dispatch.unavailable_reason(impl, device)
    assert reason is None, f"impl {impl!r} on {device} is unavailable: {reason}"


def assert_low_precision_close(ours, ref_same_dtype, truth) -> None:
    """bf16/fp16 parity: our error against the float64 truth is within twice PyTorch's own
    error in the same dtype, with half an ulp of the largest value as the floor (PyTorch's
    error can be zero by luck, ours cannot be asked to beat rounding)."""
    truth = truth.double()
    ours_err = (ours.double() - truth).abs().max().item()
    torch_err = (ref_same_dtype.double() - truth).abs().max().item()
    half_ulp = 0.5 * torch.finfo(ours.dtype).eps * truth.abs().max().item()
    assert ours_err <= 2 * max(torch_err, half_ulp), (
        f"{ours.dtype} error {ours_err:.3g} exceeds twice PyTorch's {torch_err:.3g} (floor {half_ulp:.3g})"
    )


def assert_matches_ref(fn, ref_fn, args, wrt=None) -> torch.Tensor:
    """``fn(*args)`` against the reference twin ``ref_fn(*args)``: values within FP32_OUT, and
    the gradients of their sums with respect to ``wrt`` (default: ``args``) within FP32_GRAD.
    Returns ``fn``'s output."""
    wrt = list(args) if wrt is None else list(wrt)
    ours, ref = fn(*args), ref_fn(*args)
    torch.testing.assert_close(ours, ref, **FP32_OUT)
    for g, rg in zip(torch.autograd.grad(ours.sum(), wrt), torch.autograd.grad(ref.sum(), wrt), strict=True):
        torch.testing.assert_close(g, rg, **FP32_GRAD)
    return ours


def assert_compiled_matches_ref(fn, ref_fn, args, wrt=None) -> None:
    """``assert_matches_ref`` with ``fn`` under ``torch.compile(fullgraph=True)`` and the
    reference twin run eagerly."""
    assert_matches_ref(torch.compile(fn, fullgraph=True), ref_fn, args, wrt)


def r1_chain(critics, make_x, param_shapes, device) -> list[tuple]:
    """The R1 path through each of ``critics`` (ours, then the reference twin): from a fresh
    ``x = make_x()`` and parameters N(0, 1/4) (seeds 2, 3, ...), the logits
    ``critic(x, *params)``, the penalty |d sum(logits) / dx|^2 (gradient with create_graph) and
    its backward. Per critic: (penalty, input gradient, *parameter gradients)."""
    results = []
    for critic in critics:
        x = make_x().requires_grad_()
        params = [(randn(s, device, seed=2 + i) * 0.5).requires_grad_() for i, s in enumerate(param_shapes)]
        (grads,) = torch.autograd.grad(critic(x, *params).sum(), x, create_graph=True)
        penalty = grads.square().sum()
        penalty.backward()
        results.append((penalty.detach(), grads.detach(), *[p.grad for p in params]))
    return results


def assert_r1_chain_close(ours, ref, layout=None) -> None:
    """Two ``r1_chain`` results: the penalty within FP32_OUT, the input gradient and every
    parameter gradient present, not all zero, and within FP32_GRAD; for a ``layout`` of
    channels_last, both input gradients in it."""
    if layout == "channels_last":
        assert ours[1].is_contiguous(memory_format=CL) and ref[1].is_contiguous(memory_format=CL)
    torch.testing.assert_close(ours[0], ref[0], **FP32_OUT)
    for g, rg in zip(ours[1:], ref[1:]):
        assert g is not None and rg is not None and rg.abs().max() > 0
        torch.testing.assert_close(g, rg, **FP32_GRAD)


def _outputs(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


def assert_low_precision_op_close(op, ref_op, inputs, upstream=None) -> None:
    """bf16/fp16 parity of ``op(*inputs)`` (a tensor or a tuple) and of its gradients w.r.t.
    ``inputs`` under ``upstream`` (a tensor or tuple; None for a scalar): each keeps the dtype
    and is within ``assert_low_precision_close`` of ``ref_op`` in that dtype against ``ref_op``
    on float64 copies of the inputs."""
    dtype = inputs[0].dtype
    inputs64 = [t.detach().double().requires_grad_() for t in inputs]
    ours, ref, truth = _outputs(op(*inputs)), _outputs(ref_op(*inputs)), _outputs(ref_op(*inputs64))
    for o, r, t in zip(ours, ref, truth, strict=True):
        assert o.dtype == dtype
        assert_low_precision_close(o, r, t)
    ups = None if upstream is None else _outputs(upstream)
    up_low = None if ups is None else tuple(u.to(dtype) for u in ups)
    up64 = None if ups is None else tuple(u.double() for u in ups)
    for g, rg, tg in zip(
        torch.autograd.grad(ours, inputs, up_low),
        torch.autograd.grad(ref, inputs, up_low),
        torch.autograd.grad(truth, inputs64, up64),
        strict=True,
    ):
        assert g.dtype == dtype
        assert_low_precision_close(g, rg, tg)


CL = torch.channels_last
LAYOUTS = ["contiguous", "non-contiguous", "channels_last"]


def assert_in_layout(tensors, layout) -> None:
    """Each tensor is channels_last (and not contiguous) where ``layout`` is, else contiguous:
    the layout a kernel that read its input in ``layout`` writes."""
    for t in tensors:
        if layout == "channels_last":
            assert t.is_contiguous(memory_format=CL) and not t.is_contiguous()
        else:
            assert t.is_contiguous()


def shape_id(shape) -> str:
    return "x".join(map(str, shape))


def randn(shape, device, dtype=torch.float32, seed=0, scale=1.0) -> torch.Tensor:
    """Seeded N(0, scale^2) drawn in float64 on the CPU: the same numbers for every device and
    dtype."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(device, dtype)


def logits(n, device, dtype=torch.float32, seed=0) -> torch.Tensor:
    """[n] critic logits of a realistic spread, N(0, 3^2)."""
    return randn(n, device, dtype, seed, scale=3.0)


def image(shape, layout, device, dtype=torch.float32, seed=0) -> torch.Tensor:
    """[N, C, H, W] in ``layout``; non-contiguous is a transposed [N, C, W, H]."""
    n, c, h, w = shape
    if layout == "non-contiguous":
        x = randn((n, c, w, h), device, dtype, seed).transpose(2, 3)
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=CL)
        return x
    x = randn(shape, device, dtype, seed)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
        assert not x.is_contiguous() and x.is_contiguous(memory_format=CL)
    return x


# ---- files the package reads --------------------------------------------------------------------


def verified_record(op, impl, capability="9.0", date="2026-12-01", **fields) -> dict:
    """One record of the verified-kernels file, from a pretended H100 run; ``fields`` override
    the other keys."""
    record = dict(
        op=op,
        impl=impl,
        device="NVIDIA H100 80GB HBM3",
        capability=capability,
        torch="2.11.0+cu130",
        triton="3.6.0",
        cuda="13.0",
        date=date,
    )
    return record | fields


def official_file(path, state_dict, with_ema=False):
    """An official-format checkpoint (Checkpointer.save layout) from a Model state_dict."""
    models = {}
    for official, attr in (
        ("generator", "decoder"),
        ("discriminator", "encoder"),
        ("mapping_fl", "mapping_f"),
        ("mapping_tl", "mapping_d"),
        ("dlatent_avg", "dlatent_avg"),
    ):
        sub = {k[len(attr) + 1 :]: v for k, v in state_dict.items() if k.startswith(attr + ".")}
        models[official] = sub
        if with_ema and official != "dlatent_avg":
            models[official + "_s"] = {k: v * 0.5 for k, v in sub.items()}
    torch.save({"models": models, "auxiliary": {"scheduler": {"last_epoch": 3}}}, path)
    return path


# ---- float32 reorder bounds for whole networks -------------------------------------------------
# Two float32 evaluations of the same network on different CPUs (AVX2 vs AVX-512, another
# oneDNN/MKL kernel, another thread count) sum in different orders. Rounding-error model
# (Higham & Mary, "A new approach to probabilistic rounding error analysis", 2019): a sum of K
# terms carries an error of about sqrt(K) * u * sum|terms|, u = 2**-24, since the K roundings
# are independent and add in quadrature (K * u is the worst case, never approached by the
# vectorised sums of BLAS/oneDNN). In these networks every reduction is followed by an
# equalized-learning-rate layer or a normalisation that keeps activations of the output's
# order, so each reduction stage contributes at most about sqrt(K) * u * max|output| and the
# stages add up (linearly: a worst case over their signs). One evaluation's error is then
# below u * max|y| * S with S = sum over stages of sqrt(K); two evaluations differ by at most
# twice that. The stages are counted by hooks while the network runs (see ReductionBudget).
FP32_UNIT_ROUNDOFF = 2.0**-24


class ReductionBudget:
    """Counts S = sum of sqrt(K) over the reductions a network makes while it runs.

    Forward: each equalized Linear/Conv2d sums K = fan-in terms; each DecodeBlock/EncodeBlock
    takes two instance-norm statistics over H*W pixels; Blur sums 9 terms; pixel norm sums the
    latent. Each of ``backward`` backward passes (1 for a loss's gradients, 2 for the R1 path:
    the penalty's input gradient, then the gradient through it) adds, per layer, the input
    gradient's reduction (K = fan-out) and the weight gradient's (K = batch * output pixels),
    and per norm or blur its forward count again. Use as a context manager around the forward.
    """

    def __init__(self, module: torch.nn.Module, backward: int = 0):
        from alae_fast.reference import layers
        from alae_fast.reference import networks

        self.total = 0.0
        self._handles = []
        kinds = {
            layers.Linear: self._dense,
            layers.Conv2d: self._dense,
            networks.DecodeBlock: self._decode_norms,
            networks.EncodeBlock: self._encode_norms,
            layers.Blur: self._blur,
            networks.MappingF: self._pixel_norm,
        }
        self.backward = backward
        for m in module.modules():
            for kind, count in kinds.items():
                if isinstance(m, kind):
                    self._handles.append(m.register_forward_hook(self._hook(count)))
                    break

    def _hook(self, count):
        def hook(m, inputs, output):
            self.total += count(m, inputs, output)

        return hook

    def _dense(self, m, inputs, output):
        w = m.weight
        fan_in = w[0].numel() if w.dim() > 1 else 1
        s = fan_in**0.5
        fan_out = w.shape[0] * (w[0, 0].numel() if w.dim() > 2 else 1)
        pixels = output.numel() / output.shape[1]  # batch * output pixels of one channel
        return s + self.backward * (fan_out**0.5 + pixels**0.5)

    def _norm_stats(self, x):
        # Two instance-norm statistics over the H*W pixels of the normalised maps.
        hw = x.shape[-1] * x.shape[-2] if x.dim() == 4 else 1
        return 2 * hw**0.5 * (1 + self.backward)

    def _decode_norms(self, m, inputs, output):
        return self._norm_stats(output)  # a DecodeBlock normalises at its output resolution

    def _encode_norms(self, m, inputs, output):
        return self._norm_stats(inputs[0])  # an EncodeBlock normalises at its input resolution

    def _blur(self, m, inputs, output):
        return 3.0 * (1 + self.backward)

    def _pixel_norm(self, m, inputs, output):
        return m.latent_size**0.5 * (1 + self.backward)

    def bound(self, scale: float) -> float:
        """Largest expected |a - b| of two float32 evaluations whose reductions sum terms of
        magnitude up to ``scale`` (see the model above)."""
        return 2 * FP32_UNIT_ROUNDOFF * self.total * scale

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()


def assert_reorder_close(actual, expected, budget: ReductionBudget, what: str = "", scale: float | None = None) -> None:
    """|actual - expected| within two float32 evaluations' reorder bound. ``scale`` is the
    magnitude of the terms summed, by default the tensor's largest value (the bound is one of
    whole-network rounding, not per element). A result that cancels (a bias followed by a
    normalisation has a gradient near 0 made of large terms) needs the terms' scale given."""
    tol = budget.bound(expected.abs().max().item() if scale is None else scale)
    err = (actual.double() - expected.double()).abs().max().item()
    assert err <= tol, (
        f"{what}: max |diff| {err:.3g} exceeds the float32 reorder bound {tol:.3g} (S = {budget.total:.0f})"
    )


# ---- short training runs ------------------------------------------------------------------------


def mlp_cfg(out_dir, *extra):
    """The MNIST MLP ALAE (the master variant) on 512 images, latent 16, CPU, a log line every
    step."""
    from alae_fast.train.config import load_config

    return load_config(
        "mnist-mlp-master",
        [
            f"train.output_dir={out_dir}",
            "data.limit=512",
            "train.log_every=1",
            "train.sample_every=1000",
            "train.checkpoint_every=1000",
            "train.grid_size=8",
            "model.latent_size=16",
            "model.mapping_layers=2",
            "train.device=cpu",
            *extra,
        ],
    )


def style_cfg(out_dir, *extra):
    """The MNIST StyleALAE on 16 images, 4-8 channels, 2 epochs a lod, batch 8, CPU."""
    from alae_fast.train.config import load_config

    return load_config(
        "mnist-style",
        [
            f"train.output_dir={out_dir}",
            "data.limit=16",
            "train.log_every=1",
            "train.sample_every=1000",
            "train.checkpoint_every=1000",
            "train.grid_size=4",
            "model.startf=4",
            "model.maxf=8",
            "model.latent_size=8",
            "model.mapping_layers=2",
            "train.epochs_per_lod=2",
            "train.epochs=8",
            "train.lod_batch_sizes=[8]",
            "train.device=cpu",
            *extra,
        ],
    )


def read_losses(path) -> list[dict]:
    """The rows of a run's losses.csv, as strings."""
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


def loss_values(path) -> list[list[float]]:
    """[loss_d, loss_g, loss_ae] of each step of a run's losses.csv."""
    return [[float(r[k]) for k in ("loss_d", "loss_g", "loss_ae")] for r in read_losses(path)]


def run_losses(cfg) -> tuple[list[list[float]], str]:
    """Trains ``cfg``: its [loss_d, loss_g, loss_ae] per step, and the log it wrote."""
    from alae_fast.train.trainer import Trainer

    messages = []
    Trainer(cfg, progress=False, log=messages.append).run()
    return loss_values(Path(cfg.train.output_dir) / "losses.csv"), "\n".join(messages)


# ---- the registry's examples ----------------------------------------------------------------------


def public_op(spec, impl):
    """The public function of registry entry ``spec`` with ``impl`` bound."""
    import alae_fast.ops

    fn = getattr(alae_fast.ops, spec.name)
    return lambda *a, **kw: fn(*a, **kw, impl=impl)


def example_leaves(t, grad, dtype=None):
    """Fresh copies of an example's inputs ``t`` (``dtype``: floating tensors cast), the ones
    named in ``grad`` requiring grad."""

    def copy(k, v):
        if isinstance(v, list):
            return [copy(k, e) for e in v]
        if not torch.is_tensor(v):
            return v
        v = v.detach().clone() if dtype is None else v.detach().to(dtype)
        return v.requires_grad_(k in grad)

    return {k: copy(k, v) for k, v in t.items()}


def tensor_outputs(out):
    """The tensors among an op's outputs, as a list."""
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in out if torch.is_tensor(o)]


def record_op_calls(fn, keep_requires_grad: bool = False) -> dict:
    """Runs ``fn()`` and returns {op overload: detached copies of its arguments} for the first
    call of every ``torch.ops.alae_fast`` op it makes. ``keep_requires_grad``: copies require
    grad where the argument did and the op is differentiable (for opcheck's autograd checks)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from alae_fast.ops._spec import STAGES

    calls: dict = {}

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "alae_fast" and func not in calls:
                grad = keep_requires_grad and STAGES[func.name().split("::")[1]].differentiable

                def copy(v):
                    if isinstance(v, list):
                        return [copy(e) for e in v]
                    if not torch.is_tensor(v):
                        return v
                    return v.detach().clone().requires_grad_(grad and v.requires_grad)

                calls[func] = [copy(a) for a in args]
            return func(*args, **(kwargs or {}))

    with Recorder():
        fn()
    return calls


def mixed_image_folder(root: Path, corrupt: bool = True) -> tuple[list[str], list[str]]:
    """Write the images a real download mixes into nested folders below ``root``: RGB, RGBA,
    grayscale, palette (one with transparency), CMYK JPEG, 16-bit grayscale, WebP and BMP files
    of odd sizes, a text file and (``corrupt``) two unreadable files: a PNG cut in half and
    random bytes named .jpg.

    Returns:
        (readable image names, corrupt names): relative POSIX paths, sorted.
    """
    import numpy as np
    from PIL import Image

    def save(name: str, image, **kwargs) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / name, **kwargs)

    def pixels(width: int, height: int, seed: int, channels: int = 3):
        return np.random.default_rng(seed).integers(0, 256, size=(height, width, channels), dtype=np.uint8)

    save("rgb.png", Image.fromarray(pixels(37, 23, 1)))
    save("sub/rgba.png", Image.fromarray(pixels(50, 81, 2, 4)))
    save("sub/gray.png", Image.fromarray(pixels(23, 37, 4)[..., 0]))
    save("pal/p.png", Image.fromarray(pixels(30, 30, 5)).quantize(16))
    alpha = bytes([0, 128, 255, 64] + [255] * 4)
    save("pal/pt.png", Image.fromarray(pixels(19, 33, 6)).quantize(8), transparency=alpha)
    save("cmyk.jpg", Image.fromarray(pixels(29, 17, 7, 4), "CMYK"))
    save("deep/er/g16.png", Image.fromarray(pixels(21, 40, 9)[..., 0].astype(np.uint16) * 257))
    save("w.WEBP", Image.fromarray(pixels(26, 18, 10)), lossless=True)
    save("b.bmp", Image.fromarray(pixels(16, 16, 11)))
    (root / "notes.txt").write_text("not an image")
    good = ["rgb.png", "sub/rgba.png", "sub/gray.png", "pal/p.png", "pal/pt.png", "cmyk.jpg"]
    good += ["deep/er/g16.png", "w.WEBP", "b.bmp"]
    if not corrupt:
        return sorted(good), []
    save("bad/half.png", Image.fromarray(pixels(32, 32, 12)))
    whole = (root / "bad/half.png").read_bytes()
    (root / "bad/half.png").write_bytes(whole[: len(whole) // 2])
    (root / "x.jpg").write_bytes(np.random.default_rng(13).bytes(500))
    return sorted(good), ["bad/half.png", "x.jpg"]
