"""alae_fast: Adversarial Latent Autoencoders (ALAE and StyleALAE) in PyTorch, with fused kernels.

``alae_fast.models`` holds the fast models, ``alae_fast.optimize(model)`` converts a reference
model (:mod:`alae_fast.reference`) in place, ``alae_fast.ops`` the fused ops. Importing the
package loads neither the compiled extension nor Triton.
"""

__version__ = "0.1.0"


def optimize(model, impl=None):
    """Swap the fast modules into a reference model, in place; see :func:`alae_fast.nn.optimize`."""
    from .nn import optimize as _optimize

    return _optimize(model, impl)
