"""``alae-fast doctor``: what this installation runs, and a quick parity check of every kernel.

Three parts:

* the environment: Python, torch (and the CUDA runtime it was built with), Triton, the GPU and
  its compute capability, whether the extension ``alae_fast._C`` loads and has CUDA kernels,
  the GPU verification record (:mod:`alae_fast.verified`);
* the implementation each op's automatic choice takes on the device, and why (the automatic
  order, which implementations are unavailable and the reason, which are unverified);
* a parity check of every available implementation except ``ref`` of every op against the
  op's reference twin on the device: small odd shapes, float32, forward, first-order
  gradients, and second-order gradients for the ops on the R1 path. It takes seconds.

Exit status (through :func:`alae_fast.cli.main`): 0 when every check passes, 1 on any mismatch
or error, 2 on a usage error.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["CASES", "OUT_TOL", "GRAD_TOL", "DoctorUsageError", "run_doctor"]

# Tolerances: the project standard for float32 parity, as a fraction of the reference tensor's
# largest |value|. Rounding bound (Higham): a float32 sum of K terms is off by at most
# K * u * sum|terms|, u = 2**-24; the largest reduction here is N*C*H*W = 3*5*7*7 = 735 terms
# of positive magnitude (the loss means, sum of squares), and the kernel and the reference
# each carry such an error in another summation order. Blocked/pairwise summation keeps the
# actual error near sqrt(K) * u * sum|terms| = 1.6e-6 of the result: OUT_TOL leaves 6x room.
# Gradients chain 2-3 such reductions (instance-norm backward subtracts per-channel means,
# which cancels), so they get the standard's 10x wider GRAD_TOL; a real bug (a wrong index, a
# missing term, a factor off by 1e-3) is far above both.
OUT_TOL = 1e-5
GRAD_TOL = 1e-4

N, C, H, W = 3, 5, 7, 7  # small odd shapes: every kernel's tail/masking path runs


class DoctorUsageError(ValueError):
    """The doctor cannot run as asked (e.g. ``--device cuda`` without a GPU)."""


def _ops():
    from . import ops  # looked up at call time, so a patched op is what gets checked

    return ops


@dataclass
class Case:
    """One parity check: ``inputs(device)`` makes float32 tensors, ``call(t, impl)`` runs the
    op (``impl=None``: the reference twin); ``grad`` names the inputs to differentiate."""

    name: str
    op: str
    inputs: Callable[[torch.device], dict]
    call: Callable[[dict, str | None], object]
    grad: tuple[str, ...] = ()
    second_order: bool = False
    supported: tuple[str, ...] = ("ref", "triton", "cuda", "cpu")


def _randn(shape, device, seed, scale=1.0):
    """Seeded N(0, scale^2) drawn in float64 on the CPU: the same numbers on every device."""
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(device, torch.float32)


def _case(spec, example) -> Case:
    """The doctor's check of one example of an op of the registry."""

    def call(t, impl):
        if impl is None:
            return example.run(spec.ref, t)
        public = getattr(_ops(), spec.name)
        return example.run(lambda *a, **kw: public(*a, **kw, impl=impl), t)

    return Case(example.name, spec.name, example.make, call, example.grad, spec.grad_order >= 2, spec.impls)


def _registry_cases() -> list[Case]:
    from .ops._spec import REGISTRY

    return [_case(spec, ex) for spec in REGISTRY.values() for ex in spec.examples]


CASES = _registry_cases()


# --------------------------------------------------------------------------------------------
# Parity
# --------------------------------------------------------------------------------------------


def _rel_err(ours, ref) -> float:
    """max |ours - ref| over max |ref| (the absolute error where ref is all zeros)."""
    if ours is None and ref is None:
        return 0.0
    if ours is None or ref is None:
        ours = torch.zeros_like(ref) if ours is None else ours
        ref = torch.zeros_like(ours) if ref is None else ref
    if ours.shape != ref.shape:
        return float("inf")
    ours, ref = ours.detach().double(), ref.detach().double()
    diff = (ours - ref).abs().max().item() if ref.numel() else 0.0
    scale = ref.abs().max().item() if ref.numel() else 0.0
    if diff != diff:  # NaN
        return float("inf")
    return diff / scale if scale > 0 else diff


def _as_list(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _run_side(case: Case, base: dict, impl: str | None, second: bool):
    """Forward, first- and (with ``second``) second-order gradients of one side."""
    t = {k: v.detach().clone().requires_grad_(k in case.grad) if torch.is_tensor(v) else v for k, v in base.items()}
    outs = _as_list(case.call(t, impl))
    if not case.grad:
        return outs, None, None
    xs = [t[k] for k in case.grad]
    float_outs = [o for o in outs if o.requires_grad]
    ups = [_randn(o.shape, o.device, 100 + i).requires_grad_(second) for i, o in enumerate(float_outs)]
    grads = torch.autograd.grad(float_outs, xs, ups, create_graph=second, allow_unused=True)
    if not second:
        return outs, list(grads), None
    # Second order as gradgradcheck does it: d/d(inputs, upstream) of sum(grad * v).
    total = sum(
        (g * _randn(g.shape, g.device, 200 + i)).sum() for i, g in enumerate(grads) if g is not None and g.requires_grad
    )
    grads2 = torch.autograd.grad(total, xs + ups, allow_unused=True)
    return outs, list(grads), list(grads2)


def check_case(case: Case, impl: str, device: torch.device) -> dict:
    """Parity of ``impl`` against the reference twin for one case, as a result row."""
    start = time.perf_counter()
    row: dict[str, Any] = dict(
        case=case.name, op=case.op, impl=impl, forward=None, backward=None, second_order=None, passed=False, error=None
    )
    try:
        base = case.inputs(device)
        ref = _run_side(case, base, None, case.second_order)
        ours = _run_side(case, base, impl, case.second_order)
        if len(ours[0]) != len(ref[0]):
            raise RuntimeError(f"{len(ours[0])} outputs, the reference has {len(ref[0])}")
        row["forward"] = max(_rel_err(o, r) for o, r in zip(ours[0], ref[0]))
        if ref[1] is not None:
            row["backward"] = max(_rel_err(o, r) for o, r in zip(ours[1], ref[1]))
        if ref[2] is not None:
            row["second_order"] = max(_rel_err(o, r) for o, r in zip(ours[2], ref[2]))
        if device.type == "cuda":
            torch.cuda.synchronize()
        row["passed"] = (
            row["forward"] <= OUT_TOL
            and (row["backward"] is None or row["backward"] <= GRAD_TOL)
            and (row["second_order"] is None or row["second_order"] <= GRAD_TOL)
        )
    except Exception as exc:  # a kernel that raises is a failed check, reported by name
        row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    row["seconds"] = round(time.perf_counter() - start, 4)
    return row


# --------------------------------------------------------------------------------------------
# Environment and choices
# --------------------------------------------------------------------------------------------


def environment(device: torch.device) -> dict:
    from .ops import _extension
    from .utils.versions import software_versions

    versions = software_versions()
    env = dict(
        python=versions["python"],
        torch=versions["torch"],
        torch_cuda=versions["cuda"],
        triton=versions["triton"],
        cuda_available=torch.cuda.is_available(),
        gpu=None,
        capability=None,
        extension_loads=_extension.load(),
        extension_error=_extension.error(),
        extension_cuda_kernels=False,
        triton_interpret=os.environ.get("TRITON_INTERPRET") == "1",
        impl_env=os.environ.get("ALAE_FAST_IMPL") or None,
    )
    if env["extension_loads"]:
        env["extension_cuda_kernels"] = bool(_extension.has_cuda_kernels())
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["capability"] = "{}.{}".format(*torch.cuda.get_device_capability(device))
        env["cuda_runtime"] = torch.version.cuda
    return env


def choices(device: torch.device) -> list[dict]:
    """Per op: the automatic order, each implementation's state, the choice and why."""
    from .ops import _dispatch

    rows = []
    for op in dict.fromkeys(c.op for c in CASES):
        supported = next(c.supported for c in CASES if c.op == op)
        order = [i for i in _dispatch.auto_order(op, device.type) if i in supported]
        impls = []
        for impl in _dispatch.IMPLS:
            if impl == "ref" or impl not in supported:
                continue
            reason = _dispatch.unavailable_reason(impl, device.type)
            ok, why = _dispatch.verification(op, impl, device.type)
            impls.append(
                dict(
                    impl=impl,
                    available=reason is None,
                    reason=reason,
                    in_auto_order=impl in order,
                    verified=ok if why != "not gated" else None,
                    verification=why if why != "not gated" else None,
                )
            )
        chosen, skipped = _dispatch.auto_choice(op, device.type, supported)
        skips = [f"{name} {kind}" for name, kind, _ in skipped]
        rows.append(
            dict(
                op=op,
                order=order,
                chosen=chosen,
                impls=impls,
                why=("first in order" if not skips else "skipped: " + ", ".join(skips)),
            )
        )
    return rows


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.1e}"


def _print_environment(env: dict, device: torch.device, out) -> None:
    from . import verified

    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"alae-fast doctor: device {device.type}")
    p(f"  python     {env['python']}")
    p(
        f"  torch      {env['torch']} (built with CUDA {env['torch_cuda']}; "
        f"torch.cuda.is_available() = {env['cuda_available']})"
    )
    p(
        f"  triton     {env['triton']}"
        + (" (TRITON_INTERPRET=1: Triton runs CPU tensors interpreted)" if env["triton_interpret"] else "")
    )
    if env["gpu"]:
        p(f"  GPU        {env['gpu']}, compute capability {env['capability']}, CUDA runtime {env['cuda_runtime']}")
    else:
        p("  GPU        none used" + (" (CUDA is available: --device cuda checks it)" if env["cuda_available"] else ""))
    if env["extension_loads"]:
        p(
            f"  extension  alae_fast._C loads; CUDA kernels: "
            f"{'yes' if env['extension_cuda_kernels'] else 'no (CPU-only build)'}"
        )
    else:
        p(f"  extension  does not load: {env['extension_error']}")
    try:
        n = len(verified.load_records())
        p(f"  record     {verified.RECORD_PATH}: {n} verified GPU kernel record(s)")
    except verified.VerifiedRecordError as exc:
        p(f"  record     ERROR: {exc}")
    if env["impl_env"]:
        p(f"  ALAE_FAST_IMPL={env['impl_env']} is set: it overrides the automatic choice below for every op")


def _print_choices(rows: list[dict], device: torch.device, out) -> None:
    print(f"\nautomatic choice per op on {device.type} (impl=None, ALAE_FAST_IMPL unset):", file=out)
    reasons: dict[str, list[str]] = {}
    for r in rows:
        parts, extra = [], []
        rank = {name: k for k, name in enumerate(r["order"])}
        for i in sorted(r["impls"], key=lambda i: rank.get(i["impl"], len(rank))):
            if i["in_auto_order"]:
                state = "available" if i["available"] else "unavailable"
                if i["verified"] is not None:
                    state += ", verified" if i["verified"] else ", unverified"
                parts.append(f"{i['impl']} {state}")
            elif i["available"]:
                extra.append(i["impl"])
            if i["in_auto_order"] and not i["available"]:
                reasons.setdefault(f"{i['impl']}: {i['reason']}", []).append(r["op"])
            if i["in_auto_order"] and i["verified"] is False:
                reasons.setdefault(f"{i['impl']}: {i['verification']}", []).append(r["op"])
        line = f"  {r['op']:<16} -> {r['chosen']:<6} order {' > '.join(r['order'])}"
        if parts:
            line += f"; {', '.join(parts)}"
        if extra:
            line += f" (also available on request: {', '.join(extra)})"
        print(line, file=out)
    for reason, ops in reasons.items():
        print(f"  why {reason} [{len(ops)} op(s)]", file=out)
    if any(i["verified"] is False for r in rows for i in r["impls"]):
        print(
            "  unverified kernels are skipped by the automatic choice: verify them with "
            "scripts/gpu_check.sh, or opt in with impl=... / ALAE_FAST_IMPL=cuda|triton",
            file=out,
        )


def run_doctor(device: str | None = None, json_path: str | None = None, out=None) -> int:
    """Print the report to ``out`` (default stdout), write ``json_path``; the exit status."""
    import sys

    from . import verified

    out = out or sys.stdout
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise DoctorUsageError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise DoctorUsageError(
            f"--device cuda, but torch.cuda.is_available() is False here (torch "
            f"{torch.__version__}, built with CUDA {torch.version.cuda or 'none'}): no usable GPU"
        )
    dev = torch.device(device)
    start = time.perf_counter()
    env = environment(dev)
    _print_environment(env, dev, out)

    problems = []
    try:
        verified.load_records()
    except verified.VerifiedRecordError as exc:
        problems.append(str(exc))
    try:
        rows = choices(dev)
        _print_choices(rows, dev, out)
    except verified.VerifiedRecordError as exc:
        rows = []
        print(f"\nautomatic choice: ERROR: {exc}", file=out)

    from .ops import _dispatch

    old_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    checks = []
    print(
        f"\nparity against the reference twins on {device} (float32, N={N} C={C} H=W={H}; "
        f"max error / max |reference|, outputs <= {OUT_TOL:g}, gradients <= {GRAD_TOL:g}):",
        file=out,
    )
    print(f"  {'op':<18}{'impl':<8}{'forward':>9}{'grad':>9}{'grad2':>9}", file=out)
    try:
        for case in CASES:
            for impl in _dispatch.available_impls(device, case.supported):
                if impl == "ref":
                    continue
                row = check_case(case, impl, dev)
                checks.append(row)
                verdict = "PASS" if row["passed"] else "FAIL"
                line = (
                    f"  {case.name:<18}{impl:<8}{_fmt(row['forward']):>9}"
                    f"{_fmt(row['backward']):>9}{_fmt(row['second_order']):>9}  {verdict}"
                )
                if row["error"]:
                    line += f"  {row['error']}"
                print(line, file=out)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old_tf32
    failed = [f"{r['case']} ({r['impl']})" for r in checks if not r["passed"]]
    seconds = time.perf_counter() - start
    if not checks:
        print("  nothing to check: no implementation other than ref is available here", file=out)
    if failed:
        print(f"\nFAIL: {len(failed)} of {len(checks)} checks: {', '.join(failed)}", file=out)
    if problems:
        print(f"\nFAIL: {'; '.join(problems)}", file=out)
    if not failed and not problems:
        print(f"\nall {len(checks)} checks PASS ({seconds:.1f} s)", file=out)
    passed = not failed and not problems
    if json_path:
        tolerances = dict(output=OUT_TOL, gradient=GRAD_TOL)
        result: dict[str, Any] = dict(device=device, environment=env, ops=rows, checks=checks)
        result.update(tolerances=tolerances, problems=problems, passed=passed, seconds=round(seconds, 3))
        Path(json_path).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if passed else 1
