#!/usr/bin/env bash
# Train the paper MNIST model (config mnist-mlp) in stages and keep a checkpoint at the end of each,
# for the accuracy curve of README "Measured" (evaluate them with scripts/mnist_paper_eval.sh).
#
# usage: scripts/mnist_paper_curve.sh SPLIT OUTDIR MINUTES [EPOCH ...]
#   SPLIT    different-writers | same-writers (data.split)
#   OUTDIR   run folder; epoch-NNN.pt is kept there after each stage, times.tsv records the stages
#   MINUTES  wall-clock budget: no stage starts after it, and the running stage stops at it
#   EPOCH    stage ends (default 5 10 20 30 40 50 60 80 100)
# Each stage resumes the previous one (--resume auto) with a larger train.epochs; the learning rate
# is constant at the final lod, so the stages together are one run of the largest epoch count.
set -euo pipefail
split=$1 out=$2 minutes=$3
shift 3
epochs=("$@")
[ ${#epochs[@]} -gt 0 ] || epochs=(5 10 20 30 40 50 60 80 100)
mkdir -p "$out"
deadline=$(( $(date +%s) + ${minutes%.*} * 60 ))
[ -f "$out/times.tsv" ] || printf 'epoch\tseconds\tstarted\n' > "$out/times.tsv"
for e in "${epochs[@]}"; do
  [ -f "$out/epoch-$(printf %03d "$e").pt" ] && continue
  left=$(( deadline - $(date +%s) ))
  [ "$left" -gt 60 ] || break
  start=$(date +%s)
  alae-fast train --config mnist-mlp --resume auto --output "$out" --no-progress \
    --set data.split="$split" --set train.epochs="$e" --set train.max_minutes="$(( left / 60 ))"
  done_epoch=$(python -c "import torch,sys; print(torch.load(sys.argv[1], map_location='cpu', weights_only=False)['progress']['epoch'])" "$out/checkpoint.pt")
  printf '%s\t%s\t%s\n' "$done_epoch" "$(( $(date +%s) - start ))" "$(date -u -d @"$start" +%FT%TZ)" >> "$out/times.tsv"
  [ "$done_epoch" -ge "$e" ] || break  # the budget ran out inside this stage
  cp "$out/checkpoint.pt" "$out/epoch-$(printf %03d "$e").pt"
done
