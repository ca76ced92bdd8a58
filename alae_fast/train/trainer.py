"""The ALAE training loop.

One iteration makes the three optimizer steps of ALAE on a batch of real images ``x``:

1. E,D (``opt_e``): softplus(D(E(G(F(z))))) + softplus(-D(E(x))) + R1 on the reals;
2. F,G (``opt_g``): softplus(-D(E(G(F(z))))) with E, D frozen;
3. E,G (both): ||F(z) - E(G(F(z)))||^2 (latent reciprocity);

then updates the EMA copy (half-life ``ema_half_life_images`` images). Gradients are zeroed
without being freed (``set_to_none=False``), as in the PyTorch of the official code: a parameter
that received a gradient once keeps taking (zero-gradient) optimizer steps, which decays its
Adam second moment exactly as the official training did.

Data order is a function of (seed, epoch) and every RNG state goes into the checkpoint, so a
resumed run continues bit-for-bit on CPU.
"""

from __future__ import annotations

import random
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..checkpoints import CHECKPOINT_FORMAT
from ..checkpoints import atomic_save
from ..checkpoints import build_model
from ..checkpoints import load_checkpoint
from ..data import ImageFolderDataset
from ..data import uint8_to_float
from ..data.mnist import load_mnist
from ..data.transforms import pad_to
from ..models import FAST_STYLE_INJECTIONS
from ..nn import optimize
from ..optim import LREQAdam as FusedLREQAdam
from ..reference.optim import LREQAdam
from ..utils.images import save_grid
from ..utils.losslog import LossLog
from ..utils.losslog import RunningMeans
from .config import Config
from .config import ConfigError
from .config import config_from_dict
from .config import config_to_dict
from .config import save_config
from .schedule import LodSchedule

__all__ = ["Trainer", "select_device", "seed_everything"]

LOSS_NAMES = ("loss_d", "loss_g", "loss_ae")


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
        final = 4 * 2 ** (m.layer_count - 1)
        if d.resolution != final:
            raise ConfigError(
                f"data.resolution ({d.resolution}) must equal the model's final "
                f"resolution 4 * 2**(layer_count - 1) = {final} "
                f"(model.layer_count = {m.layer_count})"
            )
        path = data_override or d.path
        # The items: one uint8 tensor [N, C, R, R] (MNIST) or a dataset read from disk.
        self.images: torch.Tensor | ImageFolderDataset
        self.fixed: torch.Tensor | None = None
        if d.dataset == "mnist":
            if m.channels != 1:
                raise ConfigError(f"MNIST images have 1 channel but model.channels is {m.channels}")
            if d.resolution > 32:
                raise ConfigError(
                    f"MNIST images are 32x32 (28x28 padded by 2) at most; data.resolution is {d.resolution}"
                )
            train, _ = load_mnist("train", path)
            self.images = pad_to(train, 32).unsqueeze(1)  # uint8 [N, 1, 32, 32]
            test, _ = load_mnist("test", path)
            self.fixed = pad_to(test, 32).unsqueeze(1)
        else:
            if path is None:
                raise ConfigError("data.path (or --data) is required for data.dataset image_folder")
            self.images = ImageFolderDataset(path, d.resolution, channels=m.channels)
        self.size = len(self.images)
        if d.limit is not None:
            self.size = min(self.size, d.limit)
        self.num_workers = d.num_workers

    def fixed_batch(self, n: int) -> torch.Tensor:
        if self.fixed is not None:
            return self.fixed[:n]
        return torch.stack([self.images[i] for i in range(min(n, self.size))])

    def batches(self, order: torch.Tensor, batch_size: int, start_batch: int):
        """Yield uint8 batches [B, C, R, R] of ``order`` from batch ``start_batch`` on; the last
        incomplete batch is dropped (as in the official loop)."""
        count = len(order) // batch_size
        index_lists = [order[b * batch_size : (b + 1) * batch_size].tolist() for b in range(start_batch, count)]
        images = self.images
        if isinstance(images, torch.Tensor):
            for idx in index_lists:
                yield images[idx]
        elif self.num_workers == 0:
            for idx in index_lists:
                yield torch.stack([images[i] for i in idx])
        else:
            loader = torch.utils.data.DataLoader(images, batch_sampler=index_lists, num_workers=self.num_workers)
            yield from loader


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
    ``d_adv_loss=ref, r1_penalty=cpu, ..., adain=cpu, linear_act=cpu, lreq_adam_step_=cpu``.
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


class Trainer:
    """Trains an ALAE model from a :class:`Config`.

    Args:
        cfg: the run's config.
        data: overrides ``cfg.data.path`` (the ``--data`` option).
        resume: path of a checkpoint to continue from.
        progress: show a tqdm progress bar.
        log: callable for one-line messages (default: print to stderr).
    """

    def __init__(
        self, cfg: Config, *, data: str | None = None, resume: str | None = None, progress: bool = True, log=None
    ):
        self.cfg = cfg
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.progress = progress
        self.device = select_device(cfg.train.device)
        self.out = Path(cfg.train.output_dir)
        seed_everything(cfg.train.seed)

        if cfg.train.impl != "ref" and cfg.model.style_injection not in FAST_STYLE_INJECTIONS:
            raise ConfigError(
                f"model.style_injection={cfg.model.style_injection!r} has no fast "
                f"implementation yet: train it with train.impl=ref "
                f"(got train.impl={cfg.train.impl!r})"
            )
        self.data = _Images(cfg, data)
        # The model of the config (architecture and style injection), then the fast modules.
        self.model = build_model(cfg.model, truncation=False).to(self.device).train()
        self.ops_summary = describe_ops(cfg.train.impl, self.device, cfg.model.kind)
        # Every impl but "ref" runs the fast modules, losses and optimizer step.
        ops_impl = None if cfg.train.impl == "fast" else cfg.train.impl
        if cfg.train.impl != "ref":
            optimize(self.model, ops_impl)
        self.ema = self.model.make_ema(cfg.model.truncation_psi, cfg.model.truncation_cutoff)
        t = cfg.train
        opt_args: dict[str, Any] = dict(lr=t.learning_rates[0], betas=tuple(t.adam_betas), eps=t.adam_eps)
        opt_cls = LREQAdam if cfg.train.impl == "ref" else partial(FusedLREQAdam, impl=ops_impl)
        self.opt_e = opt_cls(
            [{"params": self.model.encoder.parameters()}, {"params": self.model.mapping_d.parameters()}], **opt_args
        )
        self.opt_g = opt_cls(
            [{"params": self.model.decoder.parameters()}, {"params": self.model.mapping_f.parameters()}], **opt_args
        )
        self.schedule = LodSchedule(
            cfg.model.layer_count, t.epochs_per_lod, t.lod_batch_sizes, t.learning_rates, self.data.size
        )
        # Fixed inputs for the grids, drawn from their own generator so they do not depend on
        # (or disturb) the training RNG stream.
        g = torch.Generator().manual_seed(t.seed + 3456)
        self.sample_z = torch.randn(t.grid_size, cfg.model.latent_size, generator=g).to(self.device)
        self.sample_x = uint8_to_float(self.data.fixed_batch(t.grid_size)).to(self.device)

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.current_lod: int | None = None
        self.loss_log = LossLog(self.out / "losses.csv")
        self.means = RunningMeans()
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
            "rng": _rng_state(),
            "progress": {
                "step": self.step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "lod": self.current_lod,
            },
            "versions": {"torch": torch.__version__},
        }

    def save(self, path: str | Path | None = None) -> Path:
        """Write a checkpoint atomically (default ``<output_dir>/checkpoint.pt``)."""
        return atomic_save(self.state_dict(), path or self.out / "checkpoint.pt")

    def load(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path)  # on CPU: RNG states must stay CPU tensors
        saved = config_from_dict(ckpt["config"])
        if saved.model != self.cfg.model:
            raise ConfigError(
                f"checkpoint {path} was trained with a different model config: {saved.model} vs {self.cfg.model}"
            )
        self.model.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        self.opt_e.load_state_dict(ckpt["opt_e"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        p = ckpt["progress"]
        self.step, self.epoch = p["step"], p["epoch"]
        self.batch_in_epoch, self.current_lod = p["batch_in_epoch"], p["lod"]
        _set_rng_state(ckpt["rng"])
        # Loss rows written after this checkpoint belong to the abandoned continuation.
        self.loss_log.truncate_after(self.step)
        self.log(f"resumed from {path} at step {self.step} (epoch {self.epoch})")

    # -- one iteration ---------------------------------------------------------------------
    def train_step(self, x: torch.Tensor, lod: int, blend: float) -> dict[str, float]:
        """The three ALAE updates on real images ``x`` [N, C, R, R] at ``lod``; returns losses."""
        m, n, gamma = self.model, x.shape[0], self.cfg.train.r1_gamma
        x = x.detach().requires_grad_(True)

        self.opt_e.zero_grad(set_to_none=False)
        loss_d = m.d_loss(x, lod, blend, gamma)
        loss_d.backward()
        self.opt_e.step()

        self.opt_g.zero_grad(set_to_none=False)
        loss_g = m.g_loss(n, lod, blend)
        loss_g.backward()
        self.opt_g.step()

        self.opt_e.zero_grad(set_to_none=False)
        self.opt_g.zero_grad(set_to_none=False)
        loss_ae = m.ae_loss(n, lod, blend)
        loss_ae.backward()
        self.opt_e.step()
        self.opt_g.step()

        self.ema.lerp(m, 0.5 ** (n / self.cfg.train.ema_half_life_images))
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "loss_ae": loss_ae.item()}

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
            reals = _at_lod(self.sample_x, lod, blend, in_transition)
            recs = ema.reconstruct(reals, lod, blend)
        n = len(reals)
        ncol = next(c for c in range(1, n + 1) if n % c == 0 and c * c >= n)  # whole rows
        pairs = []
        for r in range(0, len(reals), ncol):
            pairs += [reals[r : r + ncol], recs[r : r + ncol]]
        samples_png = save_grid(samples.float().cpu(), self.out / f"samples_{tag}.png")
        recs_png = save_grid(torch.cat(pairs).float().cpu(), self.out / f"reconstructions_{tag}.png", nrow=ncol)
        return samples_png, recs_png

    # -- the loop --------------------------------------------------------------------------
    def _set_lr(self, lr: float) -> None:
        for opt in (self.opt_e, self.opt_g):
            for group in opt.param_groups:
                group["lr"] = lr

    def run(self) -> dict[str, float]:
        """Train until ``train.epochs`` (or ``train.max_steps``); returns the last losses."""
        cfg = self.cfg.train
        self.out.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.out / "config.yaml")
        self.log(
            f"training {self.cfg.name} on {self.device} ({self.data.size} images), "
            f"ops: {self.ops_summary}; output in {self.out}"
        )
        last: dict[str, float] = {}
        plan = None
        start = self._start = time.time()
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            tqdm = None
        while self.epoch < cfg.epochs and not self._done():
            plan = self.schedule.plan(self.epoch)
            if self.current_lod != plan.lod:
                if self.current_lod is not None:
                    # A new level starts with fresh Adam statistics (official LODDriver).
                    self.opt_e.state.clear()
                    self.opt_g.state.clear()
                self.log(
                    f"epoch {self.epoch}: lod {plan.lod} ({4 * 2**plan.lod}x{4 * 2**plan.lod}), batch {plan.batch_size}"
                )
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
                bar = tqdm(
                    total=total,
                    initial=self.batch_in_epoch,
                    desc=f"epoch {self.epoch}",
                    leave=False,
                    dynamic_ncols=True,
                )
            for batch in self.data.batches(order, plan.batch_size, self.batch_in_epoch):
                images = self.batch_in_epoch * plan.batch_size
                blend = self.schedule.blend(self.epoch, images)
                x = uint8_to_float(batch).to(self.device)
                x = _at_lod(x, plan.lod, blend, plan.in_transition)
                last = self.train_step(x, plan.lod, blend)
                self.step += 1
                self.batch_in_epoch += 1
                self.means.update(last)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k[5:]: f"{v:.3f}" for k, v in self.means.means().items()})
                self._periodic(plan, blend)
                if self._done():
                    break
            if bar is not None:
                bar.close()
            if self._done():
                break
            self.epoch += 1
            self.batch_in_epoch = 0
        if plan is None:
            self.log(f"nothing to train: epoch {self.epoch} of {cfg.epochs}, step {self.step}")
        else:
            self._flush_log()
            blend = (
                self.schedule.blend(self.epoch, self.batch_in_epoch * plan.batch_size)
                if self.epoch < cfg.epochs
                else 1.0
            )
            s, r = self.write_grids(plan.lod, blend, plan.in_transition and blend < 1, "final")
            self.loss_log.plot(self.out / "losses.png")
            ck = self.save()
            self.log(
                f"done: {self.step} steps in {time.time() - start:.0f} s; wrote {s}, {r}, "
                f"{self.out / 'losses.png'}, {ck}"
            )
        return last

    def _done(self) -> bool:
        t = self.cfg.train
        if t.max_steps is not None and self.step >= t.max_steps:
            return True
        return t.max_minutes is not None and time.time() - self._start >= 60 * t.max_minutes

    def _flush_log(self) -> None:
        means = self.means.means()
        if means:
            epoch = self.epoch + self.batch_in_epoch / max(
                1, self.data.size // max(1, self.schedule.plan(self.epoch).batch_size)
            )
            self.loss_log.append(self.step, round(epoch, 4), means)
            self.means.reset()

    def _periodic(self, plan, blend: float) -> None:
        cfg = self.cfg.train
        if self.step % cfg.log_every == 0:
            self._flush_log()
        if self.step % cfg.sample_every == 0:
            self.write_grids(plan.lod, blend, plan.in_transition, f"step{self.step:07d}")
            self.loss_log.plot(self.out / "losses.png")
        if self.step % cfg.checkpoint_every == 0:
            self._flush_log()
            self.save()
