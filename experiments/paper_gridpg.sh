#!/bin/bash
# Issue 27's committed grid pointing game at the paper's geometry: the headline pair of issue 25
# (baseline_wrn28_2 vs lico_wrn28_2, WRN-28-2, the `paper` recipe, checkpoints trained by
# experiments/paper_grid.sh), seeds 0-2, 2 x 2 composites of `shapes` test images (each cell
# classified correctly with probability >= 0.99 by all six models, B-cos's threshold), every
# cell's class explained with the network on the whole composite (GridPG), 100 cells (25
# composites). Two results directories, so the cheap part can be committed before RISE ends:
#   results/paper_gridpg       Grad-CAM, Grad-CAM++, Score-CAM  (about 0.5 h of one CPU core)
#   results/paper_gridpg_rise  RISE, 4000 masks at 64 px, bf16   (about 1 h of one CPU core)
# RISE's forwards run under bf16 autocast (--precision bf16; RISE_PRECISION=fp32 to turn it
# off): 4000 forwards of WRN-28-2 per composite take about 40 min an experiment in float32
# on one core, and a batch of 64 at 64 px runs 4.6x faster in bf16 on a CPU with AMX
# (2.14 s -> 0.39 s, Xeon with amx_bf16, one thread; CPUs without bf16 units gain nothing).
# Maps and scores stay float32; the documented bf16 tolerance of the maps is in
# lico_bench/explainers/base.py (RISE: max |difference| of min-max normalised maps <= 0.0025,
# no pointed pixel changed). The manifest records the precision. Which images qualify is
# decided in float32 whatever the precision (lico_bench/bench/grid.py), so
# both draw the same composites (same models, seeds, threshold and grid seed). Then the grid
# score against the mask-based pointing games of the same checkpoints (results/paper_headline,
# results/paper_slow: the prediction explained, which is the label on these images):
#   python experiments/grid_vs_mask.py results/paper_gridpg [results/paper_gridpg_rise] \
#       results/paper_headline results/paper_slow
# Resumable (`run` skips finished experiments); run it from a clean worktree pinned at one
# commit (the manifests record git_commit). Parts: `cams`, `rise` (default both).
#   RUNS=/path/to/paper_grid/runs/paper bash experiments/paper_gridpg.sh [cams] [rise]
#   DEVICE=cuda RESULTS=results_gpu ... on a lent GPU (minutes).
set -u
cd "$(dirname "$0")/.." || exit 2
PY=${PY:-.venv/bin/python}
DEVICE=${DEVICE:-cpu}
RESULTS=${RESULTS:-results}
RUNS=${RUNS:-runs/paper}
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1
common=(--dataset shapes --model baseline_wrn28_2 --model lico_wrn28_2 --seeds 0 1 2
        --grid 2 --grid-threshold 0.99 --n-images 100 --runs "$RUNS" --no-train
        --device "$DEVICE" --quiet)
part() {  # name, then run arguments
  local name=$1; shift
  echo "$(date -u +%FT%TZ) $name start"
  local t0=$SECONDS
  $PY -m lico_bench.cli run "${common[@]}" "$@" --out "$RESULTS/$name" || exit $?
  echo "$(date -u +%FT%TZ) $name done in $((SECONDS - t0)) s"
}
for p in ${@:-cams rise}; do
  case $p in
    cams) part paper_gridpg --method gradcam --method gradcampp --method scorecam ;;
    rise) part paper_gridpg_rise --method rise --precision "${RISE_PRECISION:-bf16}" ;;
    *) echo "unknown part $p (cams rise)" >&2; exit 2 ;;
  esac
done
