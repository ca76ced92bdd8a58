"""FLOPs of one ALAE training iteration per image for the StyleALAE models of the official
configs, and the images/s one H100 SXM could consume at that rate.

    PYTHONPATH=. python scripts/flops_per_image.py [--utilisation 0.3] [--batch 32]

One iteration is what ``benchmarks/test_iteration.py`` times: the D step (E and D on a real and
a generated batch, with R1: the gradient of the gradient), the G step and the AE step, at the
final lod (blend 1), on the reference model (``alae_fast.reference``). The model is built on
the ``meta`` device, so only shapes are computed (a few seconds, no memory). FLOPs are those
of ``torch.utils.flop_counter``'s formulas (convolutions, their backward, matmuls; 1 multiply-add
= 2 FLOPs); they are counted by a small dispatch mode of our own with the same formula table,
because ``FlopCounterMode``'s module tracker raises inside ``torch.autograd.grad`` (R1).
Element-wise ops (AdaIN, instance norm, noise, leaky ReLU, the losses, the optimizer step) add
no tensor-core FLOPs but move memory: the ``eager roofline`` column charges every op
``max(FLOPs / peak, bytes read and written / HBM bandwidth)``, with no fusion and no cache.
Per image = per image of the batch (one real and one generated image).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from alae_fast import reference

#: The StyleALAE models of the official configs (podgorskiy/ALAE configs/*.yaml).
MODELS: dict[str, tuple[dict, int]] = {
    "FFHQ": (dict(startf=16, maxf=512, layer_count=9, latent_size=512, mapping_layers=8), 1024),
    "CelebA-HQ": (dict(startf=64, maxf=512, layer_count=7, latent_size=512, mapping_layers=8), 256),
    "LSUN bedroom": (dict(startf=32, maxf=512, layer_count=7, latent_size=512, mapping_layers=8), 256),
}
#: The official configs' global batch at the final lod on 8 GPUs; one H100 could hold it.
BATCH = 32

#: H100 SXM5 peak dense throughput (FLOP/s) and HBM3 bandwidth (bytes/s), from NVIDIA's data sheet.
H100_SXM = dict(bf16=989.4e12, tf32=494.7e12, fp32=66.9e12, hbm=3.35e12)
#: The utilisation the consumption estimate assumes; see ``UTILISATION_NOTE``.
UTILISATION = 0.30
UTILISATION_NOTE = (
    "30% of peak, an assumption (no GPU measurement behind it): the lower end of the 30-40% that "
    "conv-GAN training with small per-GPU batches (4-32) reaches with its element-wise work fused; "
    "lower end because the high-resolution levels have only 16-64 channels (low arithmetic "
    "intensity) and R1's double backward stays eager. The unfused reference cannot reach it "
    "(see the eager roofline)"
)


class _OpCounter(TorchDispatchMode):
    """Records (FLOPs, bytes read + written) of every non-view aten op run under it."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[int, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if getattr(func, "is_view", False):
            return out
        packet = func._overloadpacket
        flops = flop_registry[packet](*args, **kwargs, out_val=out) if packet in flop_registry else 0
        tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
        self.ops.append((int(flops), sum(t.numel() * t.element_size() for t in tensors)))
        return out


def _count(fn: Callable[[], torch.Tensor]) -> list[tuple[int, int]]:
    counter = _OpCounter()
    with counter:
        fn().backward()
    return counter.ops


def iteration_ops(kwargs: dict, resolution: int, batch: int = BATCH) -> dict[str, list[tuple[int, int]]]:
    """(FLOPs, bytes) of every op of the D, G and AE steps of one iteration of ``batch`` images
    (float32 tensors) at the final lod, blend 1."""
    with torch.device("meta"):
        model = reference.StyleALAE(**kwargs)
    lod = kwargs["layer_count"] - 1
    if 4 * 2**lod != resolution:
        raise ValueError(f"layer_count {kwargs['layer_count']} makes {4 * 2**lod}px images, not {resolution}px")
    x = torch.empty(batch, model.channels, resolution, resolution, device="meta", requires_grad=True)
    return {
        "D step (R1)": _count(lambda: model.d_loss(x, lod, 1.0, 10.0)),
        "G step": _count(lambda: model.g_loss(batch, lod, 1.0)),
        "AE step": _count(lambda: model.ae_loss(batch, lod, 1.0)),
    }


def _roofline_seconds(ops: list[tuple[int, int]], peak: float, bytes_scale: float) -> float:
    bw = H100_SXM["hbm"]
    return sum(max(f / peak, b * bytes_scale / bw) for f, b in ops)


def table(batch: int = BATCH, utilisation: float = UTILISATION) -> list[dict]:
    """One row per model: GFLOP per image per iteration (total and per step) and the images/s
    an H100 SXM would consume at 100% of bf16 / TF32 peak, at ``utilisation`` of it, and at the
    eager roofline (bf16: half the float32 bytes; TF32: float32 bytes)."""
    rows = []
    for name, (kwargs, resolution) in MODELS.items():
        steps = iteration_ops(kwargs, resolution, batch)
        every = [op for ops in steps.values() for op in ops]
        flops = sum(f for f, _ in every) / batch
        row = dict(
            model=name,
            resolution=resolution,
            gflop=flops / 1e9,
            steps={k: sum(f for f, _ in ops) / batch / 1e9 for k, ops in steps.items()},
            gbyte_fp32=sum(b for _, b in every) / batch / 1e9,
        )
        for precision, bytes_scale in (("bf16", 0.5), ("tf32", 1.0)):
            peak = H100_SXM[precision]
            row[f"{precision}_peak"] = peak / flops
            row[f"{precision}_util"] = utilisation * peak / flops
            row[f"{precision}_roofline"] = batch / _roofline_seconds(every, peak, bytes_scale)
        rows.append(row)
    return rows


def markdown(rows: list[dict], batch: int = BATCH, utilisation: float = UTILISATION) -> list[str]:
    pct = f"{utilisation:.0%}"
    lines = [
        f"| model | resolution | GFLOP per image per iteration (D / G / AE step) | GB moved per image (fp32, eager) "
        f"| images/s bf16 100% | bf16 {pct} | bf16 eager roofline | TF32 100% | TF32 {pct} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        steps = " / ".join(f"{v:.0f}" for v in r["steps"].values())
        lines.append(
            f"| {r['model']} | {r['resolution']}² | {r['gflop']:.0f} ({steps}) | {r['gbyte_fp32']:.1f} "
            f"| {r['bf16_peak']:.0f} | {r['bf16_util']:.0f} | {r['bf16_roofline']:.0f} "
            f"| {r['tf32_peak']:.0f} | {r['tf32_util']:.0f} |"
        )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--utilisation", type=float, default=UTILISATION)
    p.add_argument("--batch", type=int, default=BATCH, help="per-GPU batch (the eager roofline's weight traffic)")
    args = p.parse_args()
    print("\n".join(markdown(table(args.batch, args.utilisation), args.batch, args.utilisation)))


if __name__ == "__main__":
    main()
