#!/bin/bash
# Issue 25's committed answer at the paper's geometry: WRN-28-2 at 32 px (8x8 map), the
# `paper` recipe for E epochs (E from experiments/paper_echoice.sh + echoice_table.py),
# kept epochs 1 2 5 10 for the along-training run. Every checkpoint is trained by `run`
# itself (--train-option preset=paper ...), in the order seed, model, method, so an
# interrupted grid continues where it stopped: run this script again (a finished experiment
# is skipped and needs no checkpoint; an interrupted training resumes from last.pt).
#   PAPER_E=20 bash experiments/paper_grid.sh [part ...]     parts: headline slow epochs variants
# Run it from a clean worktree pinned at one commit (the manifests record git_commit).
# Results: results/paper_headline (Grad-CAM, Grad-CAM++; seeds 0-9), results/paper_slow
# (Score-CAM, RISE; seeds 0-4), results/paper_epochs (Grad-CAM at epochs 1 2 5 10 E; seeds
# 0-9), results/paper_variants (released, OT-only, rolled LICO; four methods; seeds 0-2).
set -u
: "${PAPER_E:?set PAPER_E to the epoch count chosen by experiments/echoice_table.py}"
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEVICE=${DEVICE:-cpu}            # cuda on a lent GPU: then use RESULTS=results_gpu
RESULTS=${RESULTS:-results}
RUNS=${RUNS:-runs/paper}
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1
KEEP=""; for k in 1 2 5 10; do [ "$k" -lt "$PAPER_E" ] && KEEP="$KEEP,$k"; done; KEEP="[${KEEP#,}]"
common=(--dataset shapes --n-images 100 --runs "$RUNS" --device "$DEVICE" --quiet
        --train-option preset=paper --train-option "epochs=$PAPER_E"
        --train-option "keep_epochs=$KEEP")
pair=(--model baseline_wrn28_2 --model lico_wrn28_2)
part() {  # name, then run arguments
  local name=$1; shift
  echo "$(date -u +%FT%TZ) $name start"
  local t0=$SECONDS
  $PY -m lico_bench.cli run "${common[@]}" "$@" --out "$RESULTS/$name" || exit $?
  echo "$(date -u +%FT%TZ) $name done in $((SECONDS - t0)) s"
}
for p in ${@:-headline slow epochs variants}; do
  case $p in
    headline) part paper_headline "${pair[@]}" --method gradcam --method gradcampp \
                --seeds 0 1 2 3 4 5 6 7 8 9 ;;
    slow)     part paper_slow "${pair[@]}" --method scorecam --method rise --seeds 0 1 2 3 4 ;;
    epochs)   ms=(); for m in baseline_wrn28_2 lico_wrn28_2; do
                for k in ${KEEP//[\[\],]/ }; do ms+=(--model "$m@e$k"); done; ms+=(--model "$m"); done
              part paper_epochs "${ms[@]}" --method gradcam --no-train \
                --metrics insertion,deletion,pointing_game,energy_pointing_game \
                --seeds 0 1 2 3 4 5 6 7 8 9 ;;
    variants) part paper_variants --model baseline_wrn28_2 --model lico_released_wrn28_2 \
                --model lico_otonly_wrn28_2 --model lico_rolled_wrn28_2 --method gradcam \
                --method gradcampp --method scorecam --method rise --seeds 0 1 2 ;;
    *) echo "unknown part $p (headline slow epochs variants)" >&2; exit 2 ;;
  esac
done
