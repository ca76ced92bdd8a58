#!/usr/bin/env python3
"""Write the verified-kernels record (alae_fast/verified_kernels.json) from a GPU test run.

Reads the JUnit XML of ``pytest tests/ops tests/nn tests/test_models.py --junitxml=...`` run
on a GPU, and records an (op, impl) pair as verified on this GPU when

* at least one test case of that op with that implementation on CUDA ran (test ids end in
  ``...-cuda-cuda]`` or ``...-triton-cuda]``; ``tests/ops/test_<op>.py`` holds the op's
  cases; in ``test_adain_conv2d.py`` the ``test_stats*`` cases are ``adain_stats``'s, and
  those that also run the convolution (``test_stats*conv*``) count for both ops), and all of
  them passed (a failure or an error in setup/teardown fails the pair; a skip is not a run);
* no module or model test (``tests/nn``, ``tests/test_models.py``) with that implementation
  on CUDA failed: those run the ops together and cannot name the culprit, so such a failure
  withholds every record of that implementation;
* (with ``--doctor``) the doctor's parity check of that pair did not fail;
* (with ``--partial``, for a run that was interrupted) the pair's test file is not the last one
  in the XML: that file may have been cut short.

The record keeps other GPU generations' records, and replaces this generation's (same major
compute capability, see ``alae_fast/verified.py``) records of every pair this run tested:
a pair that failed now loses its record. Exit status 0 when the record was written, 1 when
the XML holds no CUDA test case (nothing written), 2 on bad input.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alae_fast import verified  # noqa: E402
from alae_fast.ops._spec import REGISTRY  # noqa: E402

GPU_ID = re.compile(r"(?:^|-)(cuda|triton)-cuda(?:-|$)")
COMMENT = (
    "GPU kernels whose parity tests passed on a GPU; written by scripts/gpu_check.sh "
    "(scripts/record_verified.py). See alae_fast/verified.py for what a record covers."
)


def _module(classname: str) -> tuple[str, str] | None:
    """('ops' | 'other', test file stem) of a JUnit classname like tests.ops.test_blur."""
    parts = classname.split(".")
    for i, part in enumerate(parts):
        if part.startswith("test_"):
            return ("ops" if parts[:i] == ["tests", "ops"] else "other"), part[len("test_") :]
    return None


def ops_of(stem: str, test_name: str) -> list[str]:
    """The ops a case of tests/ops/test_<stem>.py verifies ([] for non-op files)."""
    if stem == "op_specs":  # the generic tests: one parameter of the id is an example's name
        tokens = set(test_name.split("[", 1)[-1].rstrip("]").split("-"))
        return [s.name for s in REGISTRY.values() if tokens & {e.name for e in s.examples}]
    if stem == "adain_conv2d":
        base = test_name.split("[")[0]
        if base.startswith("test_stats"):
            return ["adain_stats"] + (["adain_conv2d"] if "conv" in base[10:] else [])
        return ["adain_conv2d"]
    return [s.name for s in REGISTRY.values() if s.family == stem]


def _outcome(case: ET.Element) -> str:
    tags = {child.tag for child in case}
    if tags & {"failure", "error"}:
        return "failed"
    if "skipped" in tags:
        return "skipped"
    return "passed"


def read_junit(paths: list[Path]) -> tuple[dict, dict, list[str]]:
    """(pairs, blocked, op_files): per (op, impl) {"passed": n, "failed": [names], "file"},
    per impl the failed module/model cases, and the op test files in order of appearance."""
    pairs: dict[tuple[str, str], dict] = {}
    blocked: dict[str, list[str]] = {}
    files: list[str] = []
    for path in paths:
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as exc:
            raise SystemExit(f"record_verified: cannot read the JUnit XML {path}: {exc}") from exc
        for case in root.iter("testcase"):
            classname, name = case.get("classname", ""), case.get("name", "")
            where = _module(classname)
            params = name[name.find("[") + 1 : -1] if name.endswith("]") else ""
            match = GPU_ID.search(params)
            if where is None or match is None:
                continue
            impl, outcome = match.group(1), _outcome(case)
            kind, stem = where
            if kind == "ops" and stem not in files:
                files.append(stem)
            if outcome == "skipped":
                continue
            full = f"{classname}::{name}"
            if kind == "other":
                if outcome == "failed":
                    blocked.setdefault(impl, []).append(full)
                continue
            for op in ops_of(stem, name):
                entry = pairs.setdefault((op, impl), dict(passed=0, failed=[], file=stem))
                if outcome == "passed":
                    entry["passed"] += 1
                else:
                    entry["failed"].append(full)
    return pairs, blocked, files


def _doctor_failures(path: Path | None) -> dict[tuple[str, str], str]:
    if path is None:
        return {}
    try:
        checks = json.loads(path.read_text())["checks"]
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"record_verified: cannot read the doctor JSON {path}: {exc}") from exc
    return {(c["op"], c["impl"]): c["case"] for c in checks if not c["passed"]}


def _gpu() -> tuple[str, str]:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("record_verified: no GPU here; pass --device and --capability")
    major, minor = torch.cuda.get_device_capability()
    return torch.cuda.get_device_name(), f"{major}.{minor}"


def _versions() -> dict:
    from alae_fast.utils.versions import software_versions

    return software_versions()


def decide(pairs, blocked, files, doctor_failed, partial):
    """Per (op, impl): (verified, why)."""
    cut = files[-1] if partial and files else None
    verdicts = {}
    for (op, impl), entry in sorted(pairs.items()):
        if entry["failed"]:
            why = f"{len(entry['failed'])} failed, e.g. {entry['failed'][0]}"
        elif entry["passed"] == 0:
            why = "no case ran"
        elif impl in blocked:
            why = f"withheld: module/model test failed with {impl}: {blocked[impl][0]}"
        elif (op, impl) in doctor_failed:
            why = f"withheld: the doctor's check {doctor_failed[(op, impl)]} failed"
        elif entry["file"] == cut:
            why = f"withheld: the run was interrupted in tests/ops/test_{cut}.py"
        else:
            verdicts[(op, impl)] = (True, f"{entry['passed']} passed")
            continue
        verdicts[(op, impl)] = (False, why)
    return verdicts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--junit", type=Path, action="append", required=True, help="JUnit XML of the GPU test run (repeatable)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=verified.RECORD_PATH,
        help="record to update (default: the package's verified_kernels.json)",
    )
    p.add_argument("--doctor", type=Path, help="doctor --json output: its failures withhold")
    p.add_argument(
        "--partial", action="store_true", help="the test run was interrupted: withhold the last test file's ops"
    )
    p.add_argument("--device", help="GPU name (default: the current CUDA device's)")
    p.add_argument("--capability", help="compute capability 'major.minor' (default: the current CUDA device's)")
    p.add_argument("--date", default=datetime.date.today().isoformat())
    p.add_argument("--commit", help="the source commit that was tested (recorded if given)")
    args = p.parse_args(argv)

    pairs, blocked, files = read_junit(args.junit)
    if not pairs:
        print(
            "record_verified: the JUnit XML holds no CUDA case of any op "
            "(ids ending in -cuda-cuda] / -triton-cuda]); the record is left as it is"
        )
        return 1
    if (args.device is None) != (args.capability is None):
        p.error("--device and --capability go together")
    device, capability = (args.device, args.capability) if args.device else _gpu()
    if not re.fullmatch(r"\d+\.\d+", capability):
        p.error(f"--capability must be 'major.minor', got {capability!r}")
    major = capability.split(".")[0]
    verdicts = decide(pairs, blocked, files, _doctor_failures(args.doctor), args.partial)

    try:
        old = verified.load_records(args.out) if args.out.exists() else []
    except verified.VerifiedRecordError as exc:
        raise SystemExit(f"record_verified: {exc}") from exc
    tested = set(verdicts)
    kept = [r for r in old if not ((r["op"], r["impl"]) in tested and r["capability"].split(".")[0] == major)]
    versions = _versions()
    new = []
    for (op, impl), (ok, why) in verdicts.items():
        print(f"  {op:<16} {impl:<7} {'VERIFIED' if ok else 'not verified'}: {why}")
        if ok:
            rec = dict(
                op=op,
                impl=impl,
                device=device,
                capability=capability,
                torch=versions["torch"],
                triton=versions["triton"],
                cuda=versions["cuda"],
                python=versions["python"],
                date=args.date,
                tests=pairs[(op, impl)]["passed"],
            )
            if args.commit:
                rec["commit"] = args.commit
            new.append(rec)
    for impl, cases in blocked.items():
        print(f"  module/model tests failed with {impl} on CUDA: {len(cases)}, e.g. {cases[0]}")
    records = sorted(kept + new, key=lambda r: (r["op"], r["impl"], r["capability"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(format=verified.FORMAT, comment=COMMENT, records=records), indent=1) + "\n")
    verified.clear_cache()
    verified.load_records(args.out)  # what was written must parse
    print(
        f"record_verified: {len(new)} verified pair(s) on {device} ({capability}); "
        f"{len(records)} record(s) in {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
