"""alae_fast: Adversarial Latent Autoencoders (ALAE and StyleALAE) in PyTorch."""

__version__ = "0.1.0"
