#!/usr/bin/env bash
# The GPU check: on a bare GPU machine (torch with CUDA and Triton installed, no internet), build
# the extension with its CUDA kernels, run `alae-fast doctor --device cuda`, the CUDA/Triton
# parity tests, record the verified kernels (scripts/record_verified.py) and run the GPU
# benchmarks. Everything it writes goes to ${OUT:-gpu_check_out}/ (at most 7 files):
#   log.txt  build.log  doctor.json  junit.xml  verified_kernels.json  RESULTS.md  <gpu>.json
#
# Usage: scripts/gpu_check.sh [--quick] [--all-tests] [--dry-run]  (exit 1: a stage failed)
#   (default)    the GPU cases (-k cuda) of tests/ops, tests/nn, tests/test_models.py, benchmarks
#   --quick      the GPU cases of tests/ops only, no benchmarks: well under 4 minutes
#   --all-tests  every case of those paths (the CPU ones too), time permitting
#   --dry-run    CPU rehearsal: no build, doctor on cpu, one test file, record into OUT only
# Environment: GPU_CHECK_BUDGET (seconds, default 540, --quick 200), MAX_JOBS (16),
#   TORCH_CUDA_ARCH_LIST (default: this GPU's capability only), ALAE_FAST_BENCH_COMPILE (0).
# Wheels for a machine without pytest/pytest-benchmark/ninja: put them in .whl/ (installed
# with --no-index --no-deps first).
set -uo pipefail
cd "$(dirname "$0")/.."

QUICK=0
DRY=0
ALL_TESTS=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --dry-run) DRY=1 ;;
    --all-tests) ALL_TESTS=1 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check: unknown option '$arg' (--quick, --dry-run, --all-tests)" >&2; exit 2 ;;
  esac
done

OUTDIR=${OUT:-gpu_check_out}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
exec > >(tee -a "$OUTDIR/log.txt") 2>&1
TEE_PID=$!

PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# Parity tests and the doctor compare float32 results: no TF32 anywhere (the tests set it too).
export NVIDIA_TF32_OVERRIDE=0
unset TRITON_INTERPRET   # real Triton on the GPU: interpreted cases are deselected

if [ "$QUICK" = 1 ]; then BUDGET=${GPU_CHECK_BUDGET:-200}; else BUDGET=${GPU_CHECK_BUDGET:-540}; fi
START=$(date +%s)
STAGE_TIMES=()

elapsed() { echo $(( $(date +%s) - START )); }
# budget CAP RESERVE: a stage's timeout, at most CAP, leaving RESERVE seconds for later stages.
budget() {
  local left=$(( BUDGET - $(elapsed) - $2 ))
  [ "$left" -gt "$1" ] && left=$1
  [ "$left" -lt 10 ] && left=10
  echo "$left"
}
stage() { STAGE_NAME=$1; STAGE_START=$(date +%s); echo; echo "=== [$(elapsed) s] $1"; }
stage_end() {
  local t=$(( $(date +%s) - STAGE_START ))
  STAGE_TIMES+=("$(printf '%-12s %4d s  %s' "$STAGE_NAME" "$t" "$1")")
  echo "=== $STAGE_NAME: $1 ($t s)"
}
# has MODULE: installed (found without importing it)
has() {
  "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('$1') is None)" 2>/dev/null
}
FAILED=()

echo "gpu_check: $(date -u +%FT%TZ) quick=$QUICK dry_run=$DRY budget=${BUDGET}s out=$OUTDIR"
COMMIT=$(git rev-parse HEAD 2>/dev/null || true)
[ -n "$COMMIT" ] && echo "commit $COMMIT"

# ---------------------------------------------------------------------------------------------
stage info
nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not available"
CAP=$("$PY" - <<'EOF' | tee /dev/stderr | sed -n 's/^capability //p'
import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda})")
try:
    import triton; print(f"triton {triton.__version__}")
except ImportError:
    print("triton: not installed")
if torch.cuda.is_available():
    print(f"GPU {torch.cuda.get_device_name()}")
    print("capability %d.%d" % torch.cuda.get_device_capability())
else:
    print("GPU: none visible to torch")
EOF
)
if [ "$DRY" = 0 ] && [ -z "$CAP" ]; then
  echo "gpu_check: torch sees no GPU; use --dry-run for a CPU rehearsal" >&2
  exit 2
fi
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  echo "installing the carried wheels: $(ls .whl/*.whl | xargs -n1 basename | tr '\n' ' ')"
  "$PY" -m pip install --no-index --no-deps --quiet .whl/*.whl \
    || echo "gpu_check: wheel install failed"
fi
for mod in pytest pytest_benchmark ninja; do
  if has "$mod"; then echo "$mod: present"; else echo "$mod: MISSING"; fi
done
has pytest || echo "gpu_check: pytest is missing and there is no internet: the parity tests" \
  "and benchmarks will be skipped; carry wheels in .whl/ (pytest, pluggy, iniconfig, packaging," \
  "pytest-benchmark, py-cpuinfo)"
has ninja || echo "gpu_check: ninja is missing: the build compiles without it (MAX_JOBS still" \
  "parallelises build_ext) but may be slower"
stage_end done

# ---------------------------------------------------------------------------------------------
stage build
if [ "$DRY" = 1 ]; then
  stage_end "skipped (dry run: the extension in the tree is used)"
else
  export ALAE_FAST_CUDA=1 MAX_JOBS=${MAX_JOBS:-16}
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$CAP}
  T=$(budget 300 "$([ "$QUICK" = 1 ] && echo 60 || echo 200)")
  echo "pip install --no-build-isolation --no-deps -e ." \
    "(TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, MAX_JOBS=$MAX_JOBS, timeout ${T}s; build.log)"
  if timeout "$T" "$PY" -m pip install --no-build-isolation --no-deps -e . \
       >"$OUTDIR/build.log" 2>&1; then
    BUILD="pip install -e . ok"
  else
    echo "pip install failed (tail of build.log below); trying setup.py build_ext --inplace"
    tail -20 "$OUTDIR/build.log"
    T=$(budget 300 60)
    if timeout "$T" "$PY" setup.py build_ext --inplace >>"$OUTDIR/build.log" 2>&1; then
      BUILD="build_ext --inplace ok"
    else
      BUILD="FAILED"
      FAILED+=("build")
      tail -40 "$OUTDIR/build.log"
    fi
  fi
  "$PY" -c "from alae_fast.ops import _extension as e; import sys; \
print('extension loads:', e.load(), e.error() or ''); print('CUDA kernels:', e.has_cuda_kernels())"
  stage_end "$BUILD"
fi

# ---------------------------------------------------------------------------------------------
stage doctor
DEVICE=cuda
[ "$DRY" = 1 ] && DEVICE=cpu
T=$(budget 120 "$([ "$QUICK" = 1 ] && echo 60 || echo 150)")
timeout "$T" "$PY" -m alae_fast.cli doctor --device "$DEVICE" --json "$OUTDIR/doctor.json"
RC=$?
[ "$RC" = 0 ] || FAILED+=("doctor")
stage_end "exit $RC (0 all pass, 1 mismatch, 124 timeout)"

# ---------------------------------------------------------------------------------------------
stage tests
TEST_RC=none
if has pytest; then
  if [ "$DRY" = 1 ]; then
    TARGETS=(tests/ops/test_blur.py)
    SELECT=(-k "cpu-cpu")
  else
    # The GPU cases (ids ...-cuda-cuda, ...-triton-cuda); the CPU cases run in every CI run.
    TARGETS=(tests/ops tests/nn tests/test_models.py)
    SELECT=(-k cuda)
    [ "$QUICK" = 1 ] && TARGETS=(tests/ops)
    [ "$ALL_TESTS" = 1 ] && SELECT=()
  fi
  T=$(budget 330 "$([ "$QUICK" = 1 ] && echo 15 || echo 120)")
  echo "pytest ${TARGETS[*]} ${SELECT[*]} (timeout ${T}s)"
  # SIGINT first: pytest then stops cleanly and still writes the JUnit XML. One process, in
  # file order: record_verified --partial relies on the cut-short file being the last one.
  timeout -s INT -k 20 "$T" "$PY" -m pytest "${TARGETS[@]}" "${SELECT[@]}" -q \
    -p no:cacheprovider -o addopts="" -rfE --junitxml="$OUTDIR/junit.xml"
  TEST_RC=$?
  [ "$TEST_RC" = 0 ] || FAILED+=("tests")
  stage_end "pytest exit $TEST_RC (0 pass, 1 failures, 2 interrupted, 124 timeout)"
else
  FAILED+=("tests (pytest missing)")
  stage_end "SKIPPED: pytest missing"
fi

# ---------------------------------------------------------------------------------------------
stage record
if [ -f "$OUTDIR/junit.xml" ]; then
  ARGS=(--junit "$OUTDIR/junit.xml")
  [ -f "$OUTDIR/doctor.json" ] && ARGS+=(--doctor "$OUTDIR/doctor.json")
  case "$TEST_RC" in 2|124|137) ARGS+=(--partial) ;; esac
  [ -n "$COMMIT" ] && ARGS+=(--commit "$COMMIT")
  if [ "$DRY" = 1 ]; then
    cp alae_fast/verified_kernels.json "$OUTDIR/verified_kernels.json"
    ARGS+=(--out "$OUTDIR/verified_kernels.json" --device "dry run (CPU)" --capability 0.0)
  fi
  timeout 60 "$PY" scripts/record_verified.py "${ARGS[@]}"
  RC=$?
  if [ "$DRY" = 0 ]; then
    [ "$RC" = 0 ] || FAILED+=("record")
    cp alae_fast/verified_kernels.json "$OUTDIR/verified_kernels.json"
  fi
  stage_end "exit $RC (0 written, 1 no CUDA case)"
else
  [ "$DRY" = 0 ] && FAILED+=("record (no junit.xml)")
  stage_end "SKIPPED: no junit.xml"
fi

# ---------------------------------------------------------------------------------------------
stage benchmarks
if [ "$QUICK" = 1 ] || [ "$DRY" = 1 ]; then
  stage_end "skipped (--quick / --dry-run)"
elif ! has pytest_benchmark; then
  stage_end "SKIPPED: pytest-benchmark missing"
else
  # torch.compile of the reference takes minutes: its rows only with ALAE_FAST_BENCH_COMPILE=1.
  export ALAE_FAST_BENCH_COMPILE=${ALAE_FAST_BENCH_COMPILE:-0}
  MARK=$(mktemp)
  T=$(budget 400 10)
  echo "pytest benchmarks (timeout ${T}s; the automatic choice now follows the new record)"
  timeout -s INT -k 20 "$T" "$PY" -m pytest benchmarks -q -p no:cacheprovider -o addopts=""
  RC=$?
  [ "$RC" = 0 ] || FAILED+=("benchmarks")
  cp benchmarks/RESULTS.md "$OUTDIR/RESULTS.md" 2>/dev/null
  NEW=$(find benchmarks/results -name '*.json' -newer "$MARK" 2>/dev/null | head -1)
  [ -n "$NEW" ] && cp "$NEW" "$OUTDIR/" && echo "results: $NEW"
  rm -f "$MARK"
  stage_end "pytest exit $RC${NEW:+, wrote $NEW}"
fi

# ---------------------------------------------------------------------------------------------
echo
echo "=== gpu_check done in $(elapsed) s (budget ${BUDGET} s)"
printf '  %s\n' "${STAGE_TIMES[@]}"
echo "files in $OUTDIR: $(ls "$OUTDIR" | tr '\n' ' ')"
if [ "${#FAILED[@]}" -gt 0 ]; then echo "gpu_check: FAILED: ${FAILED[*]}"; STATUS=1; else
  echo "gpu_check: all stages passed"; STATUS=0; fi
echo "next: copy verified_kernels.json to alae_fast/, <gpu>.json to benchmarks/results/ and"
echo "RESULTS.md to benchmarks/, then commit"
exec 1>&- 2>&-
wait "$TEE_PID" 2>/dev/null
exit "$STATUS"
