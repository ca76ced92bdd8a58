"""Writes benchmarks/RESULTS.md at the end of `pytest benchmarks/`.

Each device keeps its own JSON file under benchmarks/results/ (rows, device, versions, date),
so a CPU run never overwrites the numbers a GPU run committed; RESULTS.md is rebuilt from all
of them.
"""

from __future__ import annotations

import datetime
import json
import platform
import re
from pathlib import Path

import torch

from . import bench_support

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device_label() -> str:
    if bench_support.DEVICE == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU: {_cpu_name()}, {torch.get_num_threads()} threads"


def _versions() -> dict:
    from alae_fast.utils.versions import software_versions

    return software_versions()


def _table(result: dict) -> list[str]:
    rows = result["rows"]
    times = {(r["op"], r["mode"], r["shape"], r["impl"]): r["median_us"] for r in rows}
    lines = [
        f"### {result['device']}",
        "",
        f"torch {result['versions']['torch']}, triton {result['versions']['triton']}, "
        f"CUDA {result['versions']['cuda']}, Python {result['versions']['python']}; "
        f"measured {result['date']}.",
        "",
        "| op | mode | shape | impl | median (µs) | GB/s | TFLOP/s | speed-up vs |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        baseline = r.get("baseline", "ref")
        base = times.get((r["op"], r["mode"], r["shape"], baseline))
        speedup = f"{base / r['median_us']:.2f}x {baseline}" if base and r["impl"] != baseline else "-"
        gbps = f"{r['gbps']:.2f}" if r["gbps"] else "-"
        tflops = f"{r['tflops']:.3f}" if r.get("tflops") else "-"
        lines.append(
            f"| {r['op']} | {r['mode']} | {r['shape']} | {r['impl']} | "
            f"{r['median_us']:.1f} | {gbps} | {tflops} | {speedup} |"
        )
    return lines + [""]


def write_markdown() -> None:
    results = [json.loads(p.read_text()) for p in sorted(RESULTS_DIR.glob("*.json"))]
    lines = [
        "# Benchmark results",
        "",
        "Written by `pytest benchmarks/` (one section per device; each run replaces its "
        "own device's section). Median wall time per call, synchronised on GPU; GB/s "
        "counts the bytes each call must read and write; speed-up is the reference "
        "PyTorch time over the implementation's (where the column names another impl, that "
        "row's time over this one's). `forward` runs without autograd, "
        "`forward+backward` includes the backward pass. `training iteration` rows time "
        "one ALAE iteration (each step with its optimizer step, `benchmarks/"
        "test_iteration.py`): `ref` is the reference model eager, `fast` the model after "
        "`alae_fast.optimize` with the fused optimizer, `compile(ref)` the reference "
        "networks under `torch.compile` where that works: AOTAutograd cannot "
        "differentiate a compiled graph twice, so its D step (R1) runs eager.",
        "",
    ]
    for result in results:
        lines += _table(result)
    # Keep the "## " sections that scripts write (Triton compile check, distributed training).
    old = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
    kept = old[old.index("\n## ") + 1 :] if "\n## " in old else ""
    RESULTS_MD.write_text("\n".join(lines) + ("\n" + kept if kept else ""))


def pytest_sessionfinish(session, exitstatus):
    if not bench_support.ROWS:
        return
    label = _device_label()
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9]+", "-", label.split(",")[0]).strip("-").lower()
    order = {"ref": 0, "cpu": 1, "cuda": 1, "triton": 2}
    rows = sorted(bench_support.ROWS, key=lambda r: (r["op"], r["mode"], r["shape"], order.get(r["impl"], 9)))
    path = RESULTS_DIR / f"{stem}.json"
    # A partial run (one file, -k) replaces only the rows it measured.
    key = lambda r: (r["op"], r["mode"], r["shape"], r["impl"])  # noqa: E731
    fresh = {key(r) for r in rows}
    if path.exists():
        kept = [r for r in json.loads(path.read_text())["rows"] if key(r) not in fresh]
        rows = sorted(kept + rows, key=lambda r: (r["op"], r["mode"], r["shape"], order.get(r["impl"], 9)))
    result = dict(device=label, versions=_versions(), date=datetime.date.today().isoformat(), rows=rows)
    path.write_text(json.dumps(result, indent=1) + "\n")
    write_markdown()
