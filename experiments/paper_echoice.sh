#!/bin/bash
# Issue 25, E-choice ladder: baseline_wrn28_2, seed 0, the `paper` recipe, trained for
# E = 10, 20, 40, 80 epochs, each a run of its own (the cosine schedule spans each run's own
# steps), in runs/echoice/e<E>/, kept epochs 1 2 5 10 20 40 80 (those <= E). After each E,
# Grad-CAM on the 1000 images of the val split (the choice is made on val, so the test
# split stays unseen) for the final weights and every kept epoch: results/paper_echoice/e<E>.
# The chosen E is the smallest whose val accuracy and pointing game are within noise of 2E's
# (experiments/echoice_table.py reads the rows). Resumable: run again; a trained E
# (model.pt) is not retrained, an interrupted one continues (train --resume), `run` skips
# finished experiments. Stop it once the answer is in (E and 2E both evaluated).
set -u
cd "$(dirname "$0")/.."   # the worktree root: a clean worktree pinned at one commit
PY=${PY:-/work/main/.venv/bin/python}
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1
for E in ${ECHOICE_E:-10 20 40 80}; do
  runs=$PWD/runs/echoice/e$E
  keep=""
  for k in 1 2 5 10 20 40 80; do [ "$k" -le "$E" ] && keep="$keep $k"; done
  if [ -f "$runs/shapes/baseline_wrn28_2/seed0/model.pt" ]; then
    echo "E=$E already trained ($runs)"
  else
    echo "$(date -u +%FT%TZ) E=$E train start (keep$keep)"
    $PY -m lico_bench.cli train --preset paper --model baseline_wrn28_2 --seed 0 --epochs "$E" \
        --keep-epochs $keep --out "$runs" --device cpu --quiet --resume || exit $?
    echo "$(date -u +%FT%TZ) E=$E train done"
  fi
  models="--model baseline_wrn28_2"
  for k in $keep; do [ "$k" -lt "$E" ] && models="$models --model baseline_wrn28_2@e$k"; done
  echo "$(date -u +%FT%TZ) E=$E eval start"
  $PY -m lico_bench.cli run $models --method gradcam --split val --n-images 1000 \
      --metrics pointing_game,energy_pointing_game --runs "$runs" --no-train \
      --out "$PWD/results/paper_echoice/e$E" --device cpu --quiet || exit $?
  echo "$(date -u +%FT%TZ) E=$E eval done"
done
