#!/bin/bash
# Issue 25, E-choice ladder: baseline_wrn28_2, seed 0, the `paper` recipe, trained for
# E = 20, 40, 10, 80 epochs, each a run of its own (the cosine schedule spans each run's
# own steps), in runs/echoice/e<E>/. Kept epochs 1 2 5 10 20 30 40 60 80 (those <= E).
# Resumable: run this script again; a finished E (model.pt) is skipped, an interrupted one
# continues from its last finished epoch (train --resume).
set -u
cd "$(dirname "$0")/.."   # the worktree root: a clean worktree pinned at one commit
PY=${PY:-/work/main/.venv/bin/python}
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1
for E in 20 40 10 80; do
  out=$PWD/runs/echoice/e$E
  if [ -f "$out/shapes/baseline_wrn28_2/seed0/model.pt" ]; then
    echo "E=$E already trained ($out)"; continue
  fi
  keep=""
  for k in 1 2 5 10 20 30 40 60 80; do [ "$k" -le "$E" ] && keep="$keep $k"; done
  echo "$(date -u +%FT%TZ) E=$E start (keep$keep)"
  $PY -m lico_bench.cli train --preset paper --model baseline_wrn28_2 --seed 0 --epochs "$E" \
      --keep-epochs $keep --out "$out" --device cpu --quiet --resume || exit $?
  echo "$(date -u +%FT%TZ) E=$E done"
done
