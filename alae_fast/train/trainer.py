"""The ALAE training loop, on one process or many (torchrun).

One iteration makes the three optimizer steps of ALAE on a global batch of real images ``x``:

1. E,D (``opt_e``): softplus(D(E(G(F(z))))) + softplus(-D(E(x))) + R1 on the reals;
2. F,G (``opt_g``): softplus(-D(E(G(F(z))))) with E, D frozen;
3. E,G (both): ||F(z) - E(G(F(z)))||^2 (latent reciprocity);

then updates the EMA copy (half-life ``ema_half_life_images`` images). Gradients are zeroed
without being freed (``set_to_none=False``), as in the PyTorch of the official code: a parameter
that received a gradient once keeps taking (zero-gradient) optimizer steps, which decays its
Adam second moment exactly as the official training did.

The global batch is cut into M = processes x ``train.accumulate`` micro-batches of equal size,
the unit of randomness: every draw of micro-batch j in a step (z, noise images, the
style-mixing decision and cut-off) comes from a generator seeded by (seed, step, j, phase), and
the data order is a function of (seed, epoch). Each process computes its micro-batches'
gradients, the sum over micro-batches and processes is divided by M (one all-reduce per
optimizer step), so the trajectory does not depend on how M is factored, up to float reduction
order. The running w average is updated with the mean over all M micro-batches, and logged
losses are global-batch means. A resumed run continues bit-for-bit on CPU.

A step whose losses or gradients are not finite is undone (parameters, optimizer state, w
average and EMA as before it) and skipped with a warning; ``train.nonfinite_patience`` skips in
a row stop the run with :class:`NonFiniteLossError`. SIGTERM and SIGINT finish the current step,
write a checkpoint and return.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..checkpoints import CHECKPOINT_FORMAT
from ..checkpoints import CheckpointError
from ..checkpoints import atomic_save
from ..checkpoints import build_model
from ..checkpoints import load_checkpoint
from ..data import ImageFolderDataset
from ..data import PreparedDataset
from ..data import collate_uint8
from ..data import is_prepared
from ..data import uint8_to_float
from ..data.mnist import load_mnist_split
from ..data.transforms import pad_to
from ..models import FAST_STYLE_INJECTIONS
from ..nn import optimize
from ..optim import LREQAdam as FusedLREQAdam
from ..reference.optim import LREQAdam
from ..utils.images import display_scale
from ..utils.images import save_grid
from ..utils.losslog import LossLog
from .config import Config
from .config import ConfigError
from .config import config_from_dict
from .config import config_to_dict
from .config import save_config
from .distributed import Processes
from .distributed import flat
from .distributed import start_processes
from .distributed import unflatten_into
from .schedule import LodSchedule

__all__ = ["Trainer", "NonFiniteLossError", "select_device", "seed_everything", "micro_batch_seed"]

LOSS_NAMES = ("loss_d", "loss_g", "loss_ae")
PRECISION_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(RuntimeError):
    """Too many steps in a row had a non-finite loss or gradient."""


def select_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return device


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


#: The ``phase`` of :func:`micro_batch_seed` that draws the mirror flips of the real images.
MIRROR_PHASE = 3


def micro_batch_seed(seed: int, step: int, index: int, phase: int) -> int:
    """The seed of global micro-batch ``index`` in optimizer step ``step`` and ``phase`` (0: E,D,
    1: F,G, 2: E,G, 3: the mirror flips): the same on every process and for every split of the batch."""
    return int(np.random.SeedSequence([seed, step, index, phase]).generate_state(1, np.uint64)[0] >> 1)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _Images:
    """Training images as uint8 [C, R, R] items addressed by index."""

    def __init__(self, cfg: Config, data_override: str | None):
        d, m = cfg.data, cfg.model
        raw28 = m.kind == "mlp" and m.mlp_images == "raw28"
        #: Pixels in [0, 1] at 28x28 (the mnist_ref convention) instead of [-1, 1].
        self.unit_range = raw28
        final = 28 if raw28 else 4 * 2 ** (m.layer_count - 1)
        if d.resolution != final:
            raise ConfigError(
                f"data.resolution ({d.resolution}) must equal the model's final "
                f"resolution 4 * 2**(layer_count - 1) = {final} "
                f"(model.layer_count = {m.layer_count})"
                if not raw28
                else f"data.resolution ({d.resolution}) must be 28 with model.mlp_images 'raw28'"
            )
        path = data_override or d.path
        # The items: one uint8 tensor [N, C, R, R] (MNIST) or a dataset read from disk.
        self.images: torch.Tensor | ImageFolderDataset | PreparedDataset
        self.fixed: torch.Tensor | None = None
        if d.dataset == "mnist":
            if m.channels != 1:
                raise ConfigError(f"MNIST images have 1 channel but model.channels is {m.channels}")
            if d.resolution > 32:
                raise ConfigError(
                    f"MNIST images are 32x32 (28x28 padded by 2) at most; data.resolution is {d.resolution}"
                )
            # data.split: the training side; the grids' fixed reals come from its test side.
            train, _ = load_mnist_split(d.split, "train", path)
            test, _ = load_mnist_split(d.split, "test", path)
            if raw28:  # uint8 [N, 1, 28, 28]
                self.images, self.fixed = train.unsqueeze(1), test.unsqueeze(1)
            else:  # uint8 [N, 1, 32, 32]
                self.images, self.fixed = pad_to(train, 32).unsqueeze(1), pad_to(test, 32).unsqueeze(1)
        else:
            if path is None:
                raise ConfigError(
                    "data.path: the images to train on are required for data.dataset image_folder: give "
                    "--data DIR (a folder of images or a dataset made by alae-fast prepare-dataset)"
                )
            if is_prepared(path):
                self.images = PreparedDataset(path, d.resolution, channels=m.channels)
            else:  # every image is decoded, cropped and resized at every read: slow for big sets
                self.images = ImageFolderDataset(path, d.resolution, channels=m.channels)
        self.size = len(self.images)
        if d.limit is not None:
            self.size = min(self.size, d.limit)
        self.num_workers = d.num_workers
        if isinstance(self.images, PreparedDataset):
            self.source = f"a prepared dataset ({self.images.storage})"
        elif isinstance(self.images, ImageFolderDataset):
            self.source = "an image folder, decoded at every read: alae-fast prepare-dataset makes reading fast"
        else:
            self.source = "MNIST"

    def fixed_batch(self, n: int) -> torch.Tensor:
        if self.fixed is not None:
            return self.fixed[:n]
        return torch.stack([self.images[i] for i in range(min(n, self.size))])

    def batches(
        self, order: torch.Tensor, batch_size: int, start_batch: int, micro: range, micro_count: int, pin: bool = False
    ):
        """Yield, for each global batch of ``order`` from ``start_batch`` on, this process's
        micro-batches: a list of uint8 tensors [b, C, R, R], one per global micro-batch index in
        ``micro`` (b = batch_size / micro_count). Only those images are read. The last
        incomplete batch is dropped (as in the official loop)."""
        count = len(order) // batch_size
        b = batch_size // micro_count
        lists = [
            order[g * batch_size + j * b : g * batch_size + (j + 1) * b].tolist()
            for g in range(start_batch, count)
            for j in micro
        ]
        images, per_step = self.images, len(micro)
        if isinstance(images, torch.Tensor):
            pieces: Any = (images[idx] for idx in lists)
        elif isinstance(images, PreparedDataset) and self.num_workers == 0:
            pieces = (images.__getitems__(idx) for idx in lists)
        elif self.num_workers == 0:
            pieces = (torch.stack([images[i] for i in idx]) for idx in lists)
        else:
            pieces = iter(
                torch.utils.data.DataLoader(
                    images,
                    batch_sampler=lists,
                    num_workers=self.num_workers,
                    pin_memory=pin,
                    persistent_workers=False,
                    collate_fn=collate_uint8,
                )
            )
        while True:
            step = [p for _, p in zip(range(per_step), pieces)]
            if len(step) < per_step:
                return
            yield step


def _at_lod(x: torch.Tensor, lod: int, blend: float, in_transition: bool) -> torch.Tensor:
    """Real images at the resolution of ``lod``; during a transition they are blended with
    their 2x-downsampled, nearest-upsampled version, as the official loop does."""
    res = 4 * 2**lod
    while x.shape[2] > res:
        x = F.avg_pool2d(x, 2, 2)
    if in_transition:
        prev = F.interpolate(F.avg_pool2d(x, 2, 2), res)
        x = x * blend + prev * (1.0 - blend)
    return x


LOSS_OPS = ("d_adv_loss", "r1_penalty", "g_adv_loss", "latent_l2")
LAYER_OPS = ("bias_act", "blur", "encode_norm", "adain", "linear_act", "lreq_adam_step_")


def describe_ops(impl: str, device: torch.device, kind: str = "style") -> str:
    """Which implementation each op of a training step runs, e.g.
    ``d_adv_loss=ref, r1_penalty=cpu, ..., adain=cpu, linear_act=ref, lreq_adam_step_=cpu``.
    The MLP model (``kind="mlp"``) runs only the loss ops, ``linear_act`` and the optimizer op.
    Raises :class:`ConfigError` when ``impl`` names an implementation that cannot run here."""
    names = LOSS_OPS + (LAYER_OPS if kind != "mlp" else ("linear_act", "lreq_adam_step_"))
    if impl == "ref":
        return ", ".join(f"{op}=ref" for op in names)
    from ..ops import ImplUnavailableError
    from ..ops._spec import REGISTRY

    try:
        chosen = [REGISTRY[op].resolve(None if impl == "fast" else impl, device) for op in names]
    except ImplUnavailableError as exc:
        raise ConfigError(f"train.impl={impl!r}: {exc}") from exc
    return ", ".join(f"{op}={c}" for op, c in zip(names, chosen))


class LossScale:
    """Dynamic loss scale for float16: halved when a step's gradients overflow, doubled after
    ``growth_interval`` finite steps in a row. ``value`` is 1.0 when disabled."""

    def __init__(self, enabled: bool, init: float = 2.0**16, growth_interval: int = 2000):
        self.enabled = enabled
        self.value = init if enabled else 1.0
        self.growth_interval = growth_interval
        self.good_steps = 0

    def update(self, finite: bool) -> None:
        if not self.enabled:
            return
        if not finite:
            self.value, self.good_steps = max(self.value / 2.0, 1.0), 0
            return
        self.good_steps += 1
        if self.good_steps % self.growth_interval == 0:
            self.value *= 2.0

    def state_dict(self) -> dict:
        return {"value": self.value, "good_steps": self.good_steps}

    def load_state_dict(self, state: dict) -> None:
        if self.enabled and state:
            self.value, self.good_steps = state["value"], state["good_steps"]


def _cloned(state: dict) -> dict:
    return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}


def _all_finite(tensors: list[torch.Tensor]) -> torch.Tensor:
    """0-d bool: no NaN or infinity in ``tensors``. One read pass per tensor: a float64 sum of
    float32/16 values cannot overflow, so it is finite exactly when every value is (isfinite
    builds masks in several passes, which cost a sixth of the MLP step)."""
    sums = torch.stack([t.sum(dtype=torch.float64) for t in tensors])
    return torch.isfinite(sums.sum())


def _nonfinite_tensors(state: Any, where: str = "") -> list[str]:
    """Names of the floating tensors in a nested state dict that hold NaN or infinity."""
    if isinstance(state, torch.Tensor):
        return [where] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, dict):
        return [n for k, v in state.items() for n in _nonfinite_tensors(v, f"{where}.{k}" if where else str(k))]
    if isinstance(state, (list, tuple)):
        return [n for i, v in enumerate(state) for n in _nonfinite_tensors(v, f"{where}[{i}]")]
    return []


class Trainer:
    """Trains an ALAE model from a :class:`Config`, alone or as one process of a torchrun job.

    Args:
        cfg: the run's config.
        data: overrides ``cfg.data.path`` (the ``--data`` option).
        resume: path of a checkpoint to continue from.
        progress: show a tqdm progress bar (process 0 only).
        log: callable for one-line messages (default: print to stderr; process 0 only).
    """

    def __init__(
        self, cfg: Config, *, data: str | None = None, resume: str | None = None, progress: bool = True, log=None
    ):
        self.cfg = cfg
        t = cfg.train
        if cfg.train.device != "auto":
            select_device(cfg.train.device)  # a clear ConfigError for a device that is not there
        self.procs: Processes = start_processes(cfg.train.device)
        self.device = self.procs.device
        main = self.procs.is_main
        self.log = (log or (lambda msg: print(msg, file=sys.stderr))) if main else (lambda msg: None)
        self.progress = progress and main
        self.out = Path(t.output_dir)
        self.micro_count = self.procs.world_size * t.accumulate
        seed_everything(t.seed)  # the same initial weights on every process

        if t.impl != "ref" and cfg.model.style_injection not in FAST_STYLE_INJECTIONS:
            raise ConfigError(
                f"model.style_injection={cfg.model.style_injection!r} has no fast "
                f"implementation yet: train it with train.impl=ref "
                f"(got train.impl={t.impl!r})"
            )
        self.data = _Images(cfg, data)
        # The model of the config (architecture and style injection), then the fast modules.
        self.model = build_model(cfg.model, truncation=False).to(self.device).train()
        if t.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.ops_summary = describe_ops(t.impl, self.device, cfg.model.kind)
        # Every impl but "ref" runs the fast modules, losses and optimizer step.
        ops_impl = None if t.impl == "fast" else t.impl
        if t.impl != "ref":
            optimize(self.model, ops_impl)
        self.procs.broadcast_([*self.model.parameters(), *self.model.buffers()])
        self.ema = self.model.make_ema(cfg.model.truncation_psi, cfg.model.truncation_cutoff)
        opt_args: dict[str, Any] = dict(lr=t.learning_rates[0], betas=tuple(t.adam_betas), eps=t.adam_eps)
        opt_cls = LREQAdam if t.impl == "ref" else partial(FusedLREQAdam, impl=ops_impl)
        self.opt_e = opt_cls(
            [{"params": self.model.encoder.parameters()}, {"params": self.model.mapping_d.parameters()}], **opt_args
        )
        self.opt_g = opt_cls(
            [{"params": self.model.decoder.parameters()}, {"params": self.model.mapping_f.parameters()}], **opt_args
        )
        table, batch_sizes = t.batch_table(self.micro_count)
        self.batch_table_name = "train.lod_batch_sizes" + ("" if table is None else f"[{table}]")
        self.schedule = LodSchedule(
            cfg.model.layer_count, t.epochs_per_lod, batch_sizes, t.learning_rates, self.data.size
        )
        for i, b in enumerate(batch_sizes[: cfg.model.layer_count]):
            if b % self.micro_count:
                raise ConfigError(
                    f"{self.batch_table_name}[{i}] = {b} is a global batch size and must be divisible by the "
                    f"{self.micro_count} micro-batches of a step ({self.procs.world_size} processes x "
                    f"train.accumulate {t.accumulate})"
                )
        self.autocast_dtype = PRECISION_DTYPES.get(t.precision)
        self.loss_scale = LossScale(t.precision == "fp16", t.fp16_loss_scale)
        # Fixed inputs for the grids, drawn from their own generator so they do not depend on
        # (or disturb) the training RNG stream.
        g = torch.Generator().manual_seed(t.seed + 3456)
        self.sample_z = torch.randn(t.grid_size, cfg.model.latent_size, generator=g).to(self.device)
        self.sample_x = self._pixels(self.data.fixed_batch(t.grid_size)).to(self.device)

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.current_lod: int | None = None
        self.skipped_in_a_row = 0
        self.loss_log = LossLog(self.out / "losses.csv")
        self._loss_sums = torch.zeros(len(LOSS_NAMES), dtype=torch.float64, device=self.device)
        self._loss_count = 0
        self._stop_signal: int | None = None
        self._stop_now = False
        self._late = False
        self._start = time.time()
        self._images_at_start = 0
        if resume is not None:
            self.load(resume)

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": config_to_dict(self.cfg),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "opt_e": self.opt_e.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "loss_scale": self.loss_scale.state_dict(),
            "rng": _rng_state(),
            "progress": {
                "step": self.step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "lod": self.current_lod,
            },
            "processes": {"world_size": self.procs.world_size, "accumulate": self.cfg.train.accumulate},
            "versions": {"torch": torch.__version__},
        }

    def save(self, path: str | Path | None = None) -> Path:
        """Write a checkpoint atomically (default ``<output_dir>/checkpoint.pt``, plus a
        step-numbered snapshot of which the last ``train.keep_checkpoints`` are kept). Process 0
        writes; a state with a non-finite tensor is never written (raises instead)."""
        target = Path(path) if path is not None else self.out / "checkpoint.pt"
        if not self.procs.is_main:
            return target
        state = self.state_dict()
        bad = _nonfinite_tensors({k: state[k] for k in ("model", "ema", "opt_e", "opt_g")})
        if bad:
            raise NonFiniteLossError(
                f"refusing to write checkpoint {target} at step {self.step}: non-finite values in {', '.join(bad[:5])}"
            )
        atomic_save(state, target)
        keep = self.cfg.train.keep_checkpoints
        if path is None and keep > 0:
            snapshot = self.out / f"checkpoint-{self.step:07d}.pt"
            snapshot.unlink(missing_ok=True)
            try:
                os.link(target, snapshot)  # the same file under a second name: no copy
            except OSError:
                atomic_save(state, snapshot)
            for old in sorted(self.out.glob("checkpoint-*.pt"))[:-keep]:
                old.unlink(missing_ok=True)
        return target

    def load(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path)  # on CPU: RNG states must stay CPU tensors
        if "opt_e" not in ckpt:
            raise CheckpointError(
                f"{path} has no optimizer state (it was converted from an official file): it is for "
                "inference (generate, encode, ...), not for resuming training"
            )
        saved = config_from_dict(ckpt["config"])
        if saved.model != self.cfg.model:
            raise ConfigError(
                f"checkpoint {path} was trained with a different model config: {saved.model} vs {self.cfg.model}"
            )
        self.model.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        self.opt_e.load_state_dict(ckpt["opt_e"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.loss_scale.load_state_dict(ckpt.get("loss_scale", {}))
        p = ckpt["progress"]
        self.step, self.epoch = p["step"], p["epoch"]
        self.batch_in_epoch, self.current_lod = p["batch_in_epoch"], p["lod"]
        _set_rng_state(ckpt["rng"])
        if self.procs.is_main:  # rows written after this checkpoint belong to the abandoned continuation
            self.loss_log.truncate_after(self.step)
        before = ckpt.get("processes", {"world_size": 1, "accumulate": 1})
        before_m = before["world_size"] * before["accumulate"]
        if before_m != self.micro_count:
            self.log(
                f"warning: the checkpoint was trained with {before_m} micro-batches per step, this run uses "
                f"{self.micro_count}: the random draws differ from here on (keep processes x train.accumulate "
                "to continue the same trajectory)"
            )
        self.log(f"resumed from {path} at step {self.step} (epoch {self.epoch})")

    # -- one iteration ---------------------------------------------------------------------
    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _seed_micro_batch(self, index: int, phase: int) -> None:
        s = micro_batch_seed(self.cfg.train.seed, self.step, index, phase)
        random.seed(s)
        torch.manual_seed(s)

    def r1_gamma_at(self, step: int) -> float:
        """The R1 weight of ``step``: lazy regularisation applies ``r1_interval * r1_gamma`` on
        one step in ``r1_interval`` and none on the others."""
        t = self.cfg.train
        if t.r1_interval == 1:
            return t.r1_gamma
        return t.r1_gamma * t.r1_interval if step % t.r1_interval == 0 else 0.0

    def _snapshot(self) -> tuple[list[torch.Tensor], list[torch.Tensor], list[dict]]:
        """What an iteration changes before the EMA update, to undo a skipped step."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        states = [{p: _cloned(st) for p, st in o.state.items()} for o in (self.opt_e, self.opt_g)]
        return tensors, [t.detach().clone() for t in tensors], states

    def _restore(self, snapshot) -> None:
        tensors, copies, states = snapshot
        with torch.no_grad():
            for t, c in zip(tensors, copies):
                t.copy_(c)
        for opt, st in zip((self.opt_e, self.opt_g), states):
            opt.state.clear()
            opt.state.update(st)

    def _reduce(self, optimizers, tail: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One all-reduce (a sum over the processes) of the stepping parameters' gradients and
        the ``tail`` tensors after them. The gradients come back divided by M and the loss
        scale. Returns (a 0-d flag: everything is finite, the summed tail tensors)."""
        grads = [p.grad for o in optimizers for g in o.param_groups for p in g["params"] if p.grad is not None]
        scale = self.micro_count * self.loss_scale.value
        if not self.procs.distributed:  # nothing to exchange: no flat copy of the gradients
            finite = _all_finite([*grads, *tail])
            if scale != 1.0:
                torch._foreach_div_(grads, scale)
            return finite, [t.detach() for t in tail]
        buffer = flat([*grads, *[t.reshape(-1).to(grads[0].dtype) for t in tail]])
        self.procs.all_reduce_sum_(buffer)
        finite = _all_finite([buffer])
        n = buffer.numel() - sum(t.numel() for t in tail)
        if scale != 1.0:
            buffer[:n].div_(scale)
            unflatten_into(buffer[:n], grads)
        summed = []
        for t in tail:
            summed.append(buffer[n : n + t.numel()].view(t.shape))
            n += t.numel()
        return finite, summed

    def _phase_loss(self, phase: int, x: torch.Tensor, lod: int, blend: float, gamma: float) -> torch.Tensor:
        m, n = self.model, x.shape[0]
        if phase == 0:
            return m.d_loss(x, lod, blend, gamma, self.loss_scale.value)
        if phase == 1:
            return m.g_loss(n, lod, blend)
        return m.ae_loss(n, lod, blend)

    def train_step(self, micro: list[torch.Tensor], lod: int, blend: float) -> dict[str, torch.Tensor] | None:
        """The three ALAE updates on this process's micro-batches ``micro`` (each [b, C, R, R] at
        ``lod``); returns the global-batch mean losses (0-d tensors on the device), or None when
        the step was undone and skipped for a non-finite loss or gradient.

        Each phase makes one all-reduce of its gradients, its loss and its w-average update;
        the step reads one set of numbers back to the host, at its end: whether every phase was
        finite, and whether any process received SIGTERM/SIGINT or ran out of time."""
        m, t = self.model, self.cfg.train
        first = self.procs.rank * t.accumulate  # global index of this process's first micro-batch
        gamma = self.r1_gamma_at(self.step)
        snapshot = self._snapshot()
        losses: dict[str, torch.Tensor] = {}
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        flags = torch.zeros(2, device=self.device)
        phases = ((self.opt_e,), (self.opt_g,), (self.opt_e, self.opt_g))
        try:
            for phase, optimizers in enumerate(phases):
                for opt in optimizers:
                    opt.zero_grad(set_to_none=False)
                m.deferred_w_means = [] if m.dlatent_avg_beta is not None else None
                loss_sum = torch.zeros(1, device=self.device)
                for k, x in enumerate(micro):
                    self._seed_micro_batch(first + k, phase)
                    if phase == 0:
                        x = x.detach().requires_grad_(True)
                    with self._autocast():
                        loss = self._phase_loss(phase, x, lod, blend, gamma)
                    (loss * self.loss_scale.value if self.loss_scale.enabled else loss).backward()
                    loss_sum += loss.detach()
                tail = [loss_sum]
                if m.deferred_w_means:
                    tail.append(torch.stack(m.deferred_w_means).sum(0))
                if phase == len(phases) - 1:  # the flags ride along with the last reduction
                    tail.append(torch.tensor([self._stop_signal is not None, self._out_of_time()], device=self.device))
                phase_finite, summed = self._reduce(optimizers, tail)
                finite &= phase_finite
                for opt in optimizers:  # a non-finite step is undone below, optimizer state included
                    opt.step()
                if m.deferred_w_means:
                    m.update_w_average(summed[1] / self.micro_count)
                losses[LOSS_NAMES[phase]] = summed[0][0] / self.micro_count if self.micro_count > 1 else summed[0][0]
                if phase == len(phases) - 1:
                    flags = summed[-1]
        finally:
            m.deferred_w_means = None
        # The one host synchronisation of the step.
        ok, stop, late = torch.cat([finite.reshape(1).to(flags.dtype), flags]).tolist()
        self._stop_now, self._late = stop > 0, late > 0
        scale_searching = self.loss_scale.enabled and self.loss_scale.value > 1.0
        self.loss_scale.update(ok > 0)
        if not ok:
            self._restore(snapshot)
            self._skipped(losses, scale_searching)
            return None
        self.skipped_in_a_row = 0
        global_batch = len(micro) * micro[0].shape[0] * self.procs.world_size
        self.ema.lerp(m, 0.5 ** (global_batch / t.ema_half_life_images))
        return losses

    def _skipped(self, losses: dict[str, torch.Tensor], scale_searching: bool) -> None:
        values = ", ".join(f"{k} = {float(v):.6g}" for k, v in losses.items())
        what = f"step {self.step + 1}: {values}"
        if scale_searching:  # float16: the dynamic loss scale is still coming down to the gradients' range
            self._warn(f"skipped {what} (float16 overflow; loss scale now {self.loss_scale.value:g})")
            return
        self.skipped_in_a_row += 1
        patience = self.cfg.train.nonfinite_patience
        if self.skipped_in_a_row >= patience:
            raise NonFiniteLossError(
                f"{self.skipped_in_a_row} steps in a row had a non-finite loss or gradient (train.nonfinite_patience"
                f" = {patience}); the last, {what}. The last checkpoint written holds finite weights: lower the "
                "learning rate or r1_gamma, or try train.precision=fp32, and resume from it"
            )
        self._warn(f"warning: skipped {what} (non-finite loss or gradient)")

    def _warn(self, message: str) -> None:
        """To stderr from process 0 (the others took the same decision)."""
        if self.procs.is_main:
            print(f"alae-fast train: {message}", file=sys.stderr)

    # -- outputs ---------------------------------------------------------------------------
    @torch.no_grad()
    def write_grids(self, lod: int, blend: float, in_transition: bool, tag: str) -> tuple[Path, Path]:
        """Samples of the EMA model from the fixed z, and reconstructions of the fixed reals
        (rows of reals interleaved with their reconstructions)."""
        ema = self.ema
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # grids must not shift the training RNG
            styles = ema.mapping_f(self.sample_z)
            samples = ema.decoder(styles, lod, blend, True)
            reals = self._reals(self.sample_x, lod, blend, in_transition)
            recs = ema.reconstruct(reals, lod, blend)
        n = len(reals)
        ncol = next(c for c in range(1, n + 1) if n % c == 0 and c * c >= n)  # whole rows
        pairs = []
        for r in range(0, len(reals), ncol):
            pairs += [reals[r : r + ncol], recs[r : r + ncol]]
        # save_grid takes [-1, 1]; the raw28 convention is [0, 1]. Small images are enlarged.
        samples, recs = (
            ema.pixels_from_model(samples.float().cpu()),
            ema.pixels_from_model(torch.cat(pairs).float().cpu()),
        )
        scale = display_scale(samples.shape[-1])
        samples_png = save_grid(samples, self.out / f"samples_{tag}.png", scale=scale)
        recs_png = save_grid(recs, self.out / f"reconstructions_{tag}.png", nrow=ncol, scale=scale)
        return samples_png, recs_png

    # -- the loop --------------------------------------------------------------------------
    def _set_lr(self, lr: float) -> None:
        for opt in (self.opt_e, self.opt_g):
            for group in opt.param_groups:
                group["lr"] = lr

    def _images_done(self) -> tuple[int, int]:
        """(images trained so far, images of the whole schedule) over all processes."""
        done = total = 0
        for e in range(self.cfg.train.epochs):
            b = self.schedule.plan(e).batch_size
            per_epoch = self.data.size // b * b
            total += per_epoch
            done += per_epoch if e < self.epoch else self.batch_in_epoch * b if e == self.epoch else 0
        return done, total

    def throughput(self) -> dict[str, str]:
        """kimg done, images/s and ETA of the whole schedule (and peak GPU memory on CUDA)."""
        done, total = self._images_done()
        elapsed = max(time.time() - self._start, 1e-9)
        rate = (done - self._images_at_start) / elapsed
        eta = (total - done) / rate if rate > 0 else float("inf")
        info = {"kimg": f"{done / 1000:.1f}", "img/s": f"{rate:.1f}"}
        info["eta"] = time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) and eta < 8.6e6 else "?"
        if self.device.type == "cuda":
            info["mem"] = f"{torch.cuda.max_memory_allocated(self.device) / 2**30:.2f}GiB"
        return info

    def _on_signal(self, signum, frame) -> None:
        self._stop_signal = signum

    def run(self) -> dict[str, float]:
        """Train until ``train.epochs`` (or ``train.max_steps``, ``train.max_minutes``, SIGTERM,
        SIGINT); returns the last logged losses."""
        handlers = {}
        if threading.current_thread() is threading.main_thread():  # signal handlers live there
            for sig in (signal.SIGTERM, signal.SIGINT):
                handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            return self._run()
        finally:
            for sig, h in handlers.items():
                signal.signal(sig, h)

    def _run(self) -> dict[str, float]:
        cfg = self.cfg.train
        if self.procs.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.out / "config.yaml")
        procs = f"{self.procs.world_size} processes x " if self.procs.distributed else ""
        self.log(
            f"training {self.cfg.name} on {self.device} ({self.data.size} images from {self.data.source}; {procs}"
            f"{cfg.accumulate} micro-batch{'es' if cfg.accumulate > 1 else ''} per step, {cfg.precision}, "
            f"batch sizes from {self.batch_table_name}), "
            f"ops: {self.ops_summary}; output in {self.out}"
        )
        last: dict[str, float] = {}
        plan = None
        self._start = time.time()
        self._images_at_start = self._images_done()[0]
        start = self._start
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            tqdm = None
        pin = self.device.type == "cuda"
        mine = range(self.procs.rank * cfg.accumulate, (self.procs.rank + 1) * cfg.accumulate)
        stopped = False
        while self.epoch < cfg.epochs and not self._done():
            plan = self.schedule.plan(self.epoch)
            if self.current_lod != plan.lod:
                if self.current_lod is not None:
                    # A new level starts with fresh Adam statistics (official LODDriver).
                    self.opt_e.state.clear()
                    self.opt_g.state.clear()
                side = self.model.image_size(plan.lod)
                self.log(f"epoch {self.epoch}: lod {plan.lod} ({side}x{side}), batch {plan.batch_size}")
                self.current_lod = plan.lod
            self._set_lr(plan.learning_rate)
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.data.size, generator=g)
            total = self.data.size // plan.batch_size
            if total == 0:
                raise ConfigError(
                    f"the training data has {self.data.size} images, fewer than one "
                    f"batch of {plan.batch_size} at lod {plan.lod} "
                    f"(train.lod_batch_sizes, data.limit)"
                )
            bar = None
            if self.progress and tqdm is not None:
                bar = tqdm(total=total, initial=self.batch_in_epoch, desc=f"epoch {self.epoch}", leave=False)
            batches = self.data.batches(order, plan.batch_size, self.batch_in_epoch, mine, self.micro_count, pin)
            for step_batches in batches:
                images = self.batch_in_epoch * plan.batch_size
                blend = self.schedule.blend(self.epoch, images)
                micro = [
                    self._reals(self._to_device(b, j), plan.lod, blend, plan.in_transition)
                    for j, b in zip(mine, step_batches)
                ]
                losses = self.train_step(micro, plan.lod, blend)
                self.step += 1
                self.batch_in_epoch += 1
                if losses is not None:
                    self._loss_sums += torch.stack([losses[k] for k in LOSS_NAMES]).double()
                    self._loss_count += 1
                if bar is not None:
                    bar.update(1)
                last = self._periodic(plan, blend, bar) or last
                if self._stop_now:  # agreed by every process in the step's last reduction
                    stopped = True
                    break
                if self._done():
                    break
            if bar is not None:
                bar.close()
            if stopped or self._done():
                break
            self.epoch += 1
            self.batch_in_epoch = 0
        if stopped:
            last = self._flush_log() or last
            ck = self.save()
            self.procs.barrier()
            name = signal.Signals(self._stop_signal).name if self._stop_signal else "a signal"
            self.log(
                f"received {name}: stopped after step {self.step} and wrote {ck}; "
                f"continue with `alae-fast train --resume auto --output {self.out}`"
            )
        elif plan is None:
            self.log(f"nothing to train: epoch {self.epoch} of {cfg.epochs}, step {self.step}")
        else:
            last = self._flush_log() or last
            blend = (
                self.schedule.blend(self.epoch, self.batch_in_epoch * plan.batch_size)
                if self.epoch < cfg.epochs
                else 1.0
            )
            if self.procs.is_main:
                s, r = self.write_grids(plan.lod, blend, plan.in_transition and blend < 1, "final")
                self.loss_log.plot(self.out / "losses.png")
            ck = self.save()
            self.procs.barrier()
            speed = ", ".join(f"{k} {v}" for k, v in self.throughput().items())
            if self.procs.is_main:
                self.log(
                    f"done: {self.step} steps in {time.time() - start:.0f} s ({speed}); wrote {s}, {r}, "
                    f"{self.out / 'losses.png'}, {ck}"
                )
        return last

    def _pixels(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 images as the model's input: ``x / 255`` in [0, 1] for the raw28 convention
        (official mnist_ref), else ``x / 127.5 - 1`` in [-1, 1]."""
        return batch.to(torch.float32) / 255.0 if self.data.unit_range else uint8_to_float(batch)

    def _reals(self, x: torch.Tensor, lod: int, blend: float, in_transition: bool) -> torch.Tensor:
        """Real images for ``lod`` (:func:`_at_lod`); raw28 images are used as they are."""
        return x if self.data.unit_range else _at_lod(x, lod, blend, in_transition)

    def _to_device(self, batch: torch.Tensor, index: int) -> torch.Tensor:
        """Global micro-batch ``index`` of this step as float images on the device; with
        ``data.mirror`` each image is flipped left-right when its seeded coin says so (a
        function of (seed, step, image), whatever the split of the batch)."""
        if self.device.type == "cuda":
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        else:
            batch = batch.to(self.device)
        x = self._pixels(batch)
        if self.cfg.data.mirror:
            g = torch.Generator().manual_seed(micro_batch_seed(self.cfg.train.seed, self.step, index, MIRROR_PHASE))
            flip = torch.rand(len(x), generator=g) < 0.5
            x = torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.train.channels_last else x

    def _done(self) -> bool:
        t = self.cfg.train
        if t.max_steps is not None and self.step >= t.max_steps:
            return True
        return self._late  # train.max_minutes, as agreed by every process in the last step

    def _out_of_time(self) -> bool:
        t = self.cfg.train
        return t.max_minutes is not None and time.time() - self._start >= 60 * t.max_minutes

    def _flush_log(self) -> dict[str, float]:
        """Write the mean losses since the last flush (the one host synchronisation of the
        losses) and return them."""
        if self._loss_count == 0:
            return {}
        sums = (self._loss_sums / self._loss_count).tolist()
        means = dict(zip(LOSS_NAMES, sums))
        self._loss_sums.zero_()
        self._loss_count = 0
        if self.procs.is_main:
            epoch = self.epoch + self.batch_in_epoch / max(
                1, self.data.size // max(1, self.schedule.plan(self.epoch).batch_size)
            )
            self.loss_log.append(self.step, round(epoch, 4), means)
        return means

    def _periodic(self, plan, blend: float, bar) -> dict[str, float]:
        cfg = self.cfg.train
        means: dict[str, float] = {}
        if self.step % cfg.log_every == 0:
            means = self._flush_log()
            if bar is not None and means:
                shown = {k[5:]: f"{v:.3f}" for k, v in means.items()}
                bar.set_postfix({**shown, **self.throughput()})
        if self.step % cfg.sample_every == 0:
            if self.procs.is_main:
                self.write_grids(plan.lod, blend, plan.in_transition, f"step{self.step:07d}")
                self.loss_log.plot(self.out / "losses.png")
            self.log(f"step {self.step}: " + ", ".join(f"{k} {v}" for k, v in self.throughput().items()))
        if self.step % cfg.checkpoint_every == 0:
            means = self._flush_log() or means
            self.save()
        return means
