#!/usr/bin/env bash
# One short check of a GPU machine (about 5 minutes on one modern GPU):
#   1. trains baseline_r18 and lico_r18 for a few steps (and with torchrun on every GPU
#      when there are several);
#   2. runs every method with the core metrics in bf16 and in fp32 on the GPU and in fp32 on
#      the CPU, compares them image by image, then every metric (Quantus too) on Grad-CAM
#      maps of a few images;
#   3. runs the three speed benchmarks on the GPU;
# and prints every figure with the command that gave it.
#
#   bash benchmarks/gpu_check.sh                 # from the repository root, package installed
#   DEVICE=cpu N_IMAGES=4 N_TRAIN=128 SKIP_BENCH=1 bash benchmarks/gpu_check.sh   # a dry run
#
# Environment: PYTHON (python), DEVICE (cuda), N_IMAGES (64), N_TRAIN (1280 = 20 steps of
# 64), N_ALL (4: images for the all-metrics run), WORK (a new temporary directory),
# SKIP_BENCH (unset).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
N_IMAGES=${N_IMAGES:-64}
N_TRAIN=${N_TRAIN:-1280}
N_ALL=${N_ALL:-4}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/lico-gpu-check.XXXXXX")}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TQDM_DISABLE=1
LB=("$PY" -m lico_bench.cli)
T0=$SECONDS

step() { echo; echo "== [$((SECONDS - T0)) s] $*"; }
show() { echo "\$ $*"; "$@"; }

step "0. environment (work directory $WORK)"
show "${LB[@]}" info
NGPU=0
if [ "$DEVICE" != "cpu" ] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  NGPU=$(nvidia-smi -L | wc -l)
fi

step "1. training: $N_TRAIN images, 1 epoch, batch 64, quick recipe (bf16 autocast on CUDA)"
for m in baseline_r18 lico_r18; do
  show "${LB[@]}" train --model $m --n-train "$N_TRAIN" --epochs 1 --device "$DEVICE" \
    --out "$WORK/runs" --quiet --force
  "$PY" - "$WORK/runs/shapes/$m/seed0/log.csv" <<'EOF'
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))[-1]
print(f"   {sys.argv[1].split('/')[-3]}: epoch {r['epoch_s']} s for {r['step']} steps, "
      f"loss {float(r['loss']):.3f}, test acc {float(r['test_acc']):.3f}")
EOF
done
if [ "$NGPU" -ge 2 ]; then
  step "1b. the same LICO training under torchrun on $NGPU GPUs (global batch 64, --sync-bn)"
  show "$PY" -m torch.distributed.run --standalone --nproc_per_node "$NGPU" -m lico_bench.cli train \
    --model lico_r18 --n-train "$N_TRAIN" --epochs 1 --batch-size $((64 / NGPU * NGPU)) --sync-bn \
    --out "$WORK/runs_ddp" --quiet --force
fi

METHODS=(--method gradcam --method gradcampp --method scorecam --method rise)
GRID=(--model baseline_r18 --model lico_r18 "${METHODS[@]}" --runs "$WORK/runs" --no-train --quiet)

step "2a. every method, core metrics, $N_IMAGES images: $DEVICE fp32$([ "$DEVICE" != cpu ] && echo ", $DEVICE bf16, cpu fp32")"
show "${LB[@]}" run "${GRID[@]}" --n-images "$N_IMAGES" --device "$DEVICE" --precision fp32 --out "$WORK/dev_fp32"
if [ "$DEVICE" != "cpu" ]; then  # CPUs without bf16 units emulate it, hundreds of times slower
  show "${LB[@]}" run "${GRID[@]}" --n-images "$N_IMAGES" --device "$DEVICE" --precision bf16 --out "$WORK/dev_bf16"
fi
if [ "$DEVICE" != "cpu" ]; then
  N_CPU=$(( N_IMAGES < 16 ? N_IMAGES : 16 ))
  show "${LB[@]}" run "${GRID[@]}" --n-images "$N_CPU" --device cpu --precision fp32 --out "$WORK/cpu_fp32"
fi
if [ "$DEVICE" != "cpu" ]; then
  step "2b. image by image: bf16 vs fp32 on $DEVICE, then $DEVICE vs cpu (both fp32)"
  show "$PY" benchmarks/compare_rows.py "$WORK/dev_bf16" "$WORK/dev_fp32"
  show "$PY" benchmarks/compare_rows.py "$WORK/dev_fp32" "$WORK/cpu_fp32"
  echo; cat "$WORK/dev_bf16/summary.md"
else
  echo; cat "$WORK/dev_fp32/summary.md"
fi

step "2c. every registered metric (Quantus included) on Grad-CAM maps, $N_ALL images"
# Quantus works image by image through numpy (PixelFlipping alone: one forward per pixel
# step), so this part stays small: one method, a few images.
ALL=$("$PY" -c "from lico_bench.metrics import list_metrics; print(','.join(list_metrics()))")
show "${LB[@]}" run --model baseline_r18 --model lico_r18 --method gradcam --runs "$WORK/runs" \
  --no-train --quiet --n-images "$N_ALL" --device "$DEVICE" --metrics "$ALL" --out "$WORK/dev_all"
"$PY" - "$WORK/dev_all/summary.csv" <<'EOF'
import sys
import pandas as pd
df = pd.read_csv(sys.argv[1])
print(f"   {len(df)} table rows; metrics: {', '.join(sorted(df['metric'].dropna().unique())) if 'metric' in df else '?'}")
EOF

if [ -z "${SKIP_BENCH:-}" ]; then
  step "3. speed benchmarks on $DEVICE"
  show "$PY" benchmarks/bench_train.py --device "$DEVICE" --batch-size 128 --steps 10
  for prec in fp32 bf16; do
    show "$PY" benchmarks/bench_explainers.py --device "$DEVICE" --images 256 --slow-images 8 \
      --precision $prec --channels-last
    show "$PY" benchmarks/bench_metrics.py --device "$DEVICE" --n32 256 --n224 16 \
      --precision $prec --channels-last
  done
  # ROAD: the batched CG imputation on the GPU vs the per-pixel loop and Quantus (host).
  show "$PY" benchmarks/bench_road.py --device "$DEVICE" --n32 64 --n224 4 --loop-images 14 \
    --n-metric 128
fi

step "done in $((SECONDS - T0)) s; everything is under $WORK"
