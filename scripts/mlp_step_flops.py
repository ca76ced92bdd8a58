"""How close the MNIST MLP training step comes to this CPU's GEMM rate.

    ALAE_FAST_DATA=../shared/data/mnist python scripts/mlp_step_flops.py [--config mnist-mlp]
        [--threads 1 2] [--impl fast ref] [--steps 60] [--profile]

For each thread count and implementation it builds the trainer of the config and reports:
- the FLOPs of one training step (the D step with R1, the G step, the AE step), counted from the
  matrix products the step dispatches (torch.utils.flop_counter's formulas: 1 multiply-add = 2);
- the measured step time (median of ``--steps`` steps after 10 warm-up steps) and the FLOP rate it
  makes;
- the GEMM bound: the same matrix products, each timed alone with torch on this CPU (median of
  repeated calls), summed: the step cannot be faster than this with torch's GEMM;
- the peak: a 2048x2048x2048 float32 matmul's rate on this CPU at that thread count.
``--profile`` adds the ops that take the most time in a step (torch.profiler, self CPU time).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from alae_fast.train.config import load_config
from alae_fast.train.trainer import Trainer

MATMULS = {torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm, torch.ops.aten.baddbmm}


class _MatmulRecorder(TorchDispatchMode):
    """Counts FLOPs of every op and records the (m, k, n) of every matrix product."""

    def __init__(self):
        super().__init__()
        self.flops = 0
        self.shapes: Counter[tuple[int, int, int]] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        if packet in flop_registry:
            self.flops += int(flop_registry[packet](*args, **kwargs, out_val=out))
        if packet in MATMULS:
            a, b = (args[1], args[2]) if packet in (torch.ops.aten.addmm, torch.ops.aten.baddbmm) else args[:2]
            self.shapes[(a.shape[-2], a.shape[-1], b.shape[-1])] += 1
        return out


def _median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_seconds(m: int, k: int, n: int, repeat: int = 50) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    for _ in range(5):
        torch.mm(a, b, out=out)
    return _median_seconds(lambda: torch.mm(a, b, out=out), repeat)


def _trainer_and_batch(config: str, impl: str) -> tuple[Trainer, torch.Tensor, int]:
    cfg = load_config(config, [f"train.impl={impl}", "train.output_dir=/tmp/mlp_step_flops", "train.device=cpu"])
    trainer = Trainer(cfg, progress=False, log=lambda msg: None)
    lod = cfg.model.layer_count - 1
    side = trainer.model.image_size(lod)
    x = torch.rand(cfg.train.lod_batch_sizes[lod], cfg.model.channels, side, side)
    for _ in range(10):  # warm-up; Adam's state exists from here on
        trainer.train_step([x], lod, 1.0)
    return trainer, x, lod


def count_step(config: str) -> _MatmulRecorder:
    """FLOPs and matrix products of one step, from the reference modules: the fast linear_act
    calls the GEMM inside its own op, where no dispatch mode sees it; the products are the same."""
    trainer, x, lod = _trainer_and_batch(config, "ref")
    recorder = _MatmulRecorder()
    with recorder:
        trainer.train_step([x], lod, 1.0)
    return recorder


def time_step(config: str, impl: str, steps: int, profile: bool) -> tuple[int, float, str]:
    """(batch, median step seconds, profile table or "")."""
    trainer, x, lod = _trainer_and_batch(config, impl)
    step = _median_seconds(lambda: trainer.train_step([x], lod, 1.0), steps)
    table = ""
    if profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                trainer.train_step([x], lod, 1.0)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    return len(x), step, table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="mnist-mlp")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--impl", nargs="+", default=["fast", "ref"])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}")
    print(
        "| threads | impl | GFLOP per step | step ms | img/s | GFLOP/s | GEMM bound ms | step / bound | peak GFLOP/s |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    counted = count_step(args.config)
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = 2 * 2048**3 / gemm_seconds(2048, 2048, 2048, repeat=10) / 1e9
        bound = sum(n * gemm_seconds(*shape) for shape, n in counted.shapes.items())
        for impl in args.impl:
            batch, step, table = time_step(args.config, impl, args.steps, args.profile)
            print(
                f"| {threads} | {impl} | {counted.flops / 1e9:.2f} | {step * 1e3:.1f} | {batch / step:.0f} "
                f"| {counted.flops / step / 1e9:.1f} | {bound * 1e3:.1f} | {step / bound:.2f} | {peak:.1f} |",
                flush=True,
            )
            if table:
                print(table)
    print("matrix products of one step, (m, k, n): count:", dict(counted.shapes))


if __name__ == "__main__":
    main()
