"""The ``torch.library`` namespace ``alae_fast`` that holds every public op's schema."""

from __future__ import annotations

from typing import Callable

import torch

LIB = torch.library.Library("alae_fast", "DEF")


def define(schema: str, impl: Callable, fake: Callable, *, backward: Callable | None = None,
           setup_context: Callable | None = None) -> torch._ops.OpOverload:
    """Define ``alae_fast::<name>`` from ``schema`` with one implementation for every device
    (``impl`` dispatches on its ``impl`` string argument), a fake (meta) implementation and,
    optionally, an autograd formula. Returns the op's default overload."""
    name = schema.split("(", 1)[0]
    LIB.define(schema)
    LIB.impl(name, impl, "CompositeExplicitAutograd")
    torch.library.register_fake(f"alae_fast::{name}", fake, lib=LIB)
    if backward is not None:
        torch.library.register_autograd(f"alae_fast::{name}", backward,
                                        setup_context=setup_context, lib=LIB)
    return getattr(torch.ops.alae_fast, name).default
