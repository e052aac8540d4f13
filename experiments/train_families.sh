# Sourced by experiments/peers.sh and experiments/cue_peers.sh: the training step they share.
# train_families DATASET: every model of $MODELS at every seed of $SEEDS on DATASET with the
# recipe $PRESET (default quick) on $DEVICE (default cpu) into $RUNS, one checkpoint at a time
# (an interruption loses one epoch at most; a trained model.pt is not retrained, an
# interrupted one resumes), guided_* with
# $GUIDED_OPTS and rrr_* with $RRR_OPTS. Needs PY, RUNS, MODELS, SEEDS, GUIDED_OPTS, RRR_OPTS.
train_families() {
  local dataset=$1 s m opts
  for s in $SEEDS; do
    for m in $MODELS; do
      if [ -f "$RUNS/$dataset/$m/seed$s/model.pt" ]; then
        echo "$m on $dataset seed $s already trained"
        continue
      fi
      opts=""
      case $m in guided_*) opts=$GUIDED_OPTS ;; rrr_*) opts=$RRR_OPTS ;; esac
      echo "$(date -u +%FT%TZ) train $m on $dataset seed $s $opts"
      # shellcheck disable=SC2086  # the options are words
      $PY -m lico_bench.cli train --model "$m" --dataset "$dataset" --preset "${PRESET:-quick}" \
          --seed "$s" --out "$RUNS" --device "${DEVICE:-cpu}" --quiet --resume $opts || return $?
    done
  done
}

# require_clean SCRIPT VAR: exit 2 unless the worktree has no uncommitted change to tracked
# files (the manifest records the git sha) or the variable named VAR is 1.
require_clean() {
  if [ -n "$(git status --porcelain --untracked-files=no)" ] && [ "${!2:-0}" != 1 ]; then
    echo "$1: the worktree has uncommitted changes; commit them or run from a clean worktree ($2=1 to run anyway)." >&2
    exit 2
  fi
}
