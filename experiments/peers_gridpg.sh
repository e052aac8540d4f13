#!/bin/bash
# Issue 26 x issue 27: does the grid pointing game -- the localisation score for data without
# masks -- see the positive controls that the mask-based energy pointing game sees?
# results/paper_peers (experiments/peers.sh) has guided_wrn28_2 lifting Grad-CAM's energy on
# the object by ~60 points and rrr_wrn28_2 lifting the input-gradient maps' by 8-23, with the
# pointing game at its ceiling. Here the same checkpoints (baseline, LICO, guided, RRR, SGT at
# WRN-28-2, the `paper` recipe; runs/paper from experiments/paper_grid.sh and peers.sh) are
# scored on 2 x 2 composites of `shapes` test images, as experiments/paper_gridpg.sh does for
# the headline pair, except the qualifying threshold: cells classified correctly with
# p >= 0.5 by every model (decided in float32), not B-cos's 0.99, because the positive
# controls are less confident: on the first 100 test images of seeds 0-1 (results/paper_peers
# rows, p of the explained class on the full image) RRR's largest p is 0.94-0.96 and 5 % of
# guided's reach 0.99, so at 0.99 no image qualifies under all five models (run refuses:
# "the 0 qualifying images ... fill only 0 composites"). Each cell's class is explained on
# the whole composite, 100 cells (25 composites).
# Explainers: Grad-CAM and Grad-CAM++ (the guided control's and LICO's), saliency and input x
# gradient (RRR's). bf16 forwards as peers.sh (PEERS_GRIDPG_PRECISION=fp32 to turn it off).
# Then the grid score against the mask energy pointing game of the same checkpoints:
#   python experiments/grid_vs_mask.py results/paper_peers_gridpg results/paper_peers
#   python experiments/seed_table.py results/paper_peers_gridpg --matrix grid_score
# Resumable (`run` skips finished experiments); run it from a clean worktree pinned at one
# commit (the manifest records git_commit) once the peers of every seed are trained. Seed 0
# alone took 80 s wall (qualification 810 of 1000 images at 0.5, 20 experiments).
#   RUNS=/path/to/runs/paper bash experiments/peers_gridpg.sh
#   (PEERS_GRIDPG_SEEDS="0 1" for fewer seeds; DEVICE=cuda RESULTS=results_gpu on a GPU.)
set -u
cd "$(dirname "$0")/.." || exit 2
. experiments/train_families.sh
require_clean experiments/peers_gridpg.sh PEERS_GRIDPG_ALLOW_DIRTY
PY=${PY:-.venv/bin/python}
RESULTS=${RESULTS:-results}
RUNS=${RUNS:-runs/paper}
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# shellcheck disable=SC2206  # seeds are words
seeds=(${PEERS_GRIDPG_SEEDS:-0 1 2 3 4})
echo "$(date -u +%FT%TZ) paper_peers_gridpg start"
t0=$SECONDS
$PY -m lico_bench.cli run --dataset shapes --model baseline_wrn28_2 --model lico_wrn28_2 \
    --model guided_wrn28_2 --model rrr_wrn28_2 --model sgt_wrn28_2 --seeds "${seeds[@]}" \
    --grid 2 --grid-threshold 0.5 --n-images 100 --runs "$RUNS" --no-train \
    --method gradcam --method gradcampp --method saliency --method inputxgrad \
    --device "${DEVICE:-cpu}" --precision "${PEERS_GRIDPG_PRECISION:-bf16}" --quiet \
    --out "$RESULTS/paper_peers_gridpg" || exit $?
echo "$(date -u +%FT%TZ) paper_peers_gridpg done in $((SECONDS - t0)) s"
