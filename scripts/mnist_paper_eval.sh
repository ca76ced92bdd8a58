#!/usr/bin/env bash
# Evaluate every epoch-NNN.pt that scripts/mnist_paper_curve.sh kept in a run folder with the paper
# protocol on the run's own split, and check each result with scripts/mnist_paper_recompute.py.
#
# usage: scripts/mnist_paper_eval.sh OUTDIR SPLIT [MNIST_DIR]
#   SPLIT  different | same (the split the run was trained for)
# Writes OUTDIR/epoch-NNN.json, .npz (features), .txt (the table) and .recompute.txt; an epoch
# already evaluated is skipped. Then prints the curve as a markdown table.
set -euo pipefail
out=$1 split=$2 data=${3:-${ALAE_FAST_DATA:-../shared/data/mnist}}
here=$(cd "$(dirname "$0")" && pwd)
for ckpt in "$out"/epoch-*.pt; do
  stem=${ckpt%.pt}
  [ -f "$stem.recompute.txt" ] && continue
  alae-fast eval-mnist "$ckpt" --protocol paper --splits "$split" --data "$data" \
    --json "$stem.json" --dump "$stem.npz" > "$stem.txt"
  python "$here/mnist_paper_recompute.py" "$stem.npz" "$stem.json" --data "$data" > "$stem.recompute.txt" \
    || echo "recomputation disagrees: see $stem.recompute.txt" >&2
done
python - "$out" "$split" <<'PY'
import json, sys
from pathlib import Path
out, split = Path(sys.argv[1]), sys.argv[2]
times = [line.split("\t") for line in (out / "times.tsv").read_text().splitlines()[1:]]
seconds = {int(e): int(s) for e, s, _ in times}
print(f"| epoch | w 1-NN | w SVM | h 1-NN | h SVM | recomputed within 0.3 | training s (cumulative) |")
print("|---:|---:|---:|---:|---:|---|---:|")
total = 0
for path in sorted(out.glob("epoch-*.json")):
    epoch = int(path.stem.split("-")[1])
    total = sum(s for e, s in seconds.items() if e <= epoch)
    r = json.loads(path.read_text())[split]
    ok = "yes" if "all within tolerance" in path.with_suffix(".recompute.txt").read_text() else "NO"
    cells = " | ".join(f"{r[f][c]:.2f}" for f in ("w", "h") for c in ("1nn", "svm"))
    print(f"| {epoch} | {cells} | {ok} | {total} |")
PY
