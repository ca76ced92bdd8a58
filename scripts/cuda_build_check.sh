#!/usr/bin/env bash
# Build the whole extension (C++ CPU kernels, csrc/cuda glue, kernels/*.cu) against a CUDA build
# of torch, load it without a GPU and check that every kernel op has a CUDA kernel.
#
# Needs nvcc (CUDA 13) and python3.11, no GPU. The repository tree is never written to: the
# tracked and untracked-but-not-ignored files are copied to a temporary folder and built there.
# Environment (all optional):
#   ALAE_FAST_CUDA_VENV   venv with the CUDA torch, made or reused (default below)
#   ALAE_FAST_PYTHON      python that makes the venv (default python3)
#   CUDA_HOME             CUDA toolkit (default: /usr/local/cuda, else found from nvcc)
#   MAX_JOBS              parallel compile jobs (default 2)
#   ALAE_FAST_CCACHE=0    do not use ccache even when it is installed
#   ALAE_FAST_KEEP_BUILD=1  keep the temporary build folder (its path is printed)
# Exit status: 0 when the build loads and every op has its kernels, non-zero otherwise.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TORCH_SPEC="torch==2.14.1"
CACHE_DIR="$HOME/.cache/alae_fast"
VENV=${ALAE_FAST_CUDA_VENV:-$CACHE_DIR/venv-cu130}
PY=${ALAE_FAST_PYTHON:-python3}
export MAX_JOBS=${MAX_JOBS:-2}

t_start=$EPOCHREALTIME
t_phase=$t_start
declare -a TIMES=()
phase_done() {  # record and print the time of the phase that just ended
  local now=$EPOCHREALTIME
  local took
  took=$(awk -v a="$t_phase" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
  TIMES+=("$1 ${took}s")
  echo "== phase $1: ${took} s"
  t_phase=$now
}
fail() {
  echo "cuda_build_check: FAIL: $*"
  exit 1
}

# --- CUDA toolkit: torch guesses CUDA_HOME from nvcc's folder, wrong for a wrapper script.
if [ -z "${CUDA_HOME:-}" ]; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then
    CUDA_HOME=/usr/local/cuda
  elif command -v nvcc >/dev/null; then
    CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
  else
    fail "no nvcc: install the CUDA toolkit or set CUDA_HOME"
  fi
fi
[ -x "$CUDA_HOME/bin/nvcc" ] || fail "CUDA_HOME=$CUDA_HOME has no bin/nvcc"
export CUDA_HOME
echo "== CUDA_HOME=$CUDA_HOME: $("$CUDA_HOME/bin/nvcc" --version | tail -n 2 | head -n 1)"

# --- Phase 1: the venv with the CUDA build of torch (reused when it is already right).
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9  # two runs at once must not install into the same venv
venv_ok() {
  [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/ninja" ] && "$VENV/bin/python" - <<'EOF' 2>/dev/null
import setuptools, wheel, torch  # noqa: F401  (all needed by the build)
assert torch.__version__.split("+")[0] == "2.14.1", torch.__version__
assert torch.version.cuda and torch.version.cuda.startswith("13."), torch.version.cuda
EOF
}
if venv_ok; then
  echo "== reusing $VENV"
else
  echo "== making $VENV"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  # numpy: torch imports without it but warns; the build and the check run quieter with it.
  "$VENV/bin/python" -m pip install --progress-bar off "$TORCH_SPEC" ninja setuptools wheel numpy
  venv_ok || fail "$VENV still lacks a CUDA torch 2.14.1, ninja, setuptools or wheel"
fi
"$VENV/bin/python" -c 'import torch; print("== torch", torch.__version__, "CUDA", torch.version.cuda)'
echo "== venv size: $(du -sh "$VENV" | cut -f1)"
phase_done venv

# --- Phase 2: copy the source tree and build the extension there, CUDA part forced on.
BUILD=$(mktemp -d "${TMPDIR:-/tmp}/alae_fast_cuda_build.XXXXXX")
if [ "${ALAE_FAST_KEEP_BUILD:-0}" = 1 ]; then
  echo "== keeping $BUILD"
else
  trap 'rm -rf "$BUILD"' EXIT
fi
git -C "$REPO" ls-files -z --cached --others --exclude-standard \
  | tar -C "$REPO" --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$BUILD" -xf -
[ -f "$BUILD/setup.py" ] || fail "copying the tracked files of $REPO to $BUILD"
# torch's CUDA headers include cuBLAS/cuSPARSE headers, which the nvidia wheels carry; CPATH
# searches them after every -I, so the toolkit's own headers (cuda_runtime.h with crt/) win.
purelib=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -d "$purelib/nvidia/cu13/include" ]; then
  export CPATH="${CPATH:+$CPATH:}$purelib/nvidia/cu13/include"
fi
export PATH="$VENV/bin:$PATH"  # torch's build finds ninja on PATH
if [ "${ALAE_FAST_CCACHE:-1}" = 1 ] && command -v ccache >/dev/null; then
  # Cache hits across runs need paths free of the random build folder name.
  export CCACHE_BASEDIR="$BUILD" CCACHE_NOHASHDIR=1
  export PYTORCH_NVCC="ccache $CUDA_HOME/bin/nvcc"
  [ -d /usr/lib/ccache ] && export PATH="/usr/lib/ccache:$PATH"
  echo "== using ccache ($(ccache --version | head -n 1))"
  ccache --zero-stats >/dev/null
fi
echo "== building in $BUILD with MAX_JOBS=$MAX_JOBS (log: build.log there)"
if ! (cd "$BUILD" && ALAE_FAST_CUDA=1 python setup.py build_ext --inplace >build.log 2>&1); then
  tail -n 80 "$BUILD/build.log"
  fail "the CUDA build failed (last 80 lines of the log above)"
fi
echo "== build log: $(wc -l <"$BUILD/build.log") lines, $(grep -ci 'warning' "$BUILD/build.log" \
  || true) mention a warning"
if command -v ccache >/dev/null && [ -n "${PYTORCH_NVCC:-}" ]; then
  ccache --show-stats | grep -iE 'hits|misses' || true
fi
phase_done build

# --- Phase 3: load the library in the venv's python (no GPU) and check its kernels.
so=$(find "$BUILD/alae_fast" -maxdepth 1 -name '_C*.so' | head -n 1)
[ -n "$so" ] || fail "the build wrote no alae_fast/_C*.so"
rc=0
CUDA_VISIBLE_DEVICES="" python "$REPO/scripts/check_cuda_extension.py" --so "$so" || rc=$?
phase_done check

total=$(awk -v a="$t_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
if [ "$rc" -eq 0 ]; then
  echo "cuda_build_check: PASS (${TIMES[*]}, total ${total}s)"
else
  echo "cuda_build_check: FAIL: the kernel check exited $rc (${TIMES[*]}, total ${total}s)"
fi
exit "$rc"
