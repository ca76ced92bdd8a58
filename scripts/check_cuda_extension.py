"""Check that a built ``alae_fast._C`` has a CPU and a CUDA kernel for every kernel op.

Needs no GPU: loading the library runs its ``TORCH_LIBRARY`` registrations, and the dispatcher
then says which dispatch keys have a kernel. Run it with the python of the torch the library
was built against:

    python scripts/check_cuda_extension.py [--so PATH | --root DIR]

It prints one line per op of the ``alae_fast_C`` namespace and a summary line. Exit status:
0 when every op has a CPU kernel and a CUDA kernel (or is a listed CUDA exception), 1 when one
is missing or an exception is stale, 2 when the library is not found, does not load or
registers no op.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

NAMESPACE = "alae_fast_C"
KEYS = ("CPU", "CUDA")

# The only ops allowed to lack a CUDA kernel, each with its reason. An entry whose op gains a
# CUDA kernel or is no longer registered fails the check, so the list cannot go stale.
CUDA_EXCEPTIONS = {"linear_act_fwd": "linear_act has no CUDA kernel by design: on a GPU it runs as Triton"}


@dataclass(frozen=True)
class OpStatus:
    """One registered op and whether each dispatch key of KEYS has a kernel for it."""

    name: str  # without the namespace, e.g. "blur_fwd"
    kernels: dict


def find_library(root: Path) -> Path:
    """The single ``alae_fast/_C*.so`` under ``root``; ValueError naming ``root`` otherwise."""
    found = sorted((Path(root) / "alae_fast").glob("_C*.so"))
    if len(found) != 1:
        raise ValueError(f"root {str(root)!r}: expected one alae_fast/_C*.so, found {[p.name for p in found]}")
    return found[0]


def load_and_list(so_path: Path) -> list[OpStatus]:
    """Load the library into this process and list its ops with their kernels per key."""
    import torch  # here, not at import time, so that evaluate() is testable without loading

    torch.ops.load_library(str(so_path))
    prefix = NAMESPACE + "::"
    names = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith(prefix))
    return [
        OpStatus(n[len(prefix) :], {k: bool(torch._C._dispatch_has_kernel_for_dispatch_key(n, k)) for k in KEYS})
        for n in names
    ]


def evaluate(ops: list[OpStatus], exceptions: dict = CUDA_EXCEPTIONS) -> tuple[list, list]:
    """Table lines (one per op) and the problems found; no problem means the check passes."""
    lines, problems = [], []
    if not ops:
        problems.append(f"no op registered in the {NAMESPACE} namespace")
    width = max([len(op.name) for op in ops] + [len("op")])
    lines.append(f"  {'op':<{width}}  " + "  ".join(f"{k:<4}" for k in KEYS))
    for op in ops:
        # "ok": a kernel; "--": none, as allowed; "NO": none, and that fails the check.
        allowed = {"CUDA"} if op.name in exceptions else set()
        marks = "  ".join(f"{'ok' if op.kernels[k] else '--' if k in allowed else 'NO':<4}" for k in KEYS)
        note = ""
        if not op.kernels["CPU"]:
            problems.append(f"{op.name}: no CPU kernel")
        if op.name in exceptions:
            note = f"  (allowed: {exceptions[op.name]})"
            if op.kernels["CUDA"]:
                problems.append(f"{op.name}: has a CUDA kernel now; remove it from CUDA_EXCEPTIONS")
        elif not op.kernels["CUDA"]:
            problems.append(f"{op.name}: no CUDA kernel")
        lines.append(f"  {op.name:<{width}}  {marks}{note}")
    registered = {op.name for op in ops}
    for name in sorted(set(exceptions) - registered):
        problems.append(f"{name}: listed in CUDA_EXCEPTIONS but not registered; remove it")
    return lines, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--so", type=Path, help="path of the built library")
    where.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parents[1],
        help="tree holding alae_fast/_C*.so (default: this repository)",
    )
    args = parser.parse_args(argv)
    try:
        so_path = args.so if args.so is not None else find_library(args.root)
        if not so_path.is_file():
            raise ValueError(f"so {str(so_path)!r}: no such file")
        ops = load_and_list(so_path)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"check_cuda_extension: FAIL: cannot load the extension: {exc}")
        return 2
    import torch

    print(f"library: {so_path}")
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), GPU available: {torch.cuda.is_available()}")
    lines, problems = evaluate(ops)
    print("\n".join(lines))
    for problem in problems:
        print(f"PROBLEM: {problem}")
    with_cuda = sum(op.kernels["CUDA"] for op in ops)
    verdict = "FAIL" if problems else "PASS"
    print(
        f"check_cuda_extension: {verdict}: {len(ops)} ops, {with_cuda} with a CUDA kernel, "
        f"{len(ops) - with_cuda} without ({len(CUDA_EXCEPTIONS)} allowed), "
        f"{len(problems)} problem(s)"
    )
    if not ops:
        return 2
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
