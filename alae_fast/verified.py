"""Which GPU kernels have passed their parity tests on a GPU: ``alae_fast/verified_kernels.json``.

On CUDA tensors the automatic choice (:mod:`alae_fast.ops._dispatch`) takes a CUDA or Triton
kernel of an op only when this record lists it; otherwise it runs the reference PyTorch op.
The record is written by ``scripts/gpu_check.sh`` (through ``scripts/record_verified.py``) from
the outcome of ``pytest tests/ops`` on a GPU, and committed with the code it verified.

Record semantics: one record verifies an (op, implementation) pair on every GPU of the same
**major** compute capability as the GPU it was measured on (one record from an H100, 9.0, also
covers an H200, 9.0; one from an A100, 8.0, covers 8.6 and 8.9 cards, but not 9.0). A major
capability is one architecture generation: the same instructions, shared-memory and
warp-level behaviour the kernels rely on, and ``TORCH_CUDA_ARCH_LIST`` builds one binary per
generation (8.0, 9.0). A record from another generation does not count: the kernels then run
other machine code (and Triton compiles them for other hardware), which nothing has tested.
The software versions (torch, Triton, CUDA) and the date are recorded for provenance only: a
newer torch does not invalidate a record (the parity tests are the project's CI, rerun them
with ``scripts/gpu_check.sh`` when in doubt). ``alae-fast doctor --device cuda`` checks the
kernels on the GPU at hand in seconds either way.

File format::

    {"format": 1, "records": [{"op": "blur", "impl": "cuda", "device": "NVIDIA H100 80GB HBM3",
      "capability": "9.0", "torch": "2.11.0+cu130", "triton": "3.6.0", "cuda": "13.0",
      "date": "2026-12-01", "tests": 57}, ...]}

(``tests``, the number of passed test cases, and any other extra key are optional.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .ops._spec import REGISTRY

__all__ = [
    "OPS",
    "GPU_IMPLS",
    "RECORD_PATH",
    "VerifiedRecordError",
    "load_records",
    "find_record",
    "is_verified",
    "clear_cache",
]

# Every op with interchangeable implementations: the op registry (importing it loads no
# kernels).
OPS = tuple(REGISTRY)
GPU_IMPLS = ("cuda", "triton")
RECORD_PATH = Path(__file__).resolve().with_name("verified_kernels.json")
FORMAT = 1
REQUIRED = ("op", "impl", "device", "capability", "torch", "triton", "cuda", "date")

_cache: dict[str, list[dict]] = {}
# find_record runs on every automatic CUDA op call: its answers are memoised.
_found: dict[tuple, dict | None] = {}


class VerifiedRecordError(ValueError):
    """The record file cannot be read or is malformed (the message names the file)."""


def _parse_capability(value) -> tuple[int, int] | None:
    m = re.fullmatch(r"(\d+)\.(\d+)", value) if isinstance(value, str) else None
    return (int(m.group(1)), int(m.group(2))) if m else None


def _major(record: dict) -> int:
    """The major compute capability of a record :func:`load_records` validated."""
    cap = _parse_capability(record["capability"])
    if cap is None:
        raise VerifiedRecordError(f"record has capability {record['capability']!r}, not 'X.Y'")
    return cap[0]


def _validate(data, where: str) -> list[dict]:
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise VerifiedRecordError(f"{where}: expected an object with a 'records' list")
    if data.get("format") != FORMAT:
        raise VerifiedRecordError(
            f"{where}: unknown format {data.get('format')!r} (this version reads format {FORMAT})"
        )
    for i, rec in enumerate(data["records"]):
        if not isinstance(rec, dict):
            raise VerifiedRecordError(f"{where}: records[{i}] is not an object")
        for key in REQUIRED:
            if not isinstance(rec.get(key), str) or not rec[key]:
                raise VerifiedRecordError(f"{where}: records[{i}] needs a non-empty string '{key}'")
        if rec["op"] not in OPS:
            raise VerifiedRecordError(f"{where}: records[{i}] has unknown op {rec['op']!r} (one of {OPS})")
        if rec["impl"] not in GPU_IMPLS:
            raise VerifiedRecordError(
                f"{where}: records[{i}] has impl {rec['impl']!r}; GPU records are for {GPU_IMPLS}"
            )
        if _parse_capability(rec["capability"]) is None:
            raise VerifiedRecordError(
                f"{where}: records[{i}] has capability {rec['capability']!r}; expected 'major.minor', e.g. '9.0'"
            )
    return data["records"]


def load_records(path: str | Path | None = None) -> list[dict]:
    """The records of ``path`` (default: the package's ``verified_kernels.json``), validated
    and cached; raises :class:`VerifiedRecordError` naming the file when it is unreadable."""
    path = Path(path) if path is not None else RECORD_PATH
    key = str(path)
    if key not in _cache:
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise VerifiedRecordError(
                f"{path}: cannot read the verified-kernels record ({exc.strerror or exc})"
            ) from exc
        except json.JSONDecodeError as exc:
            raise VerifiedRecordError(f"{path}: not valid JSON ({exc})") from exc
        _cache[key] = _validate(data, str(path))
    return _cache[key]


def clear_cache() -> None:
    """Forget the parsed records (after the file was rewritten, or in tests)."""
    _cache.clear()
    _found.clear()


def find_record(op: str, impl: str, capability: tuple[int, int], path: str | Path | None = None) -> dict | None:
    """The latest record that verifies ``impl`` of ``op`` on a GPU of ``capability`` (same
    major compute capability), or None."""
    key = (op, impl, capability[0], str(RECORD_PATH if path is None else path))
    if key not in _found:
        found = [r for r in load_records(path) if r["op"] == op and r["impl"] == impl and _major(r) == capability[0]]
        _found[key] = max(found, key=lambda r: r["date"]) if found else None
    return _found[key]


def is_verified(op: str, impl: str, capability: tuple[int, int], path: str | Path | None = None) -> bool:
    """True when ``impl`` of ``op`` passed its GPU parity tests on this GPU generation."""
    return find_record(op, impl, capability, path) is not None
