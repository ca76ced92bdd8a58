"""Whole ALAE models of the reference implementation: :class:`StyleALAE` and :class:`MLPALAE`.

The module tree mirrors the official ``Model`` (``mapping_d``, ``mapping_f``, ``decoder``,
``encoder``, ``dlatent_avg``), so official weights load with ``strict=True``. The three training
losses are methods (:meth:`ALAEBase.d_loss`, :meth:`ALAEBase.g_loss`, :meth:`ALAEBase.ae_loss`);
the trainer owns the optimizers.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import torch
from torch import nn

from . import losses
from .networks import MLP_ENCODER_SLOPES
from .networks import MLP_GENERATOR_SLOPES
from .networks import Encoder
from .networks import EncoderFC
from .networks import Generator
from .networks import GeneratorFC
from .networks import MappingD
from .networks import MappingDFC
from .networks import MappingF

__all__ = ["DLatent", "ALAEBase", "StyleALAE", "MLPALAE", "MAPPING_F_KINDS"]

#: F of the MLP model: "mlp" (pixel norm and ``mapping_layers`` layers) or "identity" (w = z).
MAPPING_F_KINDS = ("mlp", "identity")


def _upcast(t: torch.Tensor) -> torch.Tensor:
    """Half-precision network outputs (under autocast) to float32: the losses are float32."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class DLatent(nn.Module):
    """Holds the running average of w per style slot: buffer ``buff`` [num_layers, latent]."""

    buff: torch.Tensor

    def __init__(self, dlatent_size: int, layer_count: int):
        super().__init__()
        self.register_buffer("buff", torch.zeros(layer_count, dlatent_size))


class ALAEBase(nn.Module):
    """Shared behaviour of the two ALAE models: sampling with style mixing and truncation, the
    running w average, encoding, the three losses, and the EMA update.

    Subclasses pass the classes of D, G and E; the module tree and its order follow the
    official ``Model``: ``mapping_d``, ``mapping_f``, ``decoder``, ``encoder``, ``dlatent_avg``.
    ``network_args`` go to both G and E, ``decoder_args`` to G only, ``encoder_args`` to E only.
    ``mapping_f_identity``: F is the identity (w = z), see :class:`.networks.MappingF`.
    """

    def __init__(
        self,
        mapping_d_cls,
        decoder_cls,
        encoder_cls,
        *,
        latent_size: int,
        layer_count: int,
        mapping_layers: int,
        channels: int,
        network_args: dict,
        dlatent_avg_beta,
        truncation_psi,
        truncation_cutoff,
        style_mixing_prob,
        decoder_args: dict | None = None,
        encoder_args: dict | None = None,
        mapping_f_identity: bool = False,
    ):
        super().__init__()
        self.latent_size = latent_size
        self.layer_count = layer_count
        self.channels = channels
        self.dlatent_avg_beta = dlatent_avg_beta
        self.truncation_psi = truncation_psi
        self.truncation_cutoff = truncation_cutoff
        self.style_mixing_prob = style_mixing_prob
        net = dict(layer_count=layer_count, latent_size=latent_size, channels=channels, **network_args)
        self.mapping_d = mapping_d_cls(
            mapping_layers=3, latent_size=latent_size, dlatent_size=latent_size, mapping_fmaps=latent_size
        )
        self.mapping_f = MappingF(
            num_layers=2 * layer_count,
            mapping_layers=mapping_layers,
            latent_size=latent_size,
            dlatent_size=latent_size,
            mapping_fmaps=latent_size,
            identity=mapping_f_identity,
        )
        self.decoder = decoder_cls(**net, **(decoder_args or {}))
        self.encoder = encoder_cls(**net, **(encoder_args or {}))
        self.dlatent_avg = DLatent(latent_size, self.mapping_f.num_layers)

    # -- helpers ----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def num_layers(self) -> int:
        """Number of style slots (two per generator level)."""
        return self.mapping_f.num_layers

    def _layer_idx(self) -> torch.Tensor:
        return torch.arange(self.num_layers, device=self.device).view(1, -1, 1)

    # -- pixel conventions: images outside the model are in [-1, 1] -------------------------
    def image_size(self, lod: int) -> int:
        """The side of the images G makes and E reads at ``lod``."""
        return 4 * 2**lod

    def pixels_to_model(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] to the range the networks take (the same here)."""
        return x

    def pixels_from_model(self, x: torch.Tensor) -> torch.Tensor:
        """G's images to [-1, 1] (the same here)."""
        return x

    def encode_w(self, x: torch.Tensor, lod: int, blend: float) -> torch.Tensor:
        """E(x) as w [N, 1, latent], whatever the encoder's native output shape."""
        return self.encoder(x, lod, blend).reshape(x.shape[0], 1, self.latent_size)

    # -- the running w average ---------------------------------------------------------------
    #: None: :meth:`generate` updates the running w average itself. A list: it appends the mean
    #: w of each batch instead, for the trainer to combine the micro-batches of one step.
    deferred_w_means: list[torch.Tensor] | None = None

    # -- set by alae_fast.load on a model loaded for use ------------------------------------
    #: The level of detail the model was trained up to (the inference functions run it there).
    trained_lod: int | None = None
    #: Its :class:`~alae_fast.train.config.Config` (for an official file: the inferred architecture).
    config: Any = None
    #: "alae_fast" or "official": the kind of file it came from.
    source: str | None = None

    @torch.no_grad()
    def update_w_average(self, mean: torch.Tensor) -> None:
        """``buff <- lerp(buff, mean, 1 - dlatent_avg_beta)`` with ``mean`` [num_layers, latent]."""
        buff = self.dlatent_avg.buff
        buff.lerp_(mean.to(buff.dtype), 1.0 - self.dlatent_avg_beta)

    # -- sampling ---------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """F(z): [N, latent] -> w [N, latent]."""
        return self.mapping_f(z)[:, 0]

    def truncate(self, styles: torch.Tensor) -> torch.Tensor:
        """Pull the first ``truncation_cutoff`` style slots towards the running average by
        ``truncation_psi`` (no-op when truncation is off)."""
        if self.truncation_psi is None:
            return styles
        layer_idx = self._layer_idx()
        coefs = torch.where(
            layer_idx < self.truncation_cutoff,
            torch.full_like(layer_idx, self.truncation_psi, dtype=styles.dtype),
            torch.ones_like(layer_idx, dtype=styles.dtype),
        )
        return torch.lerp(self.dlatent_avg.buff.to(styles.dtype), styles, coefs)

    def generate(
        self,
        lod: int,
        blend: float,
        z: torch.Tensor | None = None,
        count: int = 32,
        mixing: bool = True,
        noise=True,
        return_styles: bool = False,
        no_truncation: bool = False,
    ):
        """Sample images: F(z), broadcast to every style slot, update the running w average
        (when ``dlatent_avg_beta`` is set), style mixing (with ``style_mixing_prob``), truncation
        (when ``truncation_psi`` is set), then G.

        Returns ``x`` [N, C, R, R], or ``(w [N, 1, latent], x)`` if ``return_styles``.
        """
        if z is None:
            z = torch.randn(count, self.latent_size, device=self.device)
        s = self.mapping(z).unsqueeze(1)
        styles = s.expand(-1, self.num_layers, -1)

        if self.dlatent_avg_beta is not None:
            with torch.no_grad():
                if self.deferred_w_means is not None:  # the trainer averages them over micro-batches
                    self.deferred_w_means.append(styles.mean(dim=0).to(self.dlatent_avg.buff.dtype))
                else:
                    self.update_w_average(styles.mean(dim=0))

        mix_prob = self.style_mixing_prob
        if mixing and mix_prob is not None and random.random() < mix_prob:
            z2 = torch.randn(z.shape[0], self.latent_size, device=z.device, dtype=z.dtype)
            styles2 = self.mapping(z2).unsqueeze(1).expand(-1, self.num_layers, -1)
            cutoff = random.randint(1, (lod + 1) * 2)
            styles = torch.where(self._layer_idx() < cutoff, styles, styles2)

        if not no_truncation:
            styles = self.truncate(styles)

        x = self.decoder(styles, lod, blend, noise)
        return (s, x) if return_styles else x

    def encode(self, x: torch.Tensor, lod: int, blend: float):
        """E then D: returns ``(w [N, 1, latent], logits [N])``."""
        w = self.encode_w(x, lod, blend)
        return w, self.discriminate(w)

    def discriminate(self, w: torch.Tensor) -> torch.Tensor:
        """D(w) -> logits [N] from w [N, 1, latent]."""
        return self.mapping_d(w)

    def reconstruct(self, x: torch.Tensor, lod: int | None = None, blend: float = 1.0, noise=True) -> torch.Tensor:
        """Inference path x -> E -> w -> G -> x_hat (same shape as ``x``)."""
        lod = self.layer_count - 1 if lod is None else lod
        w = self.encode_w(x, lod, blend)
        return self.decoder(w.expand(-1, self.num_layers, -1), lod, blend, noise)

    # -- losses -----------------------------------------------------------------------------
    # The loss formulas, on the logits and latents; the fast models override these three.
    def d_loss_fn(
        self, d_fake: torch.Tensor, d_real: torch.Tensor, reals: torch.Tensor, r1_gamma: float, grad_scale: float = 1.0
    ) -> torch.Tensor:
        """The E,D loss of the logits (:func:`.losses.discriminator_logistic_r1`)."""
        return losses.discriminator_logistic_r1(d_fake, d_real, reals, r1_gamma, grad_scale)

    def g_loss_fn(self, d_fake: torch.Tensor) -> torch.Tensor:
        """The F,G loss of the logits (:func:`.losses.generator_logistic_ns`)."""
        return losses.generator_logistic_ns(d_fake)

    def ae_loss_fn(self, w: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The E,G reciprocity loss (:func:`.losses.latent_l2`)."""
        return losses.latent_l2(w, target)

    def d_loss(
        self, x: torch.Tensor, lod: int, blend: float, r1_gamma: float = 10.0, r1_grad_scale: float = 1.0
    ) -> torch.Tensor:
        """E,D loss: softplus(D(E(G(F(z))))) + softplus(-D(E(x))) + gamma/2 ||grad_x D(E(x))||^2,
        averaged over the batch. ``x`` must require grad (for R1). ``r1_grad_scale``: the
        float16 loss scale, applied to the R1 gradient's computation and undone before it is
        squared."""
        with torch.no_grad():
            fake = self.generate(lod, blend, count=x.shape[0], noise=True)
        self.encoder.requires_grad_(True)
        self.mapping_d.requires_grad_(True)
        _, d_real = self.encode(x, lod, blend)
        _, d_fake = self.encode(fake, lod, blend)
        return self.d_loss_fn(_upcast(d_fake), _upcast(d_real), x, r1_gamma, r1_grad_scale)

    def g_loss(self, batch_size: int, lod: int, blend: float) -> torch.Tensor:
        """F,G loss: softplus(-D(E(G(F(z))))) with E and D frozen."""
        z = torch.randn(batch_size, self.latent_size, device=self.device)
        self.encoder.requires_grad_(False)
        self.mapping_d.requires_grad_(False)
        try:
            fake = self.generate(lod, blend, z=z, noise=True)
            _, d_fake = self.encode(fake, lod, blend)
        finally:
            self.encoder.requires_grad_(True)
            self.mapping_d.requires_grad_(True)
        return self.g_loss_fn(_upcast(d_fake))

    def ae_loss(self, batch_size: int, lod: int, blend: float) -> torch.Tensor:
        """E,G reciprocity loss in latent space: mean((E(G(w)) - w)^2) with w = F(z) as a
        constant target (gradients still reach F through G's input, as in the official code)."""
        z = torch.randn(batch_size, self.latent_size, device=self.device)
        self.encoder.requires_grad_(True)
        s, fake = self.generate(lod, blend, z=z, mixing=False, noise=True, return_styles=True)
        w = self.encode_w(fake, lod, blend)
        return self.ae_loss_fn(_upcast(w), _upcast(s.detach()))

    def forward(self, x: torch.Tensor, lod: int, blend: float, d_train: bool, ae: bool):
        """Official-style entry point: the AE loss if ``ae``, else the D loss if ``d_train``,
        else the G loss."""
        if ae:
            return self.ae_loss(x.shape[0], lod, blend)
        if d_train:
            return self.d_loss(x, lod, blend)
        return self.g_loss(x.shape[0], lod, blend)

    # -- EMA --------------------------------------------------------------------------------
    def make_ema(self, truncation_psi: float | None = None, truncation_cutoff: int | None = None) -> ALAEBase:
        """A frozen copy to be updated with :meth:`lerp` (the EMA model of ALAE), set up for
        sampling as the official ``model_s``: no style mixing, no running-average update of
        its own (it copies the live model's), and the given truncation."""
        ema = copy.deepcopy(self)
        ema.eval().requires_grad_(False)
        ema.dlatent_avg_beta = None
        ema.style_mixing_prob = None
        ema.truncation_psi = truncation_psi
        ema.truncation_cutoff = truncation_cutoff
        return ema

    @torch.no_grad()
    def lerp(self, other: ALAEBase, beta: float) -> None:
        """EMA update ``p <- lerp(p, p_other, 1 - beta)`` of every parameter. Buffers (the
        running w average) are copied; the official code skips them, which leaves the EMA
        model truncating towards zero."""
        for p, q in zip(self.parameters(), other.parameters()):
            p.lerp_(q, 1.0 - beta)
        for b, c in zip(self.buffers(), other.buffers()):
            b.copy_(c)


class StyleALAE(ALAEBase):
    """StyleALAE: StyleGAN-like generator with AdaIN (or, optionally, StyleGAN2 modulated
    convolutions), instance-norm-statistics encoder.

    Args (as the official ``Model``):
        startf, maxf: channels at the highest resolution, and the cap.
        layer_count: number of levels; resolution ``2 ** (layer_count + 1)``.
        latent_size: size of z and w.
        mapping_layers: depth of F (D has 3 layers).
        channels: image channels.
        dlatent_avg_beta, truncation_psi, truncation_cutoff, style_mixing_prob: see
            :meth:`ALAEBase.generate`.
        style_injection (not an official option): how G injects the styles. "adain" (the
            default, the official generator; official checkpoints need it) or "modconv"
            (StyleGAN2 weight modulation/demodulation, no instance norm, for models trained
            from scratch; its style layers have other shapes, see
            :class:`~alae_fast.reference.networks.DecodeBlock`). The encoder is the same.
    """

    def __init__(
        self,
        startf: int = 32,
        maxf: int = 256,
        layer_count: int = 3,
        latent_size: int = 128,
        mapping_layers: int = 5,
        channels: int = 3,
        dlatent_avg_beta: float | None = None,
        truncation_psi: float | None = None,
        truncation_cutoff: int | None = None,
        style_mixing_prob: float | None = None,
        style_injection: str = "adain",
    ):
        super().__init__(
            MappingD,
            Generator,
            Encoder,
            latent_size=latent_size,
            layer_count=layer_count,
            mapping_layers=mapping_layers,
            channels=channels,
            network_args=dict(startf=startf, maxf=maxf),
            dlatent_avg_beta=dlatent_avg_beta,
            truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff,
            style_mixing_prob=style_mixing_prob,
            decoder_args=dict(style_injection=style_injection),
        )
        self.style_injection = style_injection


class MLPALAE(ALAEBase):
    """The MLP ALAE of the paper's MNIST experiment: MLP E and G (two hidden layers of 1024), F
    with ``mapping_layers`` layers (or the identity), a 3-layer linear D.

    The defaults are the official master ``mnist_fc`` model: images ``4 * 2**lod`` pixels
    square (32x32 at the default final lod 3) in [-1, 1], which E resizes to 28x28 and G
    produces at 28x28 resized up; leaky ReLU slope 0.2 everywhere; F has ``mapping_layers``
    layers.

    The options give the model of the official branch ``mnist_ref`` (the paper's numbers):
    ``images="raw28"`` (28x28 in [0, 1], no resizing), ``encoder_slopes=(0.2, 0.2, 0.01)``,
    ``generator_slopes=(0.01, 0.01)`` and ``mapping_f="identity"`` (w = z).
    """

    def __init__(
        self,
        latent_size: int = 50,
        mapping_layers: int = 6,
        channels: int = 1,
        layer_count: int = 4,
        dlatent_avg_beta: float | None = 0.995,
        truncation_psi: float | None = None,
        truncation_cutoff: int | None = None,
        style_mixing_prob: float | None = None,
        images: str = "pad32",
        encoder_slopes: tuple[float, ...] = MLP_ENCODER_SLOPES,
        generator_slopes: tuple[float, ...] = MLP_GENERATOR_SLOPES,
        mapping_f: str = "mlp",
    ):
        if mapping_f not in MAPPING_F_KINDS:
            raise ValueError(f"mapping_f must be one of {MAPPING_F_KINDS}, got {mapping_f!r}")
        super().__init__(
            MappingDFC,
            GeneratorFC,
            EncoderFC,
            latent_size=latent_size,
            layer_count=layer_count,
            mapping_layers=mapping_layers,
            channels=channels,
            network_args=dict(images=images),
            dlatent_avg_beta=dlatent_avg_beta,
            truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff,
            style_mixing_prob=style_mixing_prob,
            decoder_args=dict(slopes=tuple(generator_slopes)),
            encoder_args=dict(slopes=tuple(encoder_slopes)),
            mapping_f_identity=mapping_f == "identity",
        )
        self.images = images

    def discriminate(self, w: torch.Tensor) -> torch.Tensor:
        return self.mapping_d(w.reshape(w.shape[0], self.latent_size))

    # "raw28" networks take and make 28x28 images in [0, 1] at every lod.
    def image_size(self, lod: int) -> int:
        return 28 if self.images == "raw28" else super().image_size(lod)

    def pixels_to_model(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 1.0) * 0.5 if self.images == "raw28" else x

    def pixels_from_model(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0 - 1.0 if self.images == "raw28" else x
