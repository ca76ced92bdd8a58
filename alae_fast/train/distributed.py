"""Processes of a training run: torchrun's environment, the process group, and the few
collectives the trainer needs.

The trainer averages gradients itself (one all-reduce of one flat buffer per optimizer step)
instead of wrapping the networks in DistributedDataParallel: ALAE steps three optimizers per
iteration through model methods rather than ``forward``, and the D step differentiates the R1
gradient (``create_graph=True``). ``scripts/ddp_r1_probe.py`` measures DDP against this; the
results are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Processes", "start_processes", "flat", "unflatten_into"]


@dataclass
class Processes:
    """This process's place in the run: ``rank`` of ``world_size``, its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Process 0 writes grids, logs, plots and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over the processes, in place (no-op for one process)."""
        if self.distributed:
            dist.all_reduce(t)
        return t

    def broadcast_(self, tensors: list[torch.Tensor]) -> None:
        """Overwrite ``tensors`` with process 0's values (one collective per dtype)."""
        if not self.distributed:
            return
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for t in tensors:
            by_dtype.setdefault(t.dtype, []).append(t)
        for group in by_dtype.values():
            buffer = flat([t.detach() for t in group])
            dist.broadcast(buffer, 0)
            unflatten_into(buffer, group)

    def max_difference(self, tensors: list[torch.Tensor]) -> float:
        """Largest absolute difference of ``tensors`` from process 0's copy, over all
        processes (0.0 for one process): replicas must stay identical."""
        if not self.distributed or not tensors:
            return 0.0
        mine = flat([t.detach().double() for t in tensors])
        theirs = mine.clone()
        dist.broadcast(theirs, 0)
        diff = (mine - theirs).abs().max().nan_to_num(float("inf")).view(1)
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
        return float(diff)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def start_processes(device_name: str = "auto") -> Processes:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT``), or run alone when started without torchrun.

    NCCL with one GPU per local rank when CUDA is used, gloo on CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError(f"train.device is {device_name!r} but CUDA is not available; use 'auto' or 'cpu'")
        # One GPU per local rank; a device index in the config applies to single-process runs.
        index = local_rank if world_size > 1 or device_name in ("auto", "cuda") else torch.device(device_name).index
        device = torch.device("cuda", index or 0)
        torch.cuda.set_device(device)
    else:
        device = torch.device(device_name if device_name != "auto" else "cpu")
    procs = Processes(rank, world_size, local_rank, device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        device_id = device if device.type == "cuda" else None
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30), device_id=device_id)
    return procs


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One contiguous 1-D buffer holding ``tensors`` one after the other."""
    return torch.cat([t.reshape(-1) for t in tensors])


@torch.no_grad()
def unflatten_into(buffer: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    """Copy the pieces of ``buffer`` back into ``tensors`` (the inverse of :func:`flat`)."""
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(buffer[offset : offset + n].view_as(t))
        offset += n
