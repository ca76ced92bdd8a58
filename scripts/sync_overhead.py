"""Time per training step, and the part of it spent in the trainer's collectives, for one
process with ``train.accumulate=M`` against M processes (torchrun, gloo on CPU).

    python scripts/sync_overhead.py --processes 1 --accumulate 2 [--steps 20] [--json OUT]
    torchrun --standalone --nproc_per_node=2 scripts/sync_overhead.py --processes 2 --accumulate 1

Uses the MNIST StyleALAE at 16x16 (startf 16, maxf 64, latent 32, global batch 16) unless
``--set`` overrides it; ``ALAE_FAST_DATA`` must point at the MNIST files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from alae_fast.train import distributed
from alae_fast.train.config import load_config
from alae_fast.train.trainer import Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int, required=True, help="as started (checked against WORLD_SIZE)")
    p.add_argument("--accumulate", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--json")
    args = p.parse_args()

    in_collectives = [0.0]

    def timed(fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                in_collectives[0] += time.perf_counter() - t0

        return wrapper

    # Every collective of a step goes through all_reduce_sum_ (one per phase: gradients, loss,
    # w average, and the stop flags in the last).
    for name in ("all_reduce_sum_", "broadcast_"):
        setattr(distributed.Processes, name, timed(getattr(distributed.Processes, name)))

    out = tempfile.mkdtemp(prefix="sync_overhead_")
    overrides = [
        f"train.output_dir={out}",
        "model.startf=16",
        "model.maxf=64",
        "model.latent_size=32",
        "model.layer_count=3",
        "data.resolution=16",
        "train.epochs_per_lod=0",
        "train.lod_batch_sizes=[16]",
        "train.device=cpu",
        f"train.accumulate={args.accumulate}",
        "train.log_every=1000000",
        "train.sample_every=1000000",
        "train.checkpoint_every=1000000",
        "train.grid_size=4",
        f"train.max_steps={args.warmup + args.steps}",
        *args.overrides,
    ]
    trainer = Trainer(load_config("mnist-style", overrides), progress=False, log=lambda m: None)
    assert trainer.procs.world_size == args.processes, (trainer.procs.world_size, args.processes)
    step_times, sync_times = [], []
    train_step = trainer.train_step

    def timed_step(*a):
        in_collectives[0] = 0.0
        t0 = time.perf_counter()
        result = train_step(*a)
        step_times.append(time.perf_counter() - t0)
        sync_times.append(in_collectives[0])
        return result

    trainer.train_step = timed_step  # type: ignore[method-assign]
    trainer.run()
    steps, syncs = step_times[args.warmup :], sync_times[args.warmup :]
    result = {
        "processes": args.processes,
        "accumulate": args.accumulate,
        "threads_per_process": torch.get_num_threads(),
        "step_ms_median": 1e3 * statistics.median(steps),
        "step_ms_min": 1e3 * min(steps),
        "collectives_ms_median": 1e3 * statistics.median(syncs),
        "collectives_ms_min": 1e3 * min(syncs),
    }
    if trainer.procs.is_main:
        print(json.dumps(result))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
    if trainer.procs.distributed:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
