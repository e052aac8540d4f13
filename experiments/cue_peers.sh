#!/bin/bash
# Issue 26, item 5: does a model trained with the object's mask ignore a planted cue
# (reliance), and do the benchmark's cue-aware scores see it?
# At issue 25's geometry, as experiments/peers.sh: WRN-28-2 on `shapes-cue` 32 px (8 x 8 CAM
# maps) with the `paper` recipe (SGD, 10 epochs of 25 steps of 128, EMA), baseline_wrn28_2,
# lico_wrn28_2 and LICO's peers -- guided_wrn28_2 (model guidance, Energy loss on Grad-CAM
# inside the object mask), rrr_wrn28_2 (right for the right reasons, input gradients outside
# the object mask penalised), sgt_wrn28_2 (saliency-guided training, no masks) -- seeds 0-4,
# the positive controls with peers.sh's weights (guided lambda 0.01, rrr lambda 3; "WEIGHTS"
# there). `shapes-cue` (lico_bench/data/shapes_cue.py): the cue, a flat square of the label's
# colour, is as predictive as the object, and half of the training images have no object at
# all. The annotation of guided and rrr is the OBJECT mask (the dataset's masks; the cue's
# mask is never used in training): on a training image drawn without its object it is
# empty, so there the Energy loss is a constant 1 (no gradient: guided learns nothing about
# the cue from those images) while rrr penalises every input gradient.
# Seed by seed, as peers.sh: the five models of seed s are trained, then `run --split swap`
# (each image carries another class's cue) grows results/shapes_cue_peers from seeds 0..s-1
# to 0..s: Grad-CAM, Grad-CAM++ and saliency on the first 100 images, the metrics of
# results/shapes_cue (insertion, deletion, pointing game and energy pointing game against the
# object and the cue masks, part rank/hit), forwards in bf16 as peers.sh's. Reliance of every
# checkpoint (accuracy on agree/swap/absent, the share of swap predictions that follow the
# cue) is measured in float32 by the run on the full 1000-image splits (results/.../reliance/,
# summary.md "## Reliance on the planted cue"); a model that follows the cue in >= 50 % of
# swap images is scored against the cue mask, any other against the object mask
# (lico_bench/bench/cue.py). Each family is paired with baseline_wrn28_2.
# What to read: "follows cue (swap)" of guided/rrr against the baseline's, with swap accuracy
# (the object's class) and absent accuracy (the object alone); then whether the pointing
# games against the object rise and those against the cue fall.
#
# PREMISE (one seed each, seed 0, scratch checkpoints, not a result; reliance on the 1000
# images of each split: follows cue on swap, then accuracy on agree / swap / absent, %):
#   ResNet-18, `quick` recipe (100 AdamW steps of 64; 4 x 4 maps; results/shapes_cue's):
#     baseline        96.8 follows, swap 0.6, absent 12.2
#     guided 0.01     85.3 follows, swap 4.2, absent 21.6
#     guided 0.1      64.1 follows, agree 96.4, swap 9.4, absent 22.9
#     guided 0.3      30.8 follows, agree 65.7, swap 17.5, absent 23.2
#     guided 1        10.4 follows, agree 30.1, swap 23.7, absent 24.9   (learns ~nothing)
#     rrr 3           23.4 follows, agree 47.1, swap 18.1, absent 20.7
#     guided 0.3, 6 epochs (300 steps): 77.9 follows, agree 100, swap 5.3, absent 21.2
#   Reliance falls only where the model learns less (agree accuracy), and comes back with
#   longer training; the summed Energy loss of a batch of 64 stays at 43-52 throughout (32 of
#   it the constant 1 of the images without their object), i.e. guidance does not move
#   Grad-CAM onto the object at 4 x 4. Hence this script's paper geometry.
#   WRN-28-2, `paper` recipe (this script's):
#     baseline        97.8 follows, agree 100, swap 1.0, absent 23.6
#     guided 0.01     69.0 follows, agree 100, swap 13.7, absent 47.6
#   Here guidance lowers reliance without learning less, and doubles the accuracy on the
#   object alone (absent). The summed Energy loss of a batch of 128 went
#   93.7 -> 83.8 over the 10 epochs (about 64 of it constant), still falling; on `shapes`
#   (no cue) it goes 0.36 -> 0.07 per image (peers.sh).
#   Why guidance cannot simply remove the cue: on half the training images the cue is the only
#   evidence, so every model must use it, and a cue the model uses has positive Grad-CAM where
#   it is. With the object present the Energy loss falls only if the network learns to switch
#   the cue off when there is an object -- which is what "follows cue (swap)" measures.
#   Commands: train --model M --dataset shapes-cue --preset quick|paper --seed 0 [--guided-lambda
#   L | --rrr-lambda L] [--epochs 6], then run --model M --dataset shapes-cue --split swap
#   --n-images 1 --method gradcam --no-train (its reliance/*.json).
#
# Resumable: run it again. A trained checkpoint (model.pt) is not retrained, an interrupted
# training continues from its last epoch (train --resume), `run` skips finished experiments
# and recomputes only a damaged one. Run it from a clean worktree pinned at one commit (the
# manifest records the git sha, and what each checkpoint was trained with under "trained";
# CUE_PEERS_ALLOW_DIRTY=1 overrides the check).
#
# Command: bash experiments/cue_peers.sh   (CUE_PEERS_DATASET=shapes-cue-clean for the
# control whose cue is useless; CUE_PEERS_SEEDS, CUE_PEERS_MODELS, CUE_PEERS_RUNS,
# CUE_PEERS_OUT, CUE_PEERS_GUIDED_OPTS, CUE_PEERS_RRR_OPTS, CUE_PEERS_PRECISION override the
# defaults.)
#
# Cost (CPU seconds of one core, the other core busy; peers.sh's measurements on `shapes`
# with the same models and recipe): training ~47 (baseline), ~60 (LICO), 49 (guided), 231
# (rrr), 92 (sgt) s an epoch, ~80 min a seed; reliance ~1 min a checkpoint; explaining
# 3 cheap methods in bf16 with the part metrics, ~1 h for all 5 seeds (an estimate from
# peers.sh's pass: 35 experiments with Score-CAM, RISE and integrated gradients in 50 min).
# About 8 CPU-hours in all.
set -u
cd "$(dirname "$0")/.."   # the worktree root
. experiments/train_families.sh
require_clean experiments/cue_peers.sh CUE_PEERS_ALLOW_DIRTY
PY=${PY:-/work/main/.venv/bin/python}
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
DATASET=${CUE_PEERS_DATASET:-shapes-cue}
RUNS=${CUE_PEERS_RUNS:-$PWD/runs/paper}          # <runs>/<dataset>/<model>/seed<s>
OUT=${CUE_PEERS_OUT:-$PWD/results/${DATASET//-/_}_peers}
MODELS=${CUE_PEERS_MODELS:-"baseline_wrn28_2 lico_wrn28_2 guided_wrn28_2 rrr_wrn28_2 sgt_wrn28_2"}
SEEDS=${CUE_PEERS_SEEDS:-"0 1 2 3 4"}
METHODS="gradcam gradcampp saliency"
METRICS="insertion,deletion,pointing_game,energy_pointing_game,part_rank,part_hit"
PRESET=paper
GUIDED_OPTS=${CUE_PEERS_GUIDED_OPTS:-"--guided-lambda 0.01"}
RRR_OPTS=${CUE_PEERS_RRR_OPTS:-"--rrr-lambda 3"}
# The run's forwards under bf16 autocast, as peers.sh's (AMX; maps, scores and the reliance
# stay float32). CUE_PEERS_PRECISION=fp32 to turn it off.
PRECISION=${CUE_PEERS_PRECISION:-bf16}

held() {  # how many seeds the results directory already holds (0 if none)
  $PY -c 'import json, sys
try: print(len(json.load(open(sys.argv[1]))["spec"]["seeds"]))
except FileNotFoundError: print(0)' "$OUT/manifest.json"
}
margs=""; for m in $MODELS; do margs="$margs --model $m"; done
xargs_=""; for x in $METHODS; do xargs_="$xargs_ --method $x"; done
all_seeds=$SEEDS; sofar=""
for s in $all_seeds; do
  sofar="$sofar $s"
  # 1. Training (experiments/train_families.sh: one checkpoint at a time, resumable).
  SEEDS=$s train_families "$DATASET" || exit $?
  # 2. The grid on the swap split, seeds so far: every model x method x seed on the same 100
  # images, reliance per checkpoint, the tables (summary.md: reliance, both masks).
  # shellcheck disable=SC2086  # the seeds are words
  set -- $sofar
  if [ "$(held)" -gt $# ]; then echo "seed $s: $OUT holds more seeds, pass skipped"; continue; fi
  echo "$(date -u +%FT%TZ) run seeds$sofar start"
  t0=$SECONDS
  # shellcheck disable=SC2086
  $PY -m lico_bench.cli run $margs $xargs_ --dataset "$DATASET" --split swap --seeds $sofar \
      --n-images 100 --metrics "$METRICS" --runs "$RUNS" --no-train --out "$OUT" \
      --device cpu --precision "$PRECISION" --quiet || exit $?
  echo "$(date -u +%FT%TZ) run seeds$sofar done in $((SECONDS - t0)) s"
done
$PY -m lico_bench.cli figures "$OUT" || exit $?
echo "$(date -u +%FT%TZ) figures done: $OUT/summary.md"
