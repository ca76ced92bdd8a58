"""Choosing an implementation for an op: ``impl`` argument, ``ALAE_FAST_IMPL``, automatic.

Order of precedence: the op's ``impl=`` argument, then the ``ALAE_FAST_IMPL`` environment
variable, then the automatic choice. An implementation asked for explicitly (argument or
variable) that cannot run raises :class:`ImplUnavailableError`; the automatic choice takes the
first available implementation of :func:`auto_order` for the op and the tensors' device, with
one warning per missing component when it has to skip one.

The orders follow the CPU measurements in ``benchmarks/RESULTS.md`` ("CPU" section): the C++
kernels run everywhere on CPU except the softplus losses, where PyTorch's own path is faster at
the batch sizes they see; the Triton interpreter is a test vehicle, never an automatic choice.
On CUDA the fused CUDA kernels come first and Triton second.

On CUDA the automatic choice takes a CUDA or Triton kernel only when it is *verified* (its GPU
parity tests passed on a GPU of this generation, :mod:`alae_fast.verified`); otherwise it runs
the reference and warns once how to verify (``scripts/gpu_check.sh``) or opt in (``impl=``,
``ALAE_FAST_IMPL``). Explicit requests and the CPU choice are not gated.

The layer ops take their C++ kernels on CPU even where one alone loses to PyTorch at small
shapes (``bias_act``, ``linear_act``): the whole training iteration is faster with them
(``training iteration`` rows of ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import os
import warnings

import torch

from . import _extension

__all__ = [
    "IMPLS",
    "ENV_VAR",
    "AUTO_ORDER",
    "ImplUnavailableError",
    "auto_order",
    "available_impls",
    "resolve_impl",
    "unavailable_reason",
    "auto_choice",
    "gpu_capability",
    "verification",
]

IMPLS = ("ref", "triton", "cuda", "cpu")
ENV_VAR = "ALAE_FAST_IMPL"
AUTO_ORDER = {"cpu": ("cpu", "ref"), "cuda": ("cuda", "triton", "ref")}
# Per-op exceptions to AUTO_ORDER, from the measurements above.
# linear_act: the MNIST MLP step is 5-25% faster with torch's addmm + leaky_relu than with the
# CPU kernel (scripts/mlp_step_flops.py, benchmarks/RESULTS.md "MNIST MLP training step").
AUTO_ORDER_BY_OP = {("d_adv_loss", "cpu"): ("ref",), ("g_adv_loss", "cpu"): ("ref",), ("linear_act", "cpu"): ("ref",)}

# Implementations the automatic choice takes only with a GPU parity record (see above).
GATED = {"cuda": ("cuda", "triton")}

_warned: set[str] = set()
_UNVERIFIED_WARNING = "unverified GPU kernels"


class ImplUnavailableError(RuntimeError):
    """An explicitly requested implementation cannot run here."""


def _triton_reason(device_type: str) -> str | None:
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed (pip install 'triton>=3.5')"
    if device_type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return "Triton runs CPU tensors only in its interpreter (set TRITON_INTERPRET=1)"
    if device_type not in ("cpu", "cuda"):
        return f"Triton kernels here run on CUDA (or CPU, interpreted), not on {device_type}"
    return None


def unavailable_reason(impl: str, device_type: str) -> str | None:
    """Why ``impl`` cannot run on tensors of ``device_type``, or None when it can."""
    if impl == "ref":
        return None
    if impl == "triton":
        return _triton_reason(device_type)
    if impl in ("cpu", "cuda"):
        if device_type != impl:
            return f"impl '{impl}' runs on {impl} tensors, these are on {device_type}"
        if not _extension.load():
            return _extension.error()
        if impl == "cuda" and not _extension.has_cuda_kernels():
            return (
                "the extension alae_fast._C was built without its CUDA kernels (no CUDA "
                "toolkit or a CPU build of torch at install time, or ALAE_FAST_CUDA=0)"
            )
        return None
    raise ValueError(f"impl must be one of {IMPLS} or None, got {impl!r}")


def auto_order(op: str, device_type: str) -> tuple[str, ...]:
    """Implementations the automatic choice tries for ``op`` on ``device_type``, best first."""
    return AUTO_ORDER_BY_OP.get((op, device_type), AUTO_ORDER.get(device_type, ("ref",)))


def available_impls(device_type: str, supported: tuple[str, ...] = IMPLS) -> list[str]:
    """The implementations of ``supported`` that can run on ``device_type`` now."""
    return [name for name in supported if unavailable_reason(name, device_type) is None]


def _requested(impl: str | None) -> tuple[str | None, str]:
    if impl is not None:
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS} or None, got {impl!r}")
        return impl, "impl="
    env = os.environ.get(ENV_VAR, "").strip()
    if env in ("", "auto"):
        return None, ""
    if env not in IMPLS:
        raise ValueError(f"{ENV_VAR} must be one of {IMPLS} or 'auto', got {env!r}")
    return env, f"{ENV_VAR}="


_capabilities: dict[int, tuple[int, int]] = {}


def gpu_capability() -> tuple[int, int]:
    """Compute capability (major, minor) of the current CUDA device (cached per device: the
    automatic choice asks on every op call)."""
    index = torch.cuda.current_device()
    if index not in _capabilities:
        _capabilities[index] = torch.cuda.get_device_capability(index)
    return _capabilities[index]


def verification(op: str, impl: str, device_type: str) -> tuple[bool, str]:
    """(verified, why) for the automatic choice of ``impl`` for ``op`` on ``device_type``."""
    if impl not in GATED.get(device_type, ()):
        return True, "not gated"
    from .. import verified  # the record is read on the first automatic CUDA choice

    cap = gpu_capability()
    record = verified.find_record(op, impl, cap)
    if record is None:
        return False, (f"no passing GPU parity record for compute capability {cap[0]}.x in {verified.RECORD_PATH.name}")
    return True, (f"verified on {record['device']} ({record['capability']}, torch {record['torch']}, {record['date']})")


def auto_choice(
    op: str, device_type: str, supported: tuple[str, ...] = IMPLS
) -> tuple[str, list[tuple[str, str, str]]]:
    """The automatic choice for ``op`` and the implementations it skipped before it, as
    ``(impl, "unverified" | "unavailable", reason)``, best first."""
    skipped = []
    for name in (n for n in auto_order(op, device_type) if n in supported):
        ok, why = verification(op, name, device_type)
        if not ok:
            skipped.append((name, "unverified", why))
            continue
        reason = unavailable_reason(name, device_type)
        if reason is None:
            return name, skipped
        skipped.append((name, "unavailable", reason))
    return "ref", skipped


def _warn_skipped(op: str, chosen: str, skipped: list[tuple[str, str, str]]) -> None:
    for missing, kind, why in skipped:
        if kind == "unavailable" and why not in _warned:
            _warned.add(why)
            warnings.warn(
                f"alae_fast: the '{missing}' kernels are unavailable ({why}); ops fall back to '{chosen}'",
                RuntimeWarning,
                stacklevel=4,
            )
    unverified = [name for name, kind, _ in skipped if kind == "unverified"]
    if unverified and chosen == "ref" and _UNVERIFIED_WARNING not in _warned:
        _warned.add(_UNVERIFIED_WARNING)
        names = " and ".join(repr(n) for n in unverified)
        warnings.warn(
            f"alae_fast: the {names} kernels of alae_fast.ops.{op} (and of any other op "
            f"without a record) have not passed their parity tests on this GPU generation "
            f"(alae_fast/verified_kernels.json), so the automatic choice runs the reference "
            f"PyTorch ops. Verify them with `scripts/gpu_check.sh` (source checkout; writes the "
            f"record) or check them with `alae-fast doctor --device cuda`; to run them anyway, "
            f"pass impl='cuda' or impl='triton' (ops, alae_fast.optimize, train --impl) or set "
            f"ALAE_FAST_IMPL=cuda|triton.",
            RuntimeWarning,
            stacklevel=4,
        )


def resolve_impl(op: str, impl: str | None, device_type: str, supported: tuple[str, ...] = IMPLS) -> str:
    """The implementation op ``op`` runs for tensors on ``device_type``.

    Under ``torch.compile`` this is evaluated once, while tracing, and its result is a
    constant of the compiled graph.
    """
    requested, source = _requested(impl)
    if requested is not None:
        if requested not in supported:
            raise ImplUnavailableError(
                f"alae_fast.ops.{op}: {source}{requested!r} was requested, but this op has only {supported}"
            )
        reason = unavailable_reason(requested, device_type)
        if reason is not None:
            raise ImplUnavailableError(
                f"alae_fast.ops.{op}: {source}{requested!r} was requested but is unavailable: {reason}"
            )
        return requested
    chosen, skipped = auto_choice(op, device_type, supported)
    if skipped:
        _warn_skipped(op, chosen, skipped)
    return chosen


# What torch._dynamo.assume_constant_result sets, without importing torch._dynamo (which imports
# Triton) when alae_fast.ops is imported: tracing evaluates resolve_impl once, as a constant.
resolve_impl._dynamo_marked_constant = True  # type: ignore[attr-defined]
