#!/bin/bash
# Issue 25's committed answer at the paper's geometry: WRN-28-2 at 32 px (8x8 map), the
# `paper` recipe for E epochs (E from experiments/paper_echoice.sh + echoice_table.py),
# kept epochs 1 2 5 10 for the along-training run. Every checkpoint is trained by `run`
# itself (--train-option preset=paper ...). Seed by seed: for seed s every part's results
# directory grows from seeds 0..s-1 to 0..s (`run` accepts seeds appended), so the grid can
# be trained and committed seed by seed across sessions; run the script again to continue
# (a pass with fewer seeds than its directory holds is skipped, a finished experiment is
# skipped and needs no checkpoint, an interrupted training resumes from last.pt). The
# along-training part needs seed s's kept epochs, so it runs right after the headline has
# trained seed s.
#   PAPER_E=10 bash experiments/paper_grid.sh [part ...]   parts: headline epochs slow variants
#   (SEEDS="0 1 2" limits the seeds; slow stops after 5 seeds, variants after 3)
# Run it from a clean worktree pinned at one commit (the manifests record git_commit), or
# GRID_ROOT=/path/to/that/worktree bash experiments/paper_grid.sh ... from a newer checkout.
# Results: results/paper_headline (Grad-CAM, Grad-CAM++; seeds 0-9), results/paper_slow
# (Score-CAM, RISE; seeds 0-4), results/paper_epochs (Grad-CAM at epochs 1 2 5 10 E; seeds
# 0-9), results/paper_variants (released, OT-only, rolled LICO; four methods; seeds 0-2).
set -u
: "${PAPER_E:?set PAPER_E to the epoch count chosen by experiments/echoice_table.py}"
# GRID_ROOT: the pinned worktree to run in (default: this script's own); lets a newer copy of
# this script continue a grid whose worktree is pinned at an older commit.
cd "${GRID_ROOT:-$(dirname "$0")/..}" || exit 2
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
held() {  # how many seeds results directory $1 already holds (0 if none)
  $PY -c 'import json, sys
try: print(len(json.load(open(sys.argv[1]))["spec"]["seeds"]))
except FileNotFoundError: print(0)' "$RESULTS/$1/manifest.json"
}
part() {  # name, then run arguments
  local name=$1; shift
  # A pass with fewer seeds than the directory holds would be refused (`run` grows a
  # directory by seeds appended, never shrinks it): a rerun skips the passes already done.
  if [ "$(held "$name")" -gt "${#sofar[@]}" ]; then
    echo "$name already holds more than ${#sofar[@]} seeds: pass skipped"; return 0
  fi
  echo "$(date -u +%FT%TZ) $name start"
  local t0=$SECONDS
  $PY -m lico_bench.cli run "${common[@]}" "$@" --out "$RESULTS/$name" || exit $?
  echo "$(date -u +%FT%TZ) $name done in $((SECONDS - t0)) s"
}
SEEDS=${SEEDS:-0 1 2 3 4 5 6 7 8 9}
PARTS=${@:-headline epochs slow variants}
sofar=()
for s in $SEEDS; do   # seed by seed: each results directory grows by one seed per pass
  sofar+=("$s")
  for p in $PARTS; do
    case $p in
      headline) part paper_headline "${pair[@]}" --method gradcam --method gradcampp \
                  --seeds "${sofar[@]}" ;;
      epochs)   ms=(); for m in baseline_wrn28_2 lico_wrn28_2; do
                  for k in ${KEEP//[\[\],]/ }; do ms+=(--model "$m@e$k"); done
                  ms+=(--model "$m"); done
                part paper_epochs "${ms[@]}" --method gradcam --no-train \
                  --metrics insertion,deletion,pointing_game,energy_pointing_game \
                  --seeds "${sofar[@]}" ;;
      slow)     [ "${#sofar[@]}" -le 5 ] && part paper_slow "${pair[@]}" --method scorecam \
                  --method rise --seeds "${sofar[@]}" ;;
      variants) [ "${#sofar[@]}" -le 3 ] && part paper_variants --model baseline_wrn28_2 \
                  --model lico_released_wrn28_2 --model lico_otonly_wrn28_2 \
                  --model lico_rolled_wrn28_2 --method gradcam --method gradcampp \
                  --method scorecam --method rise --seeds "${sofar[@]}" ;;
      *) echo "unknown part $p (headline epochs slow variants)" >&2; exit 2 ;;
    esac
  done
done
